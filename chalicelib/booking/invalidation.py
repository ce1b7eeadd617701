"""After a write commits: bump what it touched; if Redis cannot be told, keep the version
keys in PostgreSQL (cache_invalidation_outbox) and replay them once Redis answers again."""
from __future__ import annotations

import logging

from chalicelib.booking.outcome import Touched
from chalicelib.booking.scopes import scopes_touched
from chalicelib.cache.tiered import TieredCache
from chalicelib.db import connection as db

log = logging.getLogger(__name__)


def after_write(cache: TieredCache, touched: Touched) -> None:
    """Invalidate the cached reads a committed write changed (one MSET of version keys)."""
    scopes = scopes_touched(touched.slot_days, touched.list_days)
    if cache.invalidate(touched.tenant, scopes):
        return
    keys = [cache.keys.version(touched.tenant, s) for s in scopes]
    try:
        db.run("INSERT INTO cache_invalidation_outbox (version_keys) VALUES (:k)", k=keys)
    except Exception:  # noqa: BLE001 - the write itself is committed; say so and go on
        log.error("could not record a cache invalidation for replay", extra={"tenant": touched.tenant})


def replay_outbox(cache: TieredCache, limit: int = 1000) -> int:
    """Bump every version key left in the outbox; returns how many rows were replayed."""
    rows = db.run("SELECT id, version_keys FROM cache_invalidation_outbox ORDER BY id LIMIT :n", n=limit)
    done = [row_id for row_id, keys in rows if cache.bump_keys(keys)]
    if done:
        db.run("DELETE FROM cache_invalidation_outbox WHERE id = ANY(:ids)", ids=done)
    return len(done)
