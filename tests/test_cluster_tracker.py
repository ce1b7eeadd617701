"""The per-primary tracker on a real three-primary cluster: one connection per primary,
pushes from every shard reach one drain, missing versions are created on the owner's
tracking connection (not echoed back), and a topology change resets and reconnects."""
from __future__ import annotations

import dataclasses
import time
import uuid

import pytest
import redis

from chalicelib.cache.cluster_tracking import ClusterTracker, primaries_of
from chalicelib.cache.redis_tier import make_client
from chalicelib.settings import RedisSettings, parse_redis_url
from tests.helpers_cluster import running_cluster


@pytest.fixture(scope="module")
def cluster():
    with running_cluster(3) as started:
        yield started


@pytest.fixture()
def tracker(cluster):
    settings = dataclasses.replace(RedisSettings(**parse_redis_url(cluster.url)), cluster=True,
                                   read_timeout_s=1.0, breaker_cooldown_s=0.0)
    prefix = f"hbct{uuid.uuid4().hex[:8]}:v:"
    t = ClusterTracker(settings, prefix, 60.0, 0.5)
    client = make_client(settings, t.topology_changed)
    t.discover = lambda: primaries_of(client)
    assert t.drain().reset  # the first drain connects to every primary: a reset
    t.drain()  # the cluster client's own first slots refresh may count as a topology change
    assert t.healthy and t.quiet()
    yield t, client, prefix
    t.close()
    client.close()


def _drain_until(t: ClusterTracker, want: set[str], timeout: float = 5.0) -> set[str]:
    got: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not want <= got:
        result = t.drain()
        assert not result.reset
        got.update(result.keys)
        time.sleep(0.01)
    return got


def test_one_connection_per_primary_and_pushes_from_every_shard(tracker, cluster):
    t, client, prefix = tracker
    assert sorted(p for _, p in t.primaries) == sorted(n.port for n in cluster.nodes)
    keys = {f"{prefix}{{t{n}}}:x" for n in (1, 2, 4)}  # three tenants, three shards
    assert len({cluster.owner_of(k).port for k in keys}) == 3
    writer = redis.RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port)
    try:
        for key in keys:
            writer.set(key, "1")
    finally:
        writer.close()
    assert _drain_until(t, keys) >= keys


def test_created_versions_go_to_the_owner_and_are_not_echoed(tracker, cluster):
    t, client, prefix = tracker
    keys = [f"{prefix}{{t2}}:a", f"{prefix}{{t2}}:b"]
    values = t.create_versions(keys)
    assert values is not None and [client.get(k) for k in keys] == values
    time.sleep(0.1)
    result = t.drain()
    assert result.keys == [] and not result.reset  # NOLOOP: our own creation is not pushed back
    assert t.create_versions([f"{prefix}{{t1}}:a", f"{prefix}{{t2}}:a"]) is None  # two slots: refused


def test_topology_change_resets_and_reconnects(tracker):
    t, client, prefix = tracker
    t.topology_changed()
    assert not t.healthy and not t.quiet()
    result = t.drain()
    assert result.reset and t.healthy and len(t.primaries) == 3
    assert t.topology_resets >= 1


def test_a_lost_tracking_connection_is_a_reset(tracker, cluster):
    t, client, prefix = tracker
    victim = cluster.nodes[1].client()
    try:
        victim.client_kill_filter(_type="normal", skipme=True)
    finally:
        victim.close()
    deadline = time.monotonic() + 5
    reset = False
    while time.monotonic() < deadline and not reset:
        reset = t.drain().reset
        time.sleep(0.01)
    assert reset
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not t.healthy:
        t.drain()
    assert t.healthy and len(t.primaries) == 3
