"""Stampede protection across containers: 20 separate processes (multiprocessing, spawn),
each with its own TieredCache built from settings under one namespace, miss the same key
at the same moment. The Redis loader lock lets exactly one run the (slow, real SQL)
loader; the others wait for its value. Counted in Redis, so every process sees one count."""
from __future__ import annotations

import multiprocessing as mp
import os
import uuid

import redis

WORKERS = 20


def _worker(env: dict, key_id: str, counter_key: str, barrier, results) -> None:  # type: ignore[no-untyped-def]
    try:
        os.environ.update(env)
        from chalicelib.booking.caching import new_cache
        from chalicelib.db import connection as db
        from chalicelib.lifetimes import declared_freshness
        from chalicelib.settings import get_settings

        cache = new_cache(get_settings(), declared_freshness())
        counter = redis.Redis.from_url(env["REDIS_URL"])
        cache.begin_request()  # connect the tracking connection, as a request would
        assert cache.l2 is not None and cache.l2.ping()
        db.run("SELECT 1")  # connect to PostgreSQL before the start line
        key = cache.keys.key(1, "stampede", key_id, ("stampede",))

        def loader(fill: object) -> str:
            counter.incr(counter_key)
            rows = db.run("SELECT count(*), pg_sleep(0.3)::text FROM department WHERE tenant_id = 1")
            return '{"departments":%d,"load":"%s"}' % (rows[0][0], key_id)

        barrier.wait(timeout=60)
        result = cache.get_or_load(key, loader, cache.policy("slots"))
        results.put((os.getpid(), result.source, result.entry.body, result.entry.etag))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        results.put((os.getpid(), "error", repr(exc), ""))


def test_twenty_processes_one_load(app_env):
    key_id = uuid.uuid4().hex
    counter_key = f"{app_env.namespace}:test:stampede:{key_id}"
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    results = ctx.Queue()
    env = {**app_env.env, "REDIS_CONNECT_TIMEOUT": "2", "REDIS_READ_TIMEOUT": "2", "CACHE_LOCK_WAIT": "10"}
    procs = [ctx.Process(target=_worker, args=(env, key_id, counter_key, barrier, results)) for _ in range(WORKERS)]
    for p in procs:
        p.start()
    try:
        answers = [results.get(timeout=90) for _ in range(WORKERS)]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()
    errors = [a for a in answers if a[1] == "error"]
    assert not errors, errors
    assert int(redis.Redis.from_url(app_env.env["REDIS_URL"]).get(counter_key)) == 1
    bodies = {a[2] for a in answers}
    assert len(bodies) == 1, bodies
    assert key_id in bodies.pop()
    assert len({a[3] for a in answers}) == 1
    sources = sorted(a[1] for a in answers)
    assert sources.count("DB") == 1, sources
    assert set(sources) <= {"DB", "L2"}, sources
