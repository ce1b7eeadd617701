"""The stampede lock of one key, between two containers (two TieredCaches) on a real Redis."""
from __future__ import annotations

import threading
import time
from typing import Callable

from chalicelib.cache.tickets import Fill
from chalicelib.cache.tiered import TieredCache


def _counting_loader(calls: list[int], body: str = '"loaded"') -> Callable[[Fill], str]:
    def load(fill: Fill) -> str:
        calls.append(1)
        return body
    return load


def test_lock_held_with_a_stale_copy_serves_stale(make_cache: Callable[..., TieredCache]) -> None:
    a, b = make_cache(), make_cache()
    key = b.keys.key(1, "slots", "p", ("s",))
    policy = b.policy("slots")
    calls: list[int] = []
    assert b.get_or_load(key, _counting_loader(calls), policy).source == "DB"
    record = b.l1.get(key.body)
    assert record is not None
    record.ok_until = 0.0
    object.__setattr__(record.entry, "fresh_until", 0.0)  # expired, still version-valid
    a.l2.client.delete(key.body)  # type: ignore[union-attr]
    assert a.l2.try_lock(key.lock, 5000) is not None  # type: ignore[union-attr]  # A is loading
    assert b.get_or_load(key, _counting_loader(calls), policy).source == "STALE"
    assert len(calls) == 1


def test_waiter_takes_the_winners_value(make_cache: Callable[..., TieredCache]) -> None:
    a, b = make_cache(lock_wait_s=5.0), make_cache()
    key = a.keys.key(1, "slots", "q", ("s",))
    policy = a.policy("slots")
    token = b.l2.try_lock(key.lock, 5000)  # type: ignore[union-attr]  # B is loading
    assert token is not None
    calls: list[int] = []
    results: list[object] = []
    waiter = threading.Thread(target=lambda: results.append(a.get_or_load(key, _counting_loader(calls), policy)))
    waiter.start()
    deadline = time.monotonic() + 5
    while a.stats.lock_waits == 0 and time.monotonic() < deadline:
        time.sleep(0.001)  # until A is waiting for the winner
    assert b.prewarm(key, lambda fill: '"from-b"', policy)  # B stores under the current versions
    b.l2.unlock(key.lock, token)  # type: ignore[union-attr]
    waiter.join(10)
    result = results[0]
    assert getattr(result, "source") == "L2" and getattr(result, "entry").body == '"from-b"'
    assert calls == []


def test_holder_vanished_waiter_loads_itself(make_cache: Callable[..., TieredCache]) -> None:
    a, b = make_cache(lock_wait_s=2.0, lock_ttl_ms=50), make_cache()
    key = a.keys.key(1, "slots", "r", ("s",))
    assert b.l2.try_lock(key.lock, 50) is not None  # type: ignore[union-attr]  # expires unreleased
    calls: list[int] = []
    result = a.get_or_load(key, _counting_loader(calls), a.policy("slots"))
    assert result is not None and result.source == "DB" and calls == [1]
    assert a.stats.lock_waits == 1
