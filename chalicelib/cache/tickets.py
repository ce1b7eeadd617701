"""Tickets: an opaque suffix a writer attaches to the version tokens it bumps, and the
`Fill` a loader is handed: the ticket of the versions it fills under, and a note of where
it read.

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
- a loader run by `TieredCache._load` or `prewarm` is handed a `Fill` whose `ticket` is
  the highest ticket of the versions its result will be stored under.

Only the load path builds a Fill: the L1 hit path never touches one.
"""
from __future__ import annotations

import secrets
import time
from typing import Iterable

SEPARATOR = "."


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


class Fill:
    """What a loader is told about the fill it runs for, and what it reports back.

    `ticket`: the highest ticket of the versions its result will be stored under ("" when
    none carries one). `source`: where the loader read, in its own words (the booking side
    writes "replica" or "primary"); the cache passes it on in the CacheResult untouched."""

    __slots__ = ("ticket", "source")

    def __init__(self, ticket: str = "") -> None:
        self.ticket = ticket
        self.source = ""

    @classmethod
    def under(cls, values: Iterable[str]) -> "Fill":
        """The fill of a result stored under these version values."""
        return cls(highest_ticket(values))
