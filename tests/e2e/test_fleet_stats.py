"""Fleet statistics: three API server processes publish their cache statistics to Redis;
the stats route on any of them sums the live ones (and counts them), with percentiles from
the summed histogram buckets; a stopped container drops out after the expiry; with Redis
down the route falls back to the container's own figures and says so.

The DB tier's latency of every load is in the response's Server-Timing (`db;dur=` in ms,
the very value the tier records), so the test knows every sample of every container and
checks the fleet's p50/p99 against the percentiles of all of them.
"""
from __future__ import annotations

import itertools
import json
import random
import re
import string
import time
import uuid
from typing import Any, Iterator

import pytest

from chalicelib.cache import histogram
from chalicelib.cache.fleet import merge
from support.redis_servers import PrivateRedis
from tests.helpers_servers import ApiServer, KeepAlive, running_servers, wait_for

PUBLISH_INTERVAL = 0.3
EXPIRY = 2.5
DB_DUR = re.compile(r"db;dur=([0-9.]+)")


# --- the histogram and the merge (no servers) ------------------------------------------

def _true_percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def test_buckets_hold_their_samples_within_the_resolution():
    rng = random.Random(7)
    samples = [rng.lognormvariate(3, 2) for _ in range(5000)] + [0.0, 1e-9, 1.0, 2.0, 1e7]
    counts = histogram.bucket_counts(samples)
    assert sum(counts.values()) == len(samples)
    assert counts == histogram.bucket_counts(samples[::-1])
    for value in samples:
        index = histogram.bucket_of(value)
        assert counts[index] > 0
        low, high = histogram.bounds(index)
        if value > 0:
            assert low <= value < high and (high - low) / low <= histogram.RELATIVE_WIDTH
            assert abs(histogram.midpoint(index) - value) <= value / 32
    assert histogram.bucket_counts([-3.0]) == {0: 1}  # a clock that stepped back counts as 0


def test_fleet_percentiles_come_from_summed_buckets_not_averages():
    rng = random.Random(11)
    fast = [rng.uniform(1, 2) for _ in range(900)]          # a busy container, fast hits
    slow = [rng.uniform(900, 1100) for _ in range(100)]     # a quiet one, slow loads
    snaps = []
    for samples in (fast, slow):
        tier = {"hits": len(samples), "misses": 0, "errors": 0,
                "latency": histogram.encode(histogram.bucket_counts(samples))}
        snaps.append({"l1": {**tier, "entries": 1, "bytes": 10, "evictions": 0}, "l2": tier, "db": tier,
                      "staleServed": 1, "lockWaits": 0, "invalidationsReceived": 2, "l1Resets": 0})
    merged = merge(snaps)
    assert merged["containers"] == 2 and merged["staleServed"] == 2 and merged["l1"]["hits"] == 1000
    assert merged["l1"]["entries"] == 2 and merged["invalidationsReceived"] == 4
    counts = histogram.decode(merged["db"]["latency"])
    for q in (0.5, 0.9, 0.99):
        true = _true_percentile(fast + slow, q)
        assert abs(histogram.percentile(counts, q) - true) <= true / 32, q
    # what averaging the two containers' p50 would have said: nowhere near the fleet's p50
    averaged = (_true_percentile(fast, 0.5) + _true_percentile(slow, 0.5)) / 2
    assert histogram.percentile(counts, 0.5) < averaged / 100


def test_quantile_points_stand_for_the_distribution():
    counts = histogram.bucket_counts([float(v) for v in range(1, 1001)])
    points = histogram.quantile_points(counts, 50)
    assert len(points) == 50 and points == sorted(points)
    assert abs(points[0] - 11) <= 11 / 32 and abs(points[-1] - 991) <= 991 / 32  # ranks 10 and 990
    assert len(histogram.quantile_points(histogram.bucket_counts([5.0, 7.0]), 50)) == 2


# --- three server processes ------------------------------------------------------------

def _delete(namespace: str, redis_client: Any) -> None:
    keys = list(redis_client.scan_iter(match=f"{namespace}:*", count=1000))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture()
def fleet_env(app_env) -> Iterator[dict[str, str]]:
    """app_env's database, a namespace of this test's own, short publish interval and expiry."""
    import redis

    namespace = f"{app_env.namespace}f{uuid.uuid4().hex[:6]}"
    env = {**app_env.env, "CACHE_NAMESPACE": namespace, "STATS_PUBLISH_INTERVAL": str(PUBLISH_INTERVAL),
           "STATS_EXPIRY": str(EXPIRY), "METRICS_FLUSH_INTERVAL": "3600"}
    client = redis.Redis.from_url(env["REDIS_URL"])
    try:
        yield env
    finally:
        _delete(namespace, client)


@pytest.fixture()
def three_servers(fleet_env) -> Iterator[list[ApiServer]]:
    with running_servers(fleet_env, 3) as started:
        yield started


def _search_terms() -> Iterator[str]:
    for a, b in itertools.product(string.ascii_lowercase, repeat=2):
        yield a + b


def _traffic(conn: KeepAlive, terms: list[str], repeats: int) -> dict[str, Any]:
    """Patient searches, each term first loaded (DB: the terms are this server's alone),
    then repeated (L1). Returns the X-Cache counts and every DB load's latency (us)."""
    seen: dict[str, Any] = {"L1": 0, "L2": 0, "DB": 0, "STALE": 0, "db_us": []}
    for _ in range(repeats):
        for term in terms:
            status, headers, _ = conn.request("GET", f"/api/patients?clientId=1&q={term}&limit=5")
            assert status == 200
            seen[headers["x-cache"]] += 1
            if headers["x-cache"] == "DB":
                seen["db_us"].append(float(DB_DUR.search(headers["server-timing"]).group(1)) * 1000)
    return seen


def _stats(conn: KeepAlive) -> dict[str, Any]:
    """The fleet statistics through `conn`, asked with an operator token (the platform's role)."""
    from chalicelib.auth import issue_token
    from tests.conftest import TEST_AUTH_SECRET

    operator = {"Authorization": f"Bearer {issue_token(TEST_AUTH_SECRET, 0, 'operator')}"}
    status, _, raw = conn.request("GET", "/api/cache/stats", extra=operator)
    doc = json.loads(raw)
    assert status == 200, doc
    return doc


def test_three_containers_sum_their_figures(three_servers, app_env):
    headers = app_env.headers(role="admin")
    conns = [KeepAlive(s.port, headers) for s in three_servers]
    terms = list(itertools.islice(_search_terms(), 120))
    plan = [(terms[0:60], 6), (terms[60:90], 3), (terms[90:100], 2)]  # different amounts of traffic
    try:
        seen = [_traffic(conn, t, r) for conn, (t, r) in zip(conns, plan)]
        time.sleep(PUBLISH_INTERVAL + 0.2)
        for conn in conns:  # each request's end publishes the final figures (interval passed)
            _stats(conn)
        docs = [_stats(conn) for conn in conns]
    finally:
        for conn in conns:
            conn.close()

    containers = [d["container"] for d in docs]
    assert len({c["id"] for c in containers}) == 3
    for c, s in zip(containers, seen):  # each container counted exactly what it served
        assert c["l1"]["hits"] == s["L1"] and c["db"]["hits"] == s["DB"] == len(s["db_us"])
        assert c["l1"]["misses"] == s["DB"] + s["L2"] and c["l2"]["misses"] == s["DB"]
        assert c["publish"]["published"] >= 1 and c["publish"]["errors"] == 0
    all_db_us = [us for s in seen for us in s["db_us"]]
    for doc in docs:  # any container answers for the whole fleet
        fleet = doc["fleet"]
        assert doc["fleetSource"] == "redis" and doc["fleetError"] is None
        assert fleet["containers"] == 3
        for tier in ("l1", "l2", "db"):
            for name in ("hits", "misses", "errors"):
                assert fleet[tier][name] == sum(c[tier][name] for c in containers), (tier, name)
        assert fleet["l1"]["entries"] == sum(c["l1"]["entries"] for c in containers)
        assert fleet["l1"]["bytes"] == sum(c["l1"]["bytes"] for c in containers)
        assert fleet["staleServed"] == sum(c["staleServed"] for c in containers)
        assert fleet["overall"]["requests"] == sum(s["L1"] + s["DB"] + s["L2"] for s in seen)
        assert fleet["l1"]["hitRate"] == round(fleet["l1"]["hits"] / fleet["overall"]["requests"], 4)
        for q, name in ((0.5, "p50Us"), (0.99, "p99Us")):
            true = _true_percentile(all_db_us, q)
            # the bucket's midpoint is within 1/32 of any sample in it; Server-Timing rounds to 1 us
            assert abs(fleet["db"][name] - true) <= true / 32 + 1.0, (name, fleet["db"][name], true)
        assert fleet["l1"]["p50Us"] is not None and fleet["l1"]["p99Us"] >= fleet["l1"]["p50Us"]


def test_a_container_that_stops_publishing_drops_out(three_servers, app_env):
    headers = app_env.headers(role="admin")
    a, c = KeepAlive(three_servers[0].port, headers), KeepAlive(three_servers[2].port, headers)
    b = KeepAlive(three_servers[1].port, headers)
    try:
        for conn in (a, b, c):  # the first request's end publishes
            _stats(conn)
        assert wait_for(lambda: _stats(a)["fleet"]["containers"] == 3, 5, "3 containers")
        gone = _stats(c)["container"]["id"]
        c.close()
        three_servers[2].stop()
        stopped = time.monotonic()

        def two() -> Any:  # B keeps publishing (each request's end, once the interval passed)
            _stats(b)
            doc = _stats(a)
            return doc["fleet"]["containers"] == 2 and doc

        doc = wait_for(two, EXPIRY + 5, "2 containers")
        assert time.monotonic() - stopped >= EXPIRY - PUBLISH_INTERVAL - 0.5  # not before its key expired
        assert doc["fleetSource"] == "redis"
        assert _stats(b)["fleet"]["containers"] == 2
        assert gone not in {_stats(a)["container"]["id"], _stats(b)["container"]["id"]}
    finally:
        for conn in (a, b):
            conn.close()


def test_redis_down_falls_back_to_this_container(fleet_env, app_env):
    private = PrivateRedis().start()
    env = {**fleet_env, "REDIS_URL": private.url}
    server = ApiServer(env).start()
    conn = KeepAlive(server.port, app_env.headers(role="admin"))
    try:
        server.wait_healthy()
        terms = list(itertools.islice(_search_terms(), 10))
        before = _traffic(conn, terms, 3)
        up = _stats(conn)
        assert up["fleetSource"] == "redis" and up["fleet"]["containers"] == 1
        assert up["container"]["l2"]["state"] == "ok"

        private.kill()
        during = _traffic(conn, terms, 2)  # publishing and reads go on without Redis: all 200
        time.sleep(PUBLISH_INTERVAL + 0.1)
        _traffic(conn, terms[:1], 1)       # a publish is due at this request's end: skipped or failed
        doc = _stats(conn)
        assert doc["fleet"] is None and doc["fleetSource"] == "container"
        assert "Redis" in doc["fleetError"]
        mine = doc["container"]
        assert mine["l2"]["state"] == "down" and mine["tracking"] == "down"
        assert mine["l1"]["hits"] >= before["L1"] + during["L1"]
        assert mine["overall"]["requests"] == sum(s[k] for s in (before, during)
                                                  for k in ("L1", "L2", "DB", "STALE")) + 1
        assert mine["publish"]["errors"] + mine["publish"]["skipped"] >= 1
        assert mine["errors"]["l2"] >= 1
    finally:
        conn.close()
        server.stop()
        private.kill()
