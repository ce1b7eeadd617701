"""This container's cache, wired to the booking side: the database's "unavailable" error is
the loader's "source unavailable", and outbox replay runs when Redis recovers."""
from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Optional

from chalicelib.db.errors import DatabaseUnavailable
from chalicelib.settings import get_settings

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
    # The cache and redis-py behind it are imported by the first request, not at a cold start.
    from chalicelib.cache.tiered import TieredCache

    with _cache_lock:
        if _cache is None:
            cache = TieredCache(get_settings(), source_errors=(DatabaseUnavailable,))
            if cache.l2 is not None:
                cache.l2.on_recover = lambda: _replay_quietly(cache)
            _cache = cache
        return _cache


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


def _replay_quietly(cache: TieredCache) -> None:
    from chalicelib.booking.invalidation import replay_outbox

    try:
        replay_outbox(cache)
    except Exception:  # noqa: BLE001 - replay is retried by the schedule
        log.warning("outbox replay after Redis recovery failed; the schedule will retry")
