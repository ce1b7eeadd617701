"""After a write commits: bump what it touched; if Redis cannot be told, keep the version
keys in PostgreSQL (cache_invalidation_outbox) and replay them once Redis answers again."""
from __future__ import annotations

import logging
from typing import Optional

from chalicelib.booking.outcome import Touched
from chalicelib.booking.read_source import commit_ticket
from chalicelib.booking.scopes import scopes_touched
from chalicelib.cache.tiered import TieredCache
from chalicelib.db import connection as db

log = logging.getLogger(__name__)


def after_write(cache: TieredCache, touched: Touched, position: Optional[int]) -> None:
    """Invalidate the cached reads a committed write changed (one MSET of version keys;
    with a read replica, the new versions carry the write's commit position, `position`,
    as their ticket: see read_source.py)."""
    scopes = scopes_touched(touched.slot_days, touched.list_days, touched.whole)
    if cache.invalidate(touched.tenant, scopes, _write_ticket(position)):
        return
    keys = [cache.keys.version(touched.tenant, s) for s in scopes]
    try:
        db.run("INSERT INTO cache_invalidation_outbox (version_keys) VALUES (:k)", k=keys)
    except Exception:  # noqa: BLE001 - the write itself is committed; say so and go on
        log.error("could not record a cache invalidation for replay", extra={"tenant": touched.tenant})


def _write_ticket(position: Optional[int]) -> str:
    """"" without a read replica; else the write's commit position (read on its connection
    after the commit), or the primary's position now if that read failed (still after the
    commit), or, failing both, the ticket no replica reaches."""
    if db.replica_pool() is None:
        return ""
    return commit_ticket(position) if position is not None else primary_ticket()


def primary_ticket() -> str:
    """"" without a read replica; else a ticket for writes that committed before now (the
    primary's WAL position read now): for bumps that are not made right after their own
    write (outbox replay, the dashboard after a view refresh). If it cannot be read, the
    ticket no replica reaches (fills read the primary until the next bump: safe)."""
    if db.replica_pool() is None:
        return ""
    try:
        return commit_ticket(db.current_wal_lsn())
    except Exception:  # noqa: BLE001
        return commit_ticket(None)


def replay_outbox(cache: TieredCache, limit: int = 1000) -> int:
    """Bump every version key left in the outbox; returns how many rows were replayed."""
    rows = db.run("SELECT id, version_keys FROM cache_invalidation_outbox ORDER BY id LIMIT :n", n=limit)
    ticket = primary_ticket() if rows else ""
    done = [row_id for row_id, keys in rows if cache.bump_keys(keys, ticket)]
    if done:
        db.run("DELETE FROM cache_invalidation_outbox WHERE id = ANY(:ids)", ids=done)
    return len(done)
