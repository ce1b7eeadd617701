"""The tracker's contract, run against one Redis node and a real three-primary cluster (the
same InvalidationTracker, told its nodes): the first connection is a reset, pushes report
keys from every node, a killed connection and an idle container each report a reset, the
lease is renewed with one round trip when expired and with a PING not waited for when half
gone, created versions are not echoed back. Then, on one node, a stalled connection
(TcpProxy) is a reset once the lease runs out."""
from __future__ import annotations

import dataclasses
import select
import time
import uuid
from typing import Any, Callable, Iterator

import pytest
import redis

from chalicelib.cache.redis_tier import make_client
from chalicelib.cache.tracking import InvalidationTracker, TopologySignal, primaries_of
from chalicelib.settings import RedisSettings, parse_redis_url
from support.cluster import running_cluster
from tests.helpers_servers import TcpProxy
from tests.integration.conftest import REDIS_URL, redis_settings

# Keys of three tenants: on the cluster their hash tags fall on three different primaries.
TENANTS = (1, 2, 4)


@dataclasses.dataclass
class Deployment:
    """A Redis to track: how to build a tracker on it, write a key, and list node clients."""

    name: str
    new_tracker: Callable[[str, float], InvalidationTracker]
    writer: Any
    node_clients: Callable[[], list[redis.Redis]]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with running_cluster(3) as started:
        yield started


def _one_node() -> Deployment:
    settings = redis_settings(read_timeout_s=1.0, breaker_cooldown_s=0.0)
    return Deployment("one node", lambda prefix, idle: InvalidationTracker(settings, prefix, idle, 0.5),
                      redis.Redis.from_url(REDIS_URL), lambda: [redis.Redis.from_url(REDIS_URL)])


def _cluster(started: Any) -> Deployment:
    settings = dataclasses.replace(RedisSettings(**parse_redis_url(started.url)), cluster=True,  # type: ignore[arg-type]
                                   read_timeout_s=1.0, breaker_cooldown_s=0.0)

    def new_tracker(prefix: str, idle: float) -> InvalidationTracker:
        topology = TopologySignal()
        client = make_client(settings, topology.set)
        return InvalidationTracker(settings, prefix, idle, 0.5, nodes=lambda: primaries_of(client), topology=topology)

    return Deployment("cluster", new_tracker, redis.RedisCluster(host="127.0.0.1", port=started.nodes[0].port),
                      lambda: [node.client() for node in started.nodes])


@pytest.fixture(params=["one node", "cluster"])
def deployment(request: pytest.FixtureRequest) -> Iterator[Deployment]:
    built = _one_node() if request.param == "one node" else _cluster(request.getfixturevalue("cluster"))
    yield built
    built.writer.close()


@pytest.fixture()
def prefix(namespace: str) -> str:
    return f"{namespace}:v:"


@pytest.fixture()
def tracked(deployment: Deployment, prefix: str) -> Iterator[InvalidationTracker]:
    """A connected tracker (its first drain, a reset, already taken; on a cluster, also the
    client's first slots refresh, which may count as a topology change)."""
    tracker = deployment.new_tracker(prefix, 60.0)
    assert tracker.drain().reset
    if not tracker.healthy:
        tracker.drain()
    assert tracker.healthy and tracker.quiet()
    yield tracker
    tracker.close()


def _pause() -> None:
    select.select([], [], [], 0.005)


def _keys_until(tracker: InvalidationTracker, want: set[str], timeout: float = 5.0) -> set[str]:
    got: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not want <= got:
        result = tracker.drain()
        assert not result.reset
        got.update(result.keys)
        _pause()
    return got


def _tracking_ids(deployment: Deployment) -> set[tuple[int, int]]:
    """(node index, client id) of every connection with tracking on, on every node."""
    found = set()
    for index, client in enumerate(deployment.node_clients()):
        try:
            found |= {(index, int(line["id"])) for line in client.client_list() if "t" in line["flags"]}
        finally:
            client.close()
    return found


def test_pushes_report_the_keys_written_on_every_node(deployment: Deployment, tracked: InvalidationTracker,
                                                      prefix: str) -> None:
    keys = {f"{prefix}{{t{n}}}:catalog" for n in TENANTS}
    for key in keys:
        deployment.writer.set(key, uuid.uuid4().hex)
    assert _keys_until(tracked, keys) == keys
    assert tracked.drain().keys == [] and tracked.quiet()


def test_a_killed_connection_is_a_reset_then_it_reconnects(deployment: Deployment, prefix: str) -> None:
    before = _tracking_ids(deployment)
    tracker = deployment.new_tracker(prefix, 60.0)
    try:
        tracker.drain()
        if not tracker.healthy:  # a cluster client's first slots refresh: connect again
            tracker.drain()
        ours = sorted(_tracking_ids(deployment) - before)
        assert len(ours) == len(tracker.primaries) >= 1, ours
        node, victim = ours[-1]
        client = deployment.node_clients()[node]
        try:
            client.client_kill_filter(_id=victim)
        finally:
            client.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not tracker.drain().reset:
            _pause()
        assert not tracker.healthy
        assert tracker.drain().reset and tracker.healthy  # reconnected to every node: trust starts over
        assert len(tracker.primaries) == len(ours)
    finally:
        tracker.close()


def test_idle_past_the_bound_is_a_reset(deployment: Deployment, prefix: str) -> None:
    tracker = deployment.new_tracker(prefix, 0.0)
    try:
        tracker.drain()
        _pause()
        assert tracker.drain().reset
    finally:
        tracker.close()


def test_an_expired_lease_is_renewed_with_one_round_trip(tracked: InvalidationTracker) -> None:
    tracked.lease.started -= 10.0  # idle far past the 0.5 s lease
    before = time.monotonic()
    assert not tracked.drain().reset and tracked.healthy
    assert tracked.lease.started >= before and tracked.lease.sent_at is None  # every node's PONG came
    assert tracked.quiet()


def test_a_busy_lease_pings_without_waiting_and_the_pongs_renew_it(tracked: InvalidationTracker) -> None:
    tracked.lease.started -= 0.3  # past half the lease
    assert not tracked.quiet()
    tracked.drain()
    sent = tracked.lease.sent_at
    assert sent is not None and tracked.lease.awaiting == set(range(len(tracked.primaries)))  # no wait
    for _ in range(200):
        if tracked.lease.sent_at is None:
            break
        _pause()
        tracked.drain()
    assert tracked.lease.started == sent and not tracked.drain().reset


def test_created_versions_are_read_back_and_not_echoed(deployment: Deployment, tracked: InvalidationTracker,
                                                       prefix: str) -> None:
    for tenant in TENANTS:
        keys = [f"{prefix}{{t{tenant}}}:a", f"{prefix}{{t{tenant}}}:b"]
        values = tracked.create_versions(keys)
        assert values is not None and [deployment.writer.get(k) for k in keys] == values
        assert tracked.create_versions(keys) == values  # existing keys are read, not replaced
    sentinel = f"{prefix}{{t1}}:sentinel"
    deployment.writer.set(sentinel, "later")
    assert _keys_until(tracked, {sentinel}) == {sentinel}  # NOLOOP: only the sentinel came back


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
