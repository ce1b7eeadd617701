"""One contract for the cache's stores, run against the memory store, the Redis store and
the fault-injecting Redis store: what is put is got back whole, overwritten, deleted; and a
store that fails answers a neutral value (never raises), trips its breaker, and recovers."""
from __future__ import annotations

from typing import Iterator, Optional, Protocol

import pytest

from chalicelib.cache.entry import Entry, decode_versions
from chalicelib.cache.memory import MemoryTier
from chalicelib.cache.redis_tier import RedisTier
from chalicelib.cache.stats import TierStats
from tests.integration.conftest import redis_settings
from tests.integration.faults import FaultyRedisTier


class Store(Protocol):
    def put(self, key: str, body: str) -> bool: ...
    def get(self, key: str) -> Optional[Entry]: ...
    def delete(self, key: str) -> None: ...


class MemoryStore:
    """The contract over MemoryTier."""

    def __init__(self) -> None:
        self.tier = MemoryTier(100, 1 << 20)

    def put(self, key: str, body: str) -> bool:
        self.tier.set(key, Entry.build(body, (), 60, 60))
        return True

    def get(self, key: str) -> Optional[Entry]:
        record = self.tier.get(key)
        return None if record is None else record.entry

    def delete(self, key: str) -> None:
        self.tier.delete(key)


class RedisStore:
    """The contract over RedisTier (bodies stored under their current versions)."""

    def __init__(self, tier: RedisTier, namespace: str) -> None:
        self.tier = tier
        self.versions = (f"{namespace}:v:{{t1}}:contract",)

    def put(self, key: str, body: str) -> bool:
        raw = self.tier.init_versions(self.versions)
        if raw is None:
            return False
        entry = Entry.build(body, decode_versions(self.versions, raw), 60, 60)
        return self.tier.store(self.versions, [v for _, v in entry.versions], key, entry.encode(), 120_000)

    def get(self, key: str) -> Optional[Entry]:
        reply = self.tier.fetch(self.versions, key)
        return Entry.decode(reply[-1]) if reply and reply[-1] else None

    def delete(self, key: str) -> None:
        self.tier.client.delete(key)


@pytest.fixture(params=["memory", "redis", "faulty-redis"])
def store(request: pytest.FixtureRequest, namespace: str) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    cls = RedisTier if request.param == "redis" else FaultyRedisTier
    tier = cls(redis_settings(breaker_cooldown_s=0.0), TierStats())
    yield RedisStore(tier, namespace)
    tier.client.close()


def _key(store: Store, name: str) -> str:
    versions = getattr(store, "versions", ("x:v:{t1}:contract",))
    return versions[0].replace(":v:", ":b:") + ":" + name


def test_missing_key_reads_none(store: Store) -> None:
    assert store.get(_key(store, "missing")) is None


def test_put_then_get_returns_the_whole_entry(store: Store) -> None:
    key = _key(store, "a")
    assert store.put(key, '{"a":1}')
    got = store.get(key)
    assert got is not None and got.body == '{"a":1}' and got.etag.startswith('"')


def test_put_overwrites(store: Store) -> None:
    key = _key(store, "b")
    store.put(key, '"old"')
    store.put(key, '"new"')
    got = store.get(key)
    assert got is not None and got.body == '"new"'


def test_delete(store: Store) -> None:
    key = _key(store, "c")
    store.put(key, '"x"')
    store.delete(key)
    assert store.get(key) is None


@pytest.mark.parametrize("fault", ["fail", "timeout"])
def test_faulty_store_answers_neutral_values_trips_and_recovers(namespace: str, fault: str) -> None:
    recovered: list[bool] = []
    tier = FaultyRedisTier(redis_settings(breaker_failures=2, breaker_cooldown_s=0.0), TierStats(),
                           on_recover=lambda: recovered.append(True))
    store = RedisStore(tier, namespace)
    key = _key(store, "f")
    assert store.put(key, '"before"')
    tier.fault = fault
    assert store.get(key) is None  # neutral, no exception
    assert not store.put(key, '"during"')
    assert tier.breaker.tripped and tier.stats.errors >= 2
    assert tier.bump(["k"]) is None and tier.try_lock(f"{namespace}:l:x", 1000) is None
    tier.fault = None
    got = store.get(key)  # the half-open probe (cool-down 0) succeeds
    assert got is not None and got.body == '"before"'
    assert not tier.breaker.tripped and recovered == [True]
    tier.client.close()


def test_lost_connections_never_raise_nor_answer_wrong(namespace: str) -> None:
    """The server kills the store's connection before each command: every answer is the
    right one (redis-py reconnected) or a neutral one (the command was lost), never an
    exception, and the store works once the connections stay up."""
    tier = FaultyRedisTier(redis_settings(breaker_cooldown_s=0.0), TierStats())
    store = RedisStore(tier, namespace)
    key = _key(store, "d")
    assert store.put(key, '"before"')
    tier.fault = "disconnect"
    for _ in range(5):
        got = store.get(key)
        assert got is None or got.body in ('"before"', '"during"')
        store.put(key, '"during"')
    tier.fault = None
    for _ in range(tier.breaker.failure_threshold + 1):
        if store.put(key, '"after"'):
            break
    got = store.get(key)
    assert got is not None and got.body == '"after"'
    tier.client.close()
