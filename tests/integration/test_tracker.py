"""The tracking connection's resets against a real Redis: the first connection, a killed
connection and an idle container each report a reset; a bump reports its key."""
from __future__ import annotations

import redis

from chalicelib.cache.tracking import InvalidationTracker
from tests.integration.conftest import REDIS_URL, redis_settings


def _tracker(namespace: str, idle_bound_s: float = 60.0) -> InvalidationTracker:
    return InvalidationTracker(redis_settings(read_timeout_s=1.0, breaker_cooldown_s=0.0),
                               f"{namespace}:v:", idle_bound_s, 0.5)


def _wait_for_push(tracker: InvalidationTracker) -> list[str]:
    for _ in range(200):  # the push is written before the writer's reply; poll briefly
        result = tracker.drain()
        if result.keys or result.reset:
            return result.keys
        redis_client_sleep()
    return []


def redis_client_sleep() -> None:
    import select

    select.select([], [], [], 0.005)


def test_first_connection_is_a_reset_then_pushes_report_keys(namespace: str) -> None:
    tracker = _tracker(namespace)
    try:
        assert tracker.drain().reset and tracker.healthy
        assert tracker.drain().keys == [] and not tracker.drain().reset
        redis.Redis.from_url(REDIS_URL).set(f"{namespace}:v:{{t1}}:catalog", "new")
        assert _wait_for_push(tracker) == [f"{namespace}:v:{{t1}}:catalog"]
    finally:
        tracker.close()


def test_killed_connection_is_a_reset(namespace: str) -> None:
    tracker = _tracker(namespace)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        before = {line["id"] for line in client.client_list()}
        tracker.drain()
        # The tracker's connection: the one that appeared with the tracking flag (Redis 6.2+).
        ours = [line["id"] for line in client.client_list() if line["id"] not in before and "t" in line["flags"]]
        assert len(ours) == 1, ours
        client.client_kill_filter(_id=ours[0])
        result = tracker.drain()
        assert result.reset and not tracker.healthy
        assert tracker.drain().reset and tracker.healthy  # reconnected: trust starts over
    finally:
        tracker.close()


def test_idle_past_the_bound_is_a_reset(namespace: str) -> None:
    tracker = _tracker(namespace, idle_bound_s=0.0)
    try:
        tracker.drain()
        redis_client_sleep()
        assert tracker.drain().reset and tracker.healthy
    finally:
        tracker.close()
