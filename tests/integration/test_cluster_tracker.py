"""What only a cluster has, on a real three-primary cluster: one tracking connection per
primary, missing versions created on the owner's connection (keys of two slots refused),
and a topology change resets and reconnects. The contract the tracker keeps on one node and
on a cluster alike is tests/integration/test_tracker.py."""
from __future__ import annotations

import dataclasses
import time
import uuid

import pytest

from chalicelib.cache.redis_tier import make_client
from chalicelib.cache.tracking import InvalidationTracker, TopologySignal, primaries_of
from chalicelib.settings import RedisSettings, parse_redis_url
from support.cluster import running_cluster


@pytest.fixture(scope="module")
def cluster():
    with running_cluster(3) as started:
        yield started


@pytest.fixture()
def tracker(cluster):
    settings = dataclasses.replace(RedisSettings(**parse_redis_url(cluster.url)), cluster=True,
                                   read_timeout_s=1.0, breaker_cooldown_s=0.0)
    prefix = f"hbct{uuid.uuid4().hex[:8]}:v:"
    topology = TopologySignal()
    client = make_client(settings, topology.set)
    t = InvalidationTracker(settings, prefix, 60.0, 0.5, nodes=lambda: primaries_of(client), topology=topology)
    assert t.drain().reset  # the first drain connects to every primary: a reset
    t.drain()  # the cluster client's own first slots refresh may count as a topology change
    assert t.healthy and t.quiet()
    yield t, client, prefix
    t.close()
    client.close()


def test_one_connection_per_primary(tracker, cluster):
    t, client, prefix = tracker
    assert sorted(p for _, p in t.primaries) == sorted(n.port for n in cluster.nodes)
    keys = {f"{prefix}{{t{n}}}:x" for n in (1, 2, 4)}  # three tenants, three shards
    assert len({cluster.owner_of(k).port for k in keys}) == 3


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
    t.topology.set()
    assert not t.healthy and not t.quiet()
    result = t.drain()
    assert result.reset and t.healthy and len(t.primaries) == 3
    assert t.topology_resets >= 1
