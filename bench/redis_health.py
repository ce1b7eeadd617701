"""Redis health, graded: GET/SET latency by payload size with the app's own client
settings, memory per 1,000 cached bodies (INFO used_memory delta), the breaker state."""
from __future__ import annotations

import dataclasses
from typing import Any

from bench import common

SIZES = (100, 1024, 10 * 1024, 100 * 1024)

GRADES = [
    ("A", "GET p50 < 100 us and p99 < 500 us at 1 KB; GET p50 < 300 us at 100 KB; breaker closed"),
    ("B", "GET p50 < 200 us and p99 < 1 ms at 1 KB; breaker closed"),
    ("C", "GET p50 < 500 us and p99 < 5 ms at 1 KB; breaker closed"),
    ("D", "GET p50 < 2 ms at 1 KB (usable, but L2 hits cost more than a PostgreSQL primary-key read)"),
    ("F", "slower, errors, or the breaker is open/half-open"),
]


def grade(result: dict[str, Any]) -> str:
    kb = result["by_size"]["1024"]["get"]
    big = result["by_size"][str(100 * 1024)]["get"]
    if result["breaker"] != "closed" or result.get("errors"):
        return "F"
    if kb["p50_us"] < 100 and kb["p99_us"] < 500 and big["p50_us"] < 300:
        return "A"
    if kb["p50_us"] < 200 and kb["p99_us"] < 1000:
        return "B"
    if kb["p50_us"] < 500 and kb["p99_us"] < 5000:
        return "C"
    if kb["p50_us"] < 2000:
        return "D"
    return "F"


def measure(namespace: str, n: int, sample_body: bytes) -> dict[str, Any]:
    from chalicelib.booking.caching import get_cache as cache
    from chalicelib.cache.redis_tier import make_client

    current = cache()
    assert current.l2 is not None, "Redis is disabled"
    # The app's client settings, but a 2 s read timeout: the app's 50 ms would turn a slow
    # 100 KB reply on a loaded machine into an error instead of a measurement.
    client = make_client(dataclasses.replace(current.settings.redis, read_timeout_s=2.0, connect_timeout_s=2.0))
    out: dict[str, Any] = {"by_size": {}}
    for size in SIZES:
        key = f"{namespace}:health:{size}"
        payload = b"x" * size
        client.set(key, payload, px=600_000)
        res = common.interleaved({"get": (lambda k=key: client.get(k), None),
                                  "set": (lambda k=key, p=payload: client.set(k, p, px=600_000), None)},
                                 n if size < 100 * 1024 else max(200, n // 4))
        out["by_size"][str(size)] = res
        common.say(f"redis {size:>6} B: GET p50 {res['get']['p50_us']:6.1f} us p99 {res['get']['p99_us']:7.1f}"
                   f" | SET p50 {res['set']['p50_us']:6.1f} us p99 {res['set']['p99_us']:7.1f}")
    # Memory per 1,000 cached bodies of the size the app really stores.
    prefix = f"{namespace}:health:mem:"
    before = int(client.info("memory")["used_memory"])
    pipe = client.pipeline(transaction=False)
    for i in range(1000):
        pipe.set(f"{prefix}{{t1}}:slots:{i}", sample_body, px=600_000)
    pipe.execute()
    after = int(client.info("memory")["used_memory"])
    client.delete(*[f"{prefix}{{t1}}:slots:{i}" for i in range(1000)])
    out["memory_per_1000_bodies_bytes"] = after - before
    out["sample_body_bytes"] = len(sample_body)
    out["overhead_per_body_bytes"] = (after - before) / 1000 - len(sample_body)
    out["breaker"] = current.l2.breaker.state
    out["breaker_opened_count"] = current.l2.breaker.opened_count
    out["errors"] = current.stats.l2.errors
    info = client.info("server")
    out["redis_version"] = info.get("redis_version")
    out["grade"] = grade(out)
    out["grade_scale"] = GRADES
    common.say(f"redis memory per 1,000 bodies of {len(sample_body)} B: {(after - before) / 1e6:.2f} MB;"
               f" breaker {out['breaker']}; grade {out['grade']}")
    return out
