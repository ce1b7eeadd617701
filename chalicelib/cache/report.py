"""The statistics document served at /api/cache/stats."""
from __future__ import annotations

import time
from typing import Any

from chalicelib.db import connection as db
from chalicelib.db.connection import DatabaseUnavailable

_started = time.time()


def _view_refreshes() -> list[dict[str, Any]]:
    try:
        rows = db.run("SELECT view_name, refreshed_at, duration_ms, keys_prewarmed, status FROM view_refresh"
                      " ORDER BY view_name")
    except DatabaseUnavailable:
        return []
    return [{"view": name, "refreshedAt": at.isoformat(), "durationMs": round(ms, 1),
             "keysPrewarmed": keys, "status": status} for name, at, ms, keys, status in rows]


def stats_document() -> dict[str, Any]:
    """Per tier hits, misses, hit rate, p50/p99 (us); L1 size; stale answers; breaker."""
    from chalicelib.booking.service import cache

    current = cache()
    s = current.stats
    l1, l2, dbs = s.l1.snapshot(), s.l2.snapshot(), s.db.snapshot()
    l1.update(entries=current.l1.entries, bytes=current.l1.bytes, evictions=current.l1.evictions)
    if current.l2 is None:
        l2.update(state="disabled", breaker="disabled", memoryUsedBytes=None)
    else:
        l2.update(state="ok" if current.l2.breaker.state == "closed" else "down", breaker=current.l2.breaker.state,
                  memoryUsedBytes=current.l2.memory_used() if current.l2.available else None)
    requests = s.l1.hits + s.l1.misses
    answered_from_cache = s.l1.hits + s.l2.hits
    return {
        "l1": l1, "l2": l2, "db": dbs,
        "overall": {"requests": requests,
                    "hitRate": round(answered_from_cache / requests, 4) if requests else None},
        "staleServed": s.stale_served,
        "lockWaits": s.lock_waits,
        "invalidationsReceived": s.invalidations_received,
        "l1Resets": s.l1_resets,
        "tracking": "disabled" if current.tracker is None else ("ok" if current.tracker.healthy else "down"),
        "errors": {"l2": s.l2.errors, "db": s.db.errors},
        "views": _view_refreshes(),
        "uptimeS": round(time.time() - _started, 1),
        "now": time.time(),
    }
