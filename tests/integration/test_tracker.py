"""The tracking connection's resets against a real Redis: the first connection, a killed
connection and an idle container each report a reset; a bump reports its key. The lease:
renewed with one round trip when expired, with a PING not waited for when half gone, and a
stalled connection (TcpProxy) is a reset once it runs out."""
from __future__ import annotations

import time

import redis

from chalicelib.cache.tracking import InvalidationTracker
from tests.helpers_servers import TcpProxy
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


def test_an_expired_lease_is_renewed_with_one_round_trip(namespace: str) -> None:
    tracker = _tracker(namespace)
    try:
        tracker.drain()
        tracker.lease.started -= 10.0  # idle far past the 0.5 s lease
        before = time.monotonic()
        assert not tracker.drain().reset and tracker.healthy
        assert tracker.lease.started >= before and tracker.lease.sent_at is None  # the PONG came
        assert tracker.quiet()
    finally:
        tracker.close()


def test_a_busy_lease_pings_without_waiting_and_the_pong_renews_it(namespace: str) -> None:
    tracker = _tracker(namespace)
    try:
        tracker.drain()
        tracker.lease.started -= 0.3  # past half the lease
        assert not tracker.quiet()
        tracker.drain()
        sent = tracker.lease.sent_at
        assert sent is not None and tracker.lease.awaiting == {0}  # the PING went out; no wait
        for _ in range(200):
            if tracker.lease.sent_at is None:
                break
            redis_client_sleep()
            tracker.drain()
        assert tracker.lease.started == sent and not tracker.drain().reset
    finally:
        tracker.close()


def test_a_stalled_connection_is_a_reset_once_the_lease_runs_out(namespace: str) -> None:
    proxy = TcpProxy(redis_settings().host, redis_settings().port)
    tracker = InvalidationTracker(redis_settings(host="127.0.0.1", port=proxy.port, breaker_cooldown_s=0.0),
                                  f"{namespace}:v:", 60.0, 0.5)
    try:
        assert tracker.drain().reset and tracker.healthy
        proxy.stall()  # bytes stop, nothing closes
        tracker.lease.started -= 10.0
        before = time.monotonic()
        assert tracker.drain().reset and not tracker.healthy
        assert time.monotonic() - before < 0.5  # waited at most half the lease for the PONG
    finally:
        tracker.close()
        proxy.cut()
