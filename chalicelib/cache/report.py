"""The statistics document served at /api/cache/stats: the fleet and this container.

Everything it shows is passed in (the cache, the view-refresh rows the web layer read, the
fleet read): this module reads no database and imports nothing of the web or booking
layers. The same `figures()` renders one container's snapshot and the fleet's sum, so the
two halves always have the same shape.
"""
from __future__ import annotations

import time
from typing import Any, Mapping, Optional, Sequence

from chalicelib.cache import histogram
from chalicelib.cache.fleet import FleetRead, Publisher

_started = time.time()

ViewRow = Sequence[Any]  # (view_name, refreshed_at: datetime, duration_ms, keys_prewarmed, status)


def _rate(part: int, whole: int) -> Optional[float]:
    return round(part / whole, 4) if whole else None


def _us(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 2)


def tier_figures(tier: Mapping[str, Any]) -> dict[str, Any]:
    """hits, misses, hitRate, p50Us, p99Us, errors of one tier of a snapshot."""
    counts = histogram.decode(tier.get("latency", {}))
    hits, misses = int(tier["hits"]), int(tier["misses"])
    return {"hits": hits, "misses": misses, "hitRate": _rate(hits, hits + misses),
            "p50Us": _us(histogram.percentile(counts, 0.50)), "p99Us": _us(histogram.percentile(counts, 0.99)),
            "errors": int(tier.get("errors", 0))}


def figures(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """Per tier figures, L1 size, overall hit rate, stale answers and errors of a snapshot
    (one container's or a fleet's sum)."""
    l1, l2, db = (tier_figures(snapshot[t]) for t in ("l1", "l2", "db"))
    l1.update({k: int(snapshot["l1"].get(k, 0)) for k in ("entries", "bytes", "evictions")})
    requests = l1["hits"] + l1["misses"]
    return {"l1": l1, "l2": l2, "db": db,
            "overall": {"requests": requests, "hitRate": _rate(l1["hits"] + l2["hits"], requests)},
            "staleServed": snapshot["staleServed"], "lockWaits": snapshot["lockWaits"],
            "invalidationsReceived": snapshot["invalidationsReceived"], "l1Resets": snapshot["l1Resets"],
            "errors": {"l2": l2["errors"], "db": db["errors"]}}


def _redis_state(cache: Any, fleet_read: FleetRead) -> dict[str, Any]:
    """This container's view of Redis: state, breaker, memory, tracking. `down` when the
    breaker is tripped or this very request could not reach Redis (a closed breaker only
    means fewer consecutive failures than its threshold so far)."""
    l2, tracker = cache.l2, cache.tracker
    if l2 is None:
        return {"state": "disabled", "breaker": "disabled", "memoryUsedBytes": None, "tracking": "disabled"}
    reachable = fleet_read.available and not l2.breaker.tripped
    return {"state": "ok" if reachable else "down", "breaker": l2.breaker.state,
            "memoryUsedBytes": l2.memory_used() if reachable else None,
            "tracking": "disabled" if tracker is None else ("ok" if tracker.healthy else "down")}


def view_figures(rows: Sequence[ViewRow]) -> list[dict[str, Any]]:
    """The view_refresh rows as the document shows them."""
    return [{"view": name, "refreshedAt": at.isoformat(), "durationMs": round(ms, 1),
             "keysPrewarmed": keys, "status": status} for name, at, ms, keys, status in rows]


def stats_document(cache: Any, own: Mapping[str, Any], fleet_read: FleetRead, publisher: Publisher,
                   views: Optional[Sequence[ViewRow]]) -> dict[str, Any]:
    """{"fleet", "fleetSource", "fleetError", "container", "database", "views", "now"}.

    `own` is this container's snapshot (fleet.container_snapshot), `fleet_read` the sum of
    the live containers (or why there is none), `views` the view_refresh rows or None when
    the database could not be read."""
    redis = _redis_state(cache, fleet_read)
    container = figures(own)
    container["id"] = publisher.container_id
    container["l2"].update(state=redis["state"], breaker=redis["breaker"], memoryUsedBytes=redis["memoryUsedBytes"])
    container["tracking"] = redis["tracking"]
    container["publish"] = publisher.figures()
    container["uptimeS"] = round(time.time() - _started, 1)
    fleet = None
    if fleet_read.merged is not None:
        fleet = figures(fleet_read.merged)
        fleet["containers"] = fleet_read.merged["containers"]
        fleet["ignoredSnapshots"] = fleet_read.ignored
    return {
        "fleet": fleet,
        "fleetSource": "redis" if fleet is not None else "container",
        "fleetError": fleet_read.error,
        "container": container,
        "database": {"state": "down" if views is None else "ok"},
        "views": [] if views is None else view_figures(views),
        "now": time.time(),
    }
