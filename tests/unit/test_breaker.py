"""The circuit breaker's states (chalicelib.cache.breaker)."""
from __future__ import annotations

from chalicelib.cache.breaker import CircuitBreaker


def test_opens_at_the_threshold_and_refuses_during_cooldown() -> None:
    breaker = CircuitBreaker(3, cooldown_s=3600)
    for _ in range(2):
        breaker.failure()
        assert breaker.state == "closed" and breaker.allow()
    breaker.failure()
    assert breaker.state == "open" and breaker.tripped
    assert not breaker.allow()
    assert breaker.opened_count == 1


def test_half_open_lets_one_probe_through_and_closes_on_success() -> None:
    breaker = CircuitBreaker(1, cooldown_s=0)
    breaker.failure()
    assert breaker.state == "half_open"
    assert breaker.allow()
    assert not breaker.allow()  # only one probe at a time
    breaker.success()
    assert breaker.state == "closed" and not breaker.tripped and breaker.allow()


def test_failed_probe_opens_again_without_counting_a_new_opening() -> None:
    breaker = CircuitBreaker(1, cooldown_s=0)
    breaker.failure()
    assert breaker.allow()
    breaker.failure()
    assert breaker.tripped and breaker.opened_count == 1
    assert breaker.allow()  # cooldown 0: the next probe may go
