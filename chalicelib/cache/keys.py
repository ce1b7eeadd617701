"""Cache key layout. Every key carries the tenant in a Redis Cluster hash tag, so one
tenant's versions, bodies and locks share a shard and a multi-key MGET stays legal.

    {ns}:v:{t42}:slots:2026-11-26:d7   version key (tracked by L1 invalidation)
    {ns}:b:{t42}:slots:<params>        body key (entry: envelope + body)
    {ns}:l:{t42}:slots:<params>        loader lock
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

# Version keys expire after a week without a bump (every bump and every creation sets it),
# so keys that requests can name but no write ever touches do not pile up in Redis. A week
# is longer than any stale life (settings refuse a longer one); an expired key reads as
# "changed" and is created anew with a fresh random token, so no old body matches it.
VERSION_TTL_S = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class CacheKey:
    """One cacheable answer: its body key, lock key and the version keys it depends on."""

    tenant: int
    resource: str
    body: str
    lock: str
    versions: tuple[str, ...]


class KeySpace:
    """Builds keys under one namespace."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.version_prefix = f"{namespace}:v:"
        # Hot keys repeat: build each CacheKey once (bounded memo).
        self.key = lru_cache(maxsize=16384)(self._build)  # type: ignore[method-assign]

    def version(self, tenant: int, scope: str) -> str:
        """The version key of one invalidation scope of a tenant."""
        return f"{self.version_prefix}{{t{tenant}}}:{scope}"

    def key(self, tenant: int, resource: str, params: str, scopes: tuple[str, ...]) -> CacheKey:
        """The key of `resource` for canonical `params`, depending on `scopes` (memoized)."""
        return self._build(tenant, resource, params, scopes)

    def _build(self, tenant: int, resource: str, params: str, scopes: Iterable[str]) -> CacheKey:
        tail = f"{{t{tenant}}}:{resource}:{params}"
        return CacheKey(tenant, resource, f"{self.namespace}:b:{tail}", f"{self.namespace}:l:{tail}",
                        tuple(self.version(tenant, s) for s in scopes))
