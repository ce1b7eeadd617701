"""Pre-warm the hot keys into Redis after a refresh, under the keys and versions the API uses.

What is hot is declared with each resource (`hot` in chalicelib/booking/resources.py): per
tenant the dashboard, the departments, all active doctors (no department filter) and
today's and tomorrow's free slots (the tenant's local dates, no filters). Keys come from
the same builder the routes use (`CachedResource.key`), and
`TieredCache.prewarm` stamps each body with the versions read before loading, so the first
API read after a refresh is an L2 hit and a write racing the pre-warm wins.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Optional

from chalicelib.booking.resources import hot_reads
from chalicelib.cache.tiered import TieredCache
from chalicelib.db import connection as db

log = logging.getLogger(__name__)


def active_tenants() -> list[tuple[int, dt.date]]:
    """Every tenant with its local today (tenants have no 'inactive' state in the schema)."""
    return [(int(t), day) for t, day in
            db.run("SELECT id, (now() AT TIME ZONE time_zone)::date FROM tenant ORDER BY id")]


def prewarm_all(cache: TieredCache, tenants: Optional[list[tuple[int, dt.date]]] = None) -> int:
    """Pre-warm every tenant's hot keys into L2; returns how many keys were stored."""
    if cache.l2 is None or not cache.l2.available:
        return 0
    stored = 0
    for tenant, today in (active_tenants() if tenants is None else tenants):
        for key, loader in hot_reads(cache.keys, tenant, today):
            try:
                if cache.prewarm(key, loader, cache.policy(key.resource)):
                    stored += 1
            except db.DatabaseUnavailable:
                raise
            except Exception:  # noqa: BLE001 - one bad key must not stop the others
                log.warning("pre-warm failed", extra={"tenant": tenant, "resource": key.resource})
    return stored
