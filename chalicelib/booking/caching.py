"""This container's cache, wired to the booking side: the resources' declared lifetimes,
the database's "unavailable" error as the loader's "source unavailable", and outbox replay
when Redis recovers."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Mapping

from chalicelib import runtime
from chalicelib.db.errors import DatabaseUnavailable
from chalicelib.settings import Settings

if TYPE_CHECKING:
    from chalicelib.cache.policies import Freshness
    from chalicelib.cache.tiered import TieredCache

log = logging.getLogger(__name__)


def get_cache() -> TieredCache:
    """This container's cache (the runtime's, built on first use)."""
    return runtime.current().cache


def new_cache(settings: Settings, declared: Mapping[str, Freshness]) -> TieredCache:
    """A cache for the booking API under `settings`, for the resources `declared` (their
    lifetimes by name: chalicelib/lifetimes.py). The container's own is `get_cache()`."""
    # The cache and redis-py behind it are imported by the runtime's build, not at a cold start.
    from chalicelib.cache.tiered import TieredCache

    cache = TieredCache(settings, declared, source_errors=(DatabaseUnavailable,),
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


def _replay_quietly(cache: TieredCache) -> None:
    from chalicelib.booking.invalidation import replay_outbox

    try:
        replay_outbox(cache)
    except Exception:  # noqa: BLE001 - replay is retried by the schedule
        log.warning("outbox replay after Redis recovery failed; the schedule will retry")
