"""This container's cache, wired to the booking side: the declared resources' lifetimes,
the database's "unavailable" error as the loader's "source unavailable", and outbox replay
when Redis recovers."""
from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Optional

from chalicelib.booking.resources import declared_freshness
from chalicelib.db.errors import DatabaseUnavailable
from chalicelib.settings import Settings, get_settings

if TYPE_CHECKING:
    from chalicelib.cache.tiered import TieredCache

log = logging.getLogger(__name__)

_cache: Optional[TieredCache] = None
_cache_lock = threading.Lock()


def get_cache() -> TieredCache:
    """This container's cache, built from settings on first use."""
    cache = _cache
    if cache is None:
        cache = _build()
    return cache


def _build() -> TieredCache:
    global _cache
    with _cache_lock:
        if _cache is None:
            _cache = new_cache(get_settings())
        return _cache


def new_cache(settings: Settings) -> TieredCache:
    """A cache for the booking API under `settings` (the container's own is `get_cache()`)."""
    # The cache and redis-py behind it are imported by the first request, not at a cold start.
    from chalicelib.cache.tiered import TieredCache

    cache = TieredCache(settings, declared_freshness(), source_errors=(DatabaseUnavailable,),
                        on_l2_recover=_replay_quietly)
    _share_provider_keys(cache)
    return cache


def _share_provider_keys(cache: TieredCache) -> None:
    """An OpenID provider's keys are kept in Redis too, so a new container verifies without
    asking the provider (only when a provider is configured: nothing is imported otherwise)."""
    if not cache.settings.oidc.enabled:
        return
    from chalicelib import oidc

    oidc.share_keys_through(cache.l2, cache.keys.namespace)


def built_cache() -> Optional[TieredCache]:
    """The cache if one was built (never builds one just to report on it)."""
    return _cache


def reset_cache() -> None:
    """Forget this container's cache (tests; after settings change)."""
    global _cache
    with _cache_lock:
        if _cache is not None and _cache.tracker is not None:
            _cache.tracker.close()
        _cache = None


def abandon_inherited_cache(keep: list[object]) -> None:
    """In a forked or restored copy of the process: forget the parent's cache without
    closing anything (its Redis sockets are the parent's too: closing them here would shut
    them down under the parent); it goes to `keep`, so no finalizer ever runs. The next
    request builds a cache of its own: new connections, tracking, coherence, statistics."""
    global _cache, _cache_lock
    if _cache is not None:
        keep.append(_cache)
    _cache, _cache_lock = None, threading.Lock()


def _replay_quietly(cache: TieredCache) -> None:
    from chalicelib.booking.invalidation import replay_outbox

    try:
        replay_outbox(cache)
    except Exception:  # noqa: BLE001 - replay is retried by the schedule
        log.warning("outbox replay after Redis recovery failed; the schedule will retry")
