"""Redis Cluster without a cluster: every multi-key command touches one hash slot, the
setting parses, and the tracker routes a slot to the primary that owns it."""
from __future__ import annotations

from redis.crc import key_slot

from chalicelib.cache import fleet
from chalicelib.cache.keys import KeySpace
from chalicelib.cache.tracking import InvalidationTracker
from chalicelib.settings import RedisSettings, load_settings


def test_fleet_keys_share_one_slot() -> None:
    keys = [fleet.index_key("hb"), fleet.snapshot_key("hb", "1-ab"), fleet.snapshot_key("hb", "99-cd")]
    assert len({key_slot(k.encode()) for k in keys}) == 1


def test_one_reads_keys_share_the_tenants_slot() -> None:
    key = KeySpace("hb").key(42, "slots", "date=2026-12-01", ("day:2026-12-01", "doctor:7"))
    slots = {key_slot(k.encode()) for k in (*key.versions, key.body, key.lock)}
    assert slots == {key_slot(b"t42")}


def test_redis_cluster_setting() -> None:
    base = {"DATABASE_URL": "postgresql://u@h/d", "AUTH_SECRET": "x" * 32, "REDIS_URL": "redis://node-3:7000/0"}
    assert load_settings(base).redis.cluster is False
    on = load_settings({**base, "REDIS_CLUSTER": "1"}).redis
    assert on.cluster is True and (on.host, on.port) == ("node-3", 7000)


def test_tracker_knows_the_owner_of_each_slot() -> None:
    tracker = InvalidationTracker(RedisSettings(cluster=True), "hb:v:", 60.0, 0.5)
    tracker._starts = [0, 5461, 10923]
    tracker._owners = [(5460, 0), (10922, 1), (16383, 2)]
    assert [tracker._owner(s) for s in (0, 5460, 5461, 12000, 16383)] == [0, 0, 1, 2, 2]
    assert not tracker.healthy
    tracker.topology.set()
    assert not tracker.quiet()
