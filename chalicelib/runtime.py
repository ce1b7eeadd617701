"""The process's runtime state and its one reset.

A container builds its state on first use and keeps it between warm invocations. Each piece
has one owner, which builds it lazily behind its own lock:

| state | owner | built by |
|---|---|---|
| settings | `settings.py` | `get_settings()` |
| the primary's and the replica's connection pools | `db/connection.py` | `pool()`, `replica_pool()` |
| the replica's breaker and counts | `booking/read_source.py` | `replica_state()` |
| the cache: L1, L2, tracking, coherence, statistics | `booking/caching.py` | `get_cache()` |
| read plans (token checks and keys by request) | `web.py` | `plans.get()` |
| the container id and fleet publishing | `cache/fleet.py` | at import |
| cache metrics | `observability.py` | `cache_metrics` |
| buffered read-audit events | `audit/read_log.py` | `read_log` |

Two ways to start over, both touching only modules already imported (nothing is imported
here, so a cold start pays nothing):

- `reset()`: the environment changed (tests, the bench, `serve` after reading settings):
  close what this process opened and forget the rest; everything is rebuilt on next use.
- `start_as_new_container()`: this process is a copy of another (a fork, a SnapStart
  restore; chalicelib/process_copy.py calls it): forget everything without closing a socket
  (they are the parent's too), take a new container id, drop the parent's buffered audit
  events, restart the metrics, reseed the random generator. Never raises.
"""
from __future__ import annotations

import logging
import random
import sys
from typing import Any, Optional

log = logging.getLogger(__name__)

_inherited: list[object] = []  # what copies forgot: never used, never finalized


def _loaded(name: str) -> Optional[Any]:
    """The module if this process has imported it."""
    return sys.modules.get(name)


def reset() -> None:
    """Close and forget the process's runtime state; it is rebuilt on next use."""
    if (settings := _loaded("chalicelib.settings")) is not None:
        settings.reset_settings()
    if (caching := _loaded("chalicelib.booking.caching")) is not None:
        caching.reset_cache()
    if (connection := _loaded("chalicelib.db.connection")) is not None:
        connection.close_all()
    if (read_source := _loaded("chalicelib.booking.read_source")) is not None:
        read_source.reset_state()
    if (web := _loaded("chalicelib.web")) is not None:
        web.plans.clear()


def start_as_new_container() -> None:
    """Forget what this copied process inherited (see the module docstring). Never raises: a
    hook that raises after a restore kills the environment."""
    try:
        _forget_inherited()
    except Exception as exc:  # noqa: BLE001 - logged; the next request rebuilds what it can
        log.error("process copy: inherited state not fully dropped (%s)", type(exc).__name__)


def _forget_inherited() -> None:
    random.seed()
    if (fleet := _loaded("chalicelib.cache.fleet")) is not None:
        fleet.start_as_new_container()
    if (caching := _loaded("chalicelib.booking.caching")) is not None:
        caching.abandon_inherited_cache(_inherited)
    if (connection := _loaded("chalicelib.db.connection")) is not None:
        connection.abandon_inherited_pools(_inherited)
    if (read_source := _loaded("chalicelib.booking.read_source")) is not None:
        read_source.reset_state()
    if (web := _loaded("chalicelib.web")) is not None:
        web.plans.clear()
    if (read_log := _loaded("chalicelib.audit.read_log")) is not None:
        read_log.read_log.forget_inherited()
    if (observability := _loaded("chalicelib.observability")) is not None:
        observability.cache_metrics.restart()
