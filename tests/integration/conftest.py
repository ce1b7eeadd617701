"""Fixtures for the cache's integration tests against the real Redis of REDIS_URL (no
PostgreSQL: the loaders here are plain functions). The integration tests that need
PostgreSQL too use tests/conftest.py's `app_env`, `client` and `fresh_db`."""
from __future__ import annotations

import dataclasses
import os
import uuid
from typing import Callable, Iterator

import pytest
import redis

from chalicelib.cache.policies import Freshness
from chalicelib.cache.tiered import TieredCache
from chalicelib.settings import CacheSettings, DatabaseSettings, RedisSettings, Settings, parse_redis_url

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# The one resource these tests cache: short-lived and booking-critical, like free slots.
DECLARED = {"slots": Freshness(15.0, 300.0, critical=True)}


def redis_settings(**overrides: object) -> RedisSettings:
    """The test Redis, with the app's defaults unless overridden."""
    return dataclasses.replace(RedisSettings(**parse_redis_url(REDIS_URL)), **overrides)  # type: ignore[arg-type]


@pytest.fixture()
def namespace() -> Iterator[str]:
    """A private key namespace, deleted afterwards."""
    name = f"hbit{uuid.uuid4().hex[:10]}"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{name}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture()
def make_cache(namespace: str) -> Iterator[Callable[..., TieredCache]]:
    """Build TieredCaches on the test Redis (closed afterwards)."""
    built: list[TieredCache] = []

    def make(**cache_overrides: object) -> TieredCache:
        settings = Settings(db=DatabaseSettings(), redis=redis_settings(),
                            cache=CacheSettings(namespace=namespace, **cache_overrides),  # type: ignore[arg-type]
                            auth_secret="x" * 32)
        cache = TieredCache(settings, DECLARED)
        built.append(cache)
        return cache

    yield make
    for cache in built:
        if cache.tracker is not None:
            cache.tracker.close()
