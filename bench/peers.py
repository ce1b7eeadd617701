"""Peers in the same process, same payload, same run: dogpile.cache (memory and redis
backends) and cashews (mem:// and redis://), aiocache if installed, through their normal
APIs. Hits only; per-call average over a tight loop (async ones inside one event loop)."""
from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from bench import common


def _async_loop(make_call: Any, n: int, repeats: int = 7) -> dict[str, float]:
    async def run() -> dict[str, float]:
        call = make_call
        for _ in range(min(n, 500)):
            await call()
        per = []
        for _ in range(repeats):
            t = time.perf_counter()
            for _ in range(n):
                await call()
            per.append((time.perf_counter() - t) / n)
        return {"n": n * repeats, "p50_us": statistics.median(per) * 1e6, "min_us": min(per) * 1e6,
                "p99_us": max(per) * 1e6}

    return asyncio.run(run())


def measure(namespace: str, body: str, n_mem: int, n_redis: int, ours: Any = None,
            ours_l2: Any = None) -> dict[str, Any]:
    """`ours`: optional callable (the app's L1 lookup), timed in alternation with the
    memory-tier peers so the comparison sees the same machine load. `ours_l2`: optional
    (call, setup) for the cache's L2 hit (setup empties L1, untimed), timed per call in
    alternation with dogpile's Redis hit, also timed per call."""
    out: dict[str, Any] = {}
    host, port = "127.0.0.1", 6379
    from urllib.parse import urlparse

    parsed = urlparse(common.REDIS_URL)
    host, port = parsed.hostname or host, parsed.port or port
    db = int((parsed.path or "/0").strip("/") or 0)

    from dogpile.cache import make_region

    mem = make_region().configure("dogpile.cache.memory", expiration_time=600)
    mem.set("k", body)
    assert mem.get("k") == body
    cases = {"dogpile_memory": lambda: mem.get("k")}
    if ours is not None:
        cases["ours_l1_lookup"] = ours
    out.update(common.alternating_tight(cases, n_mem))
    red = make_region(key_mangler=lambda k: f"{namespace}:dogpile:{k}").configure(
        "dogpile.cache.redis", expiration_time=600,
        arguments={"host": host, "port": port, "db": db, "redis_expiration_time": 600})
    red.set("k", body)
    assert red.get("k") == body
    redis_cases = {"dogpile_redis": (lambda: red.get("k"), None)}
    if ours_l2 is not None:
        redis_cases["ours_l2_lookup"] = ours_l2
    out.update(common.interleaved(redis_cases, n_redis))

    from cashews import Cache

    async def cashews_case(url: str, n: int) -> dict[str, float]:
        cache = Cache()
        cache.setup(url)
        await cache.init() if hasattr(cache, "init") and asyncio.iscoroutinefunction(cache.init) else None
        key = f"{namespace}:cashews:k"
        await cache.set(key, body, expire=600)
        assert await cache.get(key) == body
        for _ in range(min(n, 500)):
            await cache.get(key)
        per = []
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(n):
                await cache.get(key)
            per.append((time.perf_counter() - t) / n)
        await cache.close()
        return {"n": n * 5, "p50_us": statistics.median(per) * 1e6, "min_us": min(per) * 1e6,
                "p99_us": max(per) * 1e6}

    out["cashews_mem"] = asyncio.run(cashews_case("mem://", n_mem))
    out["cashews_redis"] = asyncio.run(cashews_case(f"redis://{host}:{port}/{db}", n_redis))
    try:
        import aiocache  # noqa: F401

        out["aiocache_installed"] = True
    except ImportError:
        out["aiocache_installed"] = False
    for name, res in out.items():
        if isinstance(res, dict):
            common.say(f"peer {name:<15} hit: {res['p50_us']:8.2f} us/call")
    if not out["aiocache_installed"]:
        common.say("peer aiocache: not installed, skipped")
    return out
