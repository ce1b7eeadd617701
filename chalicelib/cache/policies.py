"""Freshness policies per resource, from settings (overridable per stage)."""
from __future__ import annotations

import random
from dataclasses import dataclass

from chalicelib.settings import CacheSettings

# Resources whose cached answers decide what a user may book: while Redis (and with it
# cross-container invalidation) is down, their L1 copies live at most a short bound.
BOOKING_CRITICAL = frozenset({"slots", "appointments"})


@dataclass(frozen=True)
class Policy:
    """How long a resource's answers are fresh, how long a stale copy is kept for the
    fail-safe, TTL jitter, and whether it is booking-critical."""

    name: str
    fresh_s: float
    stale_s: float
    jitter: float
    critical: bool

    def fresh_for(self) -> float:
        """This entry's freshness: the policy's, shortened by up to `jitter` at random so
        entries made together do not all expire together."""
        return self.fresh_s * (1.0 - self.jitter * random.random())


def policies_from(settings: CacheSettings) -> dict[str, Policy]:
    """One Policy per resource named in the settings."""
    return {name: Policy(name, fresh, stale, settings.jitter, name in BOOKING_CRITICAL)
            for name, (fresh, stale) in settings.policies.items()}
