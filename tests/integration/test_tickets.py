"""Tickets on version tokens (chalicelib/cache/tickets.py) against the real Redis: a bump
carries the writer's ticket, never lowers a key's ticket, and a loader is handed the
highest ticket of the versions it fills under, and its note of where it read comes back."""
from __future__ import annotations

from typing import Callable

from chalicelib.cache.tickets import Fill, highest_ticket, new_token, ticket_of
from chalicelib.cache.tiered import TieredCache


def test_tokens_stay_random_and_carry_the_ticket() -> None:
    a, b = new_token("00000000000000ff"), new_token("00000000000000ff")
    assert a != b and ticket_of(a) == "00000000000000ff"
    assert ticket_of(new_token()) == "" and "." not in new_token()
    assert highest_ticket([new_token(), a, new_token("0000000000000001")]) == "00000000000000ff"
    assert highest_ticket([new_token()]) == ""
    assert Fill.under([new_token(), a]).ticket == "00000000000000ff" and Fill.under([]).ticket == ""


def test_bump_keeps_the_higher_ticket(make_cache: Callable[..., TieredCache]) -> None:
    cache = make_cache()
    assert cache.invalidate(1, ["s"], ticket="0000000000000200")
    key = cache.keys.version(1, "s")
    first = cache.l2.client.get(key).decode()  # type: ignore[union-attr]
    assert ticket_of(first) == "0000000000000200"
    # A writer that committed earlier bumps later: the value changes, the ticket stays.
    assert cache.invalidate(1, ["s"], ticket="0000000000000100")
    second = cache.l2.client.get(key).decode()  # type: ignore[union-attr]
    assert second != first and ticket_of(second) == "0000000000000200"
    assert cache.coherence.known[key] == second
    assert cache.invalidate(1, ["s"], ticket="0000000000000300")
    assert ticket_of(cache.l2.client.get(key).decode()) == "0000000000000300"  # type: ignore[union-attr]
    # Without a ticket (no replica configured): the plain MSET, no ticket.
    assert cache.invalidate(1, ["s"])
    assert ticket_of(cache.l2.client.get(key).decode()) == ""  # type: ignore[union-attr]


def test_the_loader_sees_the_highest_ticket_it_fills_under(make_cache: Callable[..., TieredCache]) -> None:
    cache = make_cache()
    policy = cache.policy("slots")
    key = cache.keys.key(1, "slots", "x", ("a", "b"))
    cache.invalidate(1, ["a"], ticket="0000000000000010")
    cache.invalidate(1, ["b"], ticket="0000000000000020")
    seen: list[str] = []

    def loader(fill: Fill) -> str:
        seen.append(fill.ticket)
        fill.source = "here"
        return "{}"

    result = cache.get_or_load(key, loader, policy)
    assert result is not None and result.source == "DB" and result.read_from == "here"
    assert seen == ["0000000000000020"]
    assert cache.prewarm(cache.keys.key(1, "slots", "y", ("a",)), loader, policy)
    assert seen[-1] == "0000000000000010"
