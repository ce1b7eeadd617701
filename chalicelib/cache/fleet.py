"""Fleet statistics in Redis: each container publishes its snapshot, any container sums them.

Storage (all keys share the `{fleet}` hash tag, so the MGET and the pipeline touch one slot
on Redis Cluster; tests/unit/test_cluster_keys.py checks it):

    {ns}:stats:{fleet}          sorted set: container id -> time of its last publish
    {ns}:stats:{fleet}:<id>     that container's snapshot (JSON), expiring STATS_EXPIRY s
                                after its last publish

Policy: a container publishes when a request ends and its last publish is older than
STATS_PUBLISH_INTERVAL seconds (the caller, observability.RequestScope, compares a
monotonic clock and passes the container's cache; nothing runs between invocations). One pipelined round trip: SET with
PX, ZADD, and a prune of ids gone for ten expiries. While the Redis breaker is tripped the
publish is skipped; a Redis error is counted and fed to the breaker; nothing raises.
The fleet is every snapshot whose key has not expired (Redis's own clock decides, so the
containers' clocks need not agree), with this container's live figures in place of its
own published copy.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any, Optional

from chalicelib.cache import histogram
from chalicelib.cache.stats import COUNTERS

log = logging.getLogger(__name__)

VERSION = 1


def _env_seconds(name: str, default: float, low: float) -> float:
    try:
        value = float(os.environ.get(name, "") or default)
    except ValueError:
        return default
    return max(low, value)


def publish_interval_s() -> float:
    """STATS_PUBLISH_INTERVAL: least seconds between two publishes of a container (5)."""
    return _env_seconds("STATS_PUBLISH_INTERVAL", 5.0, 0.0)


def expiry_s() -> float:
    """STATS_EXPIRY: seconds a published snapshot counts in the fleet (60: the last minute)."""
    return _env_seconds("STATS_EXPIRY", 60.0, 0.05)


def index_key(namespace: str) -> str:
    """The sorted set of container ids."""
    return f"{namespace}:stats:{{fleet}}"


def snapshot_key(namespace: str, container_id: str) -> str:
    """One container's snapshot."""
    return f"{namespace}:stats:{{fleet}}:{container_id}"


# -- merging -------------------------------------------------------------------------------
def container_snapshot(cache: Any, container_id: str) -> dict[str, Any]:
    """This container's snapshot, stamped with its id and the bucket layout."""
    l1 = cache.l1
    snap = cache.stats.snapshot({"entries": l1.entries, "bytes": l1.bytes, "evictions": l1.evictions})
    snap.update(v=VERSION, layout=histogram.LAYOUT, id=container_id, at=time.time())
    return snap


def compatible(snap: Any) -> bool:
    """Published by this version with the same buckets (a deploy may mix versions)."""
    return isinstance(snap, dict) and snap.get("v") == VERSION and snap.get("layout") == histogram.LAYOUT


def merge(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    """The sum of snapshots: counters added, histograms added bucket by bucket."""
    out: dict[str, Any] = {name: 0 for name in COUNTERS}
    for tier in ("l1", "l2", "db"):
        out[tier] = {"hits": 0, "misses": 0, "errors": 0, "latency": {}}
    out["l1"].update(entries=0, bytes=0, evictions=0)
    for snap in snapshots:
        for name in COUNTERS:
            out[name] += int(snap.get(name, 0))
        for tier in ("l1", "l2", "db"):
            into, part = out[tier], snap[tier]
            for name in into:
                if name != "latency":
                    into[name] += int(part.get(name, 0))
            histogram.add(into["latency"], histogram.decode(part.get("latency", {})))
    for tier in ("l1", "l2", "db"):
        out[tier]["latency"] = histogram.encode(out[tier]["latency"])
    out["containers"] = len(snapshots)
    return out


# -- publishing ----------------------------------------------------------------------------
class Publisher:
    """Publishes the snapshot of the container `container_id`; counts publishes, skips and
    errors."""

    def __init__(self, container_id: str) -> None:
        self.container_id = container_id
        self.published = 0
        self.skipped = 0
        self.errors = 0
        self.last_error: Optional[str] = None
        self.last_published_at: Optional[float] = None  # time.time()
        self.last_duration_s: Optional[float] = None
        self._busy = threading.Lock()

    def publish(self, cache: Any) -> bool:
        """One pipelined round trip; False (and counted) when skipped or failed. Never raises
        for Redis trouble; concurrent callers skip rather than publish twice."""
        l2 = getattr(cache, "l2", None)
        if l2 is None:
            return False
        if l2.breaker.tripped or not self._busy.acquire(blocking=False):
            self.skipped += 1
            return False
        try:
            started = time.perf_counter()
            namespace = cache.keys.namespace
            snap = container_snapshot(cache, self.container_id)
            ttl_ms = max(1, int(expiry_s() * 1000))
            now = snap["at"]
            from redis.exceptions import RedisError  # loaded with the cache: not at a cold start

            try:
                pipe = l2.client.pipeline(transaction=False)
            except (RedisError, OSError) as exc:  # a cluster client not built yet: no node answers
                l2.breaker.failure()
                self.errors += 1
                self.last_error = type(exc).__name__
                return False
            pipe.set(snapshot_key(namespace, self.container_id), json.dumps(snap, separators=(",", ":")), px=ttl_ms)
            pipe.zadd(index_key(namespace), {self.container_id: now})
            pipe.zremrangebyscore(index_key(namespace), "-inf", now - 10 * ttl_ms / 1000.0)
            pipe.pexpire(index_key(namespace), 10 * ttl_ms)
            try:
                pipe.execute()
            except (RedisError, OSError) as exc:
                l2.breaker.failure()
                self.errors += 1
                self.last_error = type(exc).__name__
                return False
            l2.breaker.success()
            self.published += 1
            self.last_published_at = now
            self.last_duration_s = time.perf_counter() - started
            return True
        finally:
            self._busy.release()

    def figures(self) -> dict[str, Any]:
        """What the stats document shows about publishing."""
        ago = None if self.last_published_at is None else round(time.time() - self.last_published_at, 1)
        return {"published": self.published, "skipped": self.skipped, "errors": self.errors,
                "lastError": self.last_error, "lastPublishedS": ago,
                "intervalS": publish_interval_s(), "expiryS": expiry_s()}



# -- reading -------------------------------------------------------------------------------
class FleetRead:
    """The outcome of reading the fleet: the merged figures, or why there are none."""

    def __init__(self, merged: Optional[dict[str, Any]], error: Optional[str], ignored: int = 0) -> None:
        self.merged = merged
        self.error = error
        self.ignored = ignored  # snapshots of another version or layout, or unreadable

    @property
    def available(self) -> bool:
        """True when the fleet was read from Redis."""
        return self.merged is not None


def read(cache: Any, own: dict[str, Any]) -> FleetRead:
    """Every live container's snapshot, this container's live one (`own`, stamped with its
    id) in place of its own published copy, summed. Two round trips (ZRANGE, MGET). Redis trouble is an answer
    (merged None and the reason), never an exception; an error counts toward the breaker."""
    l2 = getattr(cache, "l2", None)
    if l2 is None:
        return FleetRead(None, "Redis is disabled (REDIS_DISABLED): there is no fleet, only this container")
    if l2.breaker.tripped:
        return FleetRead(None, f"Redis is unavailable (breaker {l2.breaker.state}): this container's figures only")
    namespace = cache.keys.namespace
    from redis.exceptions import RedisError

    try:
        ids = [i.decode() for i in l2.client.zrange(index_key(namespace), 0, -1)]
        others = [i for i in ids if i != own["id"]]
        raw = l2.client.mget([snapshot_key(namespace, i) for i in others]) if others else []
    except (RedisError, OSError) as exc:
        l2.breaker.failure()
        return FleetRead(None, f"Redis is unreachable ({type(exc).__name__}): this container's figures only")
    l2.breaker.success()
    snapshots, ignored = [own], 0
    for blob in raw:
        if blob is None:
            continue  # expired: that container stopped publishing
        snap = _parse(blob)
        if snap is None:
            ignored += 1
        else:
            snapshots.append(snap)
    return FleetRead(merge(snapshots), None, ignored)


def _parse(blob: bytes) -> Optional[dict[str, Any]]:
    """A published snapshot if it is of this version and layout and merges cleanly."""
    try:
        snap = json.loads(blob)
        if compatible(snap):
            merge([snap])
            return snap
    except (KeyError, TypeError, ValueError, AttributeError):
        log.warning("a published cache snapshot could not be read; it is left out of the fleet")
    return None
