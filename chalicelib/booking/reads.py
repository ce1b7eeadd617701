"""Cached reads: a ReadPlan says what to look up and how (chalicelib/cached_answers.py
serves it through the cache with the headers of API.md)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from chalicelib.audit.read_log import ReadEvent
from chalicelib.auth import Principal

if TYPE_CHECKING:
    from chalicelib.cache.keys import CacheKey
    from chalicelib.cache.policies import Policy
    from chalicelib.cache.tiered import Loader

class ReadPlan:
    """A validated, authorized cached read: what to look up, how, until when the caller's
    token allows it, and `audit`, the event each read of it records (None: not audited).
    Built once per (route, token, query) and reused."""

    __slots__ = ("expires_at", "key", "policy", "loader", "diagnostics", "audit")

    def __init__(self, principal: Principal, key: CacheKey, policy: Policy,
                 loader: Loader, audit: Optional[ReadEvent] = None) -> None:
        self.expires_at = principal.expires_at
        self.key = key
        self.policy = policy
        self.loader = loader
        self.diagnostics = principal.sees_diagnostics
        self.audit = audit
