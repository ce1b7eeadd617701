"""L1 storage on its own: the count and byte bounds, second-chance eviction of records
that were served, and dropping every record built under given version keys."""
from __future__ import annotations

from chalicelib.cache.entry import Entry
from chalicelib.cache.memory import MemoryTier


def _entry(body: str, version_key: str = "v:a") -> Entry:
    return Entry.build(body, ((version_key, "1"),), fresh_s=60, stale_s=60)


def test_count_bound_evicts_the_oldest_unserved_record():
    tier = MemoryTier(max_entries=3, max_bytes=10**6)
    for key in ("a", "b", "c"):
        tier.set(key, _entry(key))
    tier.set("d", _entry("d"))
    assert tier.get("a") is None
    assert [tier.get(k) is not None for k in ("b", "c", "d")] == [True, True, True]
    assert tier.entries == 3 and tier.evictions == 1


def test_a_served_record_gets_a_second_chance():
    tier = MemoryTier(max_entries=3, max_bytes=10**6)
    for key in ("a", "b", "c"):
        tier.set(key, _entry(key))
    tier.get("a").used = True  # what the orchestrator does when it serves "a"
    tier.set("d", _entry("d"))
    assert tier.get("a") is not None and tier.get("b") is None
    assert tier.get("a").used is False  # the chance is spent: next time "a" is a candidate
    tier.set("e", _entry("e"))
    assert tier.get("c") is None and tier.get("a") is not None


def test_byte_bound_and_oversized_entries():
    one = _entry("x" * 100)
    tier = MemoryTier(max_entries=100, max_bytes=2 * one.size + 10)
    tier.set("a", one)
    tier.set("b", _entry("y" * 100))
    tier.set("c", _entry("z" * 100))
    assert tier.get("a") is None and tier.entries == 2
    assert tier.bytes == 2 * one.size
    tier.set("huge", _entry("h" * (3 * one.size)))  # larger than the whole tier: not stored
    assert tier.get("huge") is None and tier.entries == 2


def test_replacing_a_key_keeps_the_byte_count_exact():
    tier = MemoryTier(max_entries=10, max_bytes=10**6)
    tier.set("a", _entry("x" * 50))
    tier.set("a", _entry("x" * 80))
    assert tier.entries == 1 and tier.bytes == _entry("x" * 80).size
    tier.delete("a")
    assert tier.entries == 0 and tier.bytes == 0


def test_drop_depending_on_removes_only_records_built_under_those_versions():
    tier = MemoryTier(max_entries=10, max_bytes=10**6)
    tier.set("slots", _entry("s", "v:slots"))
    tier.set("appts", _entry("a", "v:appts"))
    assert tier.drop_depending_on(["v:slots"]) == 1
    assert tier.get("slots") is None and tier.get("appts") is not None
    assert tier.bytes == _entry("a").size
