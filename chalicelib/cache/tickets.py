"""Tickets: an opaque suffix a writer attaches to the version tokens it bumps, and the
fill context through which a loader learns the tickets of the versions it fills under.

The cache gives tickets no meaning. The booking side uses them for read replicas: a
write's ticket is its commit LSN (fixed-width hex), and a loader filling under versions
whose highest ticket is L reads a replica only once it has replayed L
(chalicelib/booking/read_source.py). Contract for whoever makes tickets:

- a ticket is a non-empty string without "." and tickets compare as strings (give
  fixed-width ones), so "highest" is `max`;
- a version token is `<hex time><random>[.<ticket>]`: still random and never repeating;
  a token without a ticket (created on read, replayed from the outbox) has ticket "";
- a bump never lowers a key's ticket (`RedisTier.bump` keeps the higher of the old and
  the new one), so two writers bumping out of commit order leave the later commit's;
- while a loader runs under `TieredCache._load` or `prewarm`, `fill_ticket()` is the
  highest ticket of the versions its result will be stored under ("" outside a fill).

Only the load path sets the context value: the L1 hit path never touches it.
"""
from __future__ import annotations

import secrets
import time
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterable, Iterator

SEPARATOR = "."

_FILL_TICKET: ContextVar[str] = ContextVar("hb_fill_ticket", default="")


def new_token(ticket: str = "") -> str:
    """A fresh, never-repeating version value, carrying `ticket` if one is given."""
    base = f"{time.time_ns():x}{secrets.token_hex(4)}"
    return f"{base}{SEPARATOR}{ticket}" if ticket else base


def ticket_of(value: str) -> str:
    """The ticket a version value carries ("" when none)."""
    _, sep, ticket = value.rpartition(SEPARATOR)
    return ticket if sep else ""


def highest_ticket(values: Iterable[str]) -> str:
    """The highest ticket among version values ("" when none carries one)."""
    return max((ticket_of(v) for v in values), default="")


def fill_ticket() -> str:
    """The highest ticket of the versions the running fill stores under ("" if none)."""
    return _FILL_TICKET.get()


@contextmanager
def filling(values: Iterable[str]) -> Iterator[None]:
    """Run a loader with `fill_ticket()` set from the version values it fills under."""
    token = _FILL_TICKET.set(highest_ticket(values))
    try:
        yield
    finally:
        _FILL_TICKET.reset(token)
