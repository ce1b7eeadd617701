"""Pre-warm the hot keys into Redis after a refresh, under the keys and versions the API uses.

Per tenant: the dashboard, the departments, all active doctors (no department filter) and
today's and tomorrow's free slots (the tenant's local dates, no filters). Keys come from
the same builders the routes use (`chalicelib.booking.service.*_key`), and
`TieredCache.prewarm` stamps each body with the versions read before loading, so the first
API read after a refresh is an L2 hit and a write racing the pre-warm wins.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Callable, Iterator, Optional

from chalicelib.booking import queries, service
from chalicelib.booking.models import DoctorsQuery, SlotsQuery
from chalicelib.cache.keys import CacheKey
from chalicelib.cache.tiered import TieredCache
from chalicelib.db import connection as db

log = logging.getLogger(__name__)

Loader = Callable[[], Optional[str]]


def active_tenants() -> list[tuple[int, dt.date]]:
    """Every tenant with its local today (tenants have no 'inactive' state in the schema)."""
    return [(int(t), day) for t, day in
            db.run("SELECT id, (now() AT TIME ZONE time_zone)::date FROM tenant ORDER BY id")]


def hot_keys(tenant: int, today: dt.date) -> Iterator[tuple[CacheKey, Loader]]:
    """The hot (key, loader) pairs of one tenant, exactly as the routes build them."""
    yield service.dashboard_key(tenant), lambda: queries.dashboard(tenant)
    yield service.departments_key(tenant), lambda: queries.departments(tenant)
    yield service.doctors_key(tenant), lambda: queries.doctors(DoctorsQuery(clientId=tenant))
    for day in (today, today + dt.timedelta(days=1)):
        query = SlotsQuery(clientId=tenant, date=day)
        yield service.slots_key(tenant, day), (lambda q=query: queries.free_slots(q))


def prewarm_all(cache: TieredCache, tenants: Optional[list[tuple[int, dt.date]]] = None) -> int:
    """Pre-warm every tenant's hot keys into L2; returns how many keys were stored."""
    if cache.l2 is None or not cache.l2.available:
        return 0
    stored = 0
    for tenant, today in (active_tenants() if tenants is None else tenants):
        for key, loader in hot_keys(tenant, today):
            try:
                if cache.prewarm(key, loader, cache.policy(key.resource)):
                    stored += 1
            except db.DatabaseUnavailable:
                raise
            except Exception:  # noqa: BLE001 - one bad key must not stop the others
                log.warning("pre-warm failed", extra={"tenant": tenant, "resource": key.resource})
    return stored
