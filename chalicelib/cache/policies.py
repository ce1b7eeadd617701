"""Freshness policies: each cached resource declares its lifetimes (see
chalicelib/booking/resources.py); a stage's settings may override them by name."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Mapping

from chalicelib.cache.keys import VERSION_TTL_S
from chalicelib.settings import CacheSettings


@dataclass(frozen=True)
class Freshness:
    """A resource's declared lifetimes, before a stage's overrides. A booking-critical
    resource decides what a user may book: while Redis (and with it cross-container
    invalidation) is down, its L1 copies live at most a short bound."""

    fresh_s: float
    stale_s: float
    critical: bool = False


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


def policies_from(declared: Mapping[str, Freshness], settings: CacheSettings) -> dict[str, Policy]:
    """One Policy per declared resource, with the settings' overrides applied. ValueError
    when an override names no declared resource (a typo would otherwise be ignored)."""
    unknown = sorted((set(settings.fresh_overrides) | set(settings.stale_overrides)) - set(declared))
    if unknown:
        raise ValueError(f"CACHE_TTL_/CACHE_STALE_ overrides name no cached resource: "
                         f"{', '.join(n.upper() for n in unknown)} "
                         f"(cached resources: {', '.join(n.upper() for n in sorted(declared))})")
    too_long = sorted(n for n, stale_s in settings.stale_overrides.items() if stale_s >= VERSION_TTL_S)
    if too_long:
        raise ValueError(f"CACHE_STALE_{too_long[0].upper()} must be shorter than {VERSION_TTL_S} seconds"
                         f" (a week: version keys expire after that)")
    return {name: Policy(name, settings.fresh_overrides.get(name, d.fresh_s),
                         settings.stale_overrides.get(name, d.stale_s), settings.jitter, d.critical)
            for name, d in declared.items()}
