"""A container's own creation of missing version keys is not echoed back to it (the
tracking connection writes them with NOLOOP): the read after a database load is an L1
hit, while every other container is still told, and anyone's later write still
invalidates the entry."""
from __future__ import annotations

import time
from typing import Callable

import redis

from chalicelib.cache.tickets import Fill
from chalicelib.cache.tiered import TieredCache
from chalicelib.cache.tracking import InvalidationTracker
from tests.integration.conftest import REDIS_URL, redis_settings


def _tracker(namespace: str) -> InvalidationTracker:
    return InvalidationTracker(redis_settings(read_timeout_s=1.0, breaker_cooldown_s=0.0), f"{namespace}:v:", 60.0, 0.5)


def _pushes_until(tracker: InvalidationTracker, sentinel: str) -> list[str]:
    """Every key pushed to `tracker` up to and including `sentinel` (pushes arrive in write order)."""
    seen: list[str] = []
    deadline = time.monotonic() + 5
    while sentinel not in seen and time.monotonic() < deadline:
        seen += tracker.drain().keys
        time.sleep(0.002)
    assert sentinel in seen, seen
    return seen


def test_creation_is_told_to_others_but_not_echoed(namespace: str) -> None:
    mine, other = _tracker(namespace), _tracker(namespace)
    writer = redis.Redis.from_url(REDIS_URL)
    created_key, sentinel = f"{namespace}:v:{{t1}}:slots:x", f"{namespace}:v:{{t1}}:sentinel"
    try:
        assert mine.drain().reset and other.drain().reset  # both connected
        values = mine.create_versions([created_key])
        assert values is not None and values[0] == writer.get(created_key)
        assert mine.create_versions([created_key]) == values  # existing keys are read, not replaced
        writer.set(sentinel, "later")
        assert _pushes_until(mine, sentinel) == [sentinel]
        assert _pushes_until(other, sentinel) == [created_key, sentinel]
    finally:
        mine.close()
        other.close()


def test_creation_with_a_lease_ping_outstanding(namespace: str) -> None:
    mine = _tracker(namespace)
    try:
        mine.drain()
        mine.lease.started -= 0.3  # past half the 0.5 s lease, not past all of it
        mine.drain()  # sends a PING without waiting: its PONG is not read yet
        assert mine.lease.awaiting == {0}
        values = mine.create_versions([f"{namespace}:v:{{t1}}:a", f"{namespace}:v:{{t1}}:b"])
        assert values is not None and len(values) == 2 and all(isinstance(v, bytes) for v in values)
        assert mine.lease.awaiting == set() and mine.lease.sent_at is None  # the PONG renewed it
        assert not mine.drain().reset and mine.healthy
    finally:
        mine.close()


def test_database_load_then_l1_and_another_containers_write_still_invalidates(
        make_cache: Callable[..., TieredCache]) -> None:
    a, b = make_cache(), make_cache()
    key = a.keys.key(1, "slots", "own", ("own-scope",))
    policy = a.policy("slots")
    loads: list[str] = []

    def loader(fill: Fill) -> str:
        loads.append("x")
        return '{"n":%d}' % len(loads)

    a.begin_request()
    assert a.get_or_load(key, loader, policy).source == "DB"  # creates the version key
    for _ in range(3):
        a.begin_request()
        assert a.get_or_load(key, loader, policy).source == "L1"
    assert b.invalidate(1, ["own-scope"])  # another container writes
    deadline = time.monotonic() + 5
    source = "L1"
    while source == "L1" and time.monotonic() < deadline:
        a.begin_request()
        result = a.get_or_load(key, loader, policy)
        source = result.source
    assert source == "DB" and result.entry.body == '{"n":2}'
