"""The container's runtime: one object that owns everything a process builds once and keeps
between warm invocations, and the one way to start over.

| part | what it is |
|---|---|
| `settings` | the environment and secrets, read and checked (`settings.get_settings()`) |
| `primary`, `replica` | the connection pools (`db.pool()`, `db.replica_pool()`; no replica: None) |
| `replica_state` | the replica router's breaker and counts (`read_source.replica_state()`) |
| `cache` | L1, L2, tracking, coherence, statistics (`caching.get_cache()`) |
| `container_id`, `fleet` | this container's id and its fleet-statistics publisher |
| `metrics` | the cache metrics' previous flush (their deltas) |
| `plans` | the read-plan memo (token checks and keys by request) |
| `read_log` | buffered read-audit events |

Invariants:
- `current()` builds the runtime on first use, once, behind one lock: every part at once,
  from one reading of the settings. The runtime is published only when complete, so no
  caller sees a part missing; refused settings (SettingsError) build nothing and are read
  again by the next call.
- The build is the import boundary of the runtime's parts: the database driver, redis-py
  and the cache are imported there (under `lazy.IMPORT_LOCK`), never by a request that
  finds the runtime built. This module imports nothing of chalicelib at import time, so
  `import app` pays nothing for it, and any layer may ask it for the current part. The
  modules behind single routes (the booking service, schedule management, the OpenAPI
  document) load on their route's first use through `lazy.lazy_module`, under the same
  IMPORT_LOCK, so a container that only reads never pays for them; `serve` imports them all
  before it listens (chalicelib/import_boundary.py).
- Parts are never replaced one by one, with one exception: `reload_settings()` puts
  re-read settings in place (rotated database credentials; the pools open new connections
  with them).
- Two ways to start over:
  - `reset()`: the environment changed (tests, the bench, `serve` after reading settings).
    The runtime closes what it opened; the next `current()` builds a new one.
  - `start_as_new_container()`: this process is a copy of another (a fork, a SnapStart
    restore; chalicelib/process_copy.py calls it). The parent's runtime is forgotten without
    closing a socket (they are the parent's too) and never finalized; the random generator
    is reseeded. The next `current()` builds a runtime of its own: a new container id,
    connections, tracking, coherence, counters and an empty audit buffer (the parent writes
    its own). Never raises.
"""
from __future__ import annotations

import logging
import os
import random
import secrets
import threading
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from chalicelib.audit.read_log import ReadLog
    from chalicelib.booking.read_source import ReplicaState
    from chalicelib.cache.fleet import Publisher
    from chalicelib.cache.tiered import TieredCache
    from chalicelib.db.connection import Pool
    from chalicelib.observability import CacheMetrics
    from chalicelib.plan_memo import PlanMemo
    from chalicelib.settings import Settings

log = logging.getLogger(__name__)


class Runtime:
    """Everything this container keeps between invocations (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        """Build every part from `settings` (called by `current()` under its lock)."""
        from chalicelib.audit.read_log import ReadLog
        from chalicelib.booking.caching import new_cache
        from chalicelib.booking.read_source import ReplicaState
        from chalicelib.cache.fleet import Publisher
        from chalicelib.db.connection import new_pool, new_replica_pool
        from chalicelib.lifetimes import declared_freshness
        from chalicelib.observability import CacheMetrics
        from chalicelib.plan_memo import PlanMemo

        self.settings = settings
        self.container_id = new_container_id()
        self.primary: Pool = new_pool(settings.db)
        self.replica: Optional[Pool] = None if settings.db_read is None else new_replica_pool(settings.db_read)
        self.replica_state: ReplicaState = ReplicaState(settings.replica_cooldown_s)
        self.cache: TieredCache = new_cache(settings, declared_freshness())
        self.fleet: Publisher = Publisher(self.container_id)
        self.metrics: CacheMetrics = CacheMetrics()
        self.plans: PlanMemo = PlanMemo()
        self.read_log: ReadLog = ReadLog()

    def close(self) -> None:
        """Close what this runtime opened: the tracking connections and idle database
        connections (a connection still borrowed closes when it is returned broken, or with
        its pool). Buffered audit events are dropped: they belong to this runtime's database."""
        if self.cache.tracker is not None:
            self.cache.tracker.close()
        for pool in (self.primary, self.replica):
            if pool is not None:
                pool.close_idle()


def new_container_id() -> str:
    """A container id unique across processes and copies of one: the pid and random bits."""
    return f"{os.getpid()}-{secrets.token_hex(4)}"


_current: Optional[Runtime] = None
_lock = threading.Lock()
_inherited: list[object] = []  # what copies forgot: never used, never finalized


def current() -> Runtime:
    """This container's runtime, built on first use (raises SettingsError with refused
    settings; nothing is kept then)."""
    runtime = _current
    if runtime is None:
        runtime = _build()
    return runtime


def built() -> Optional[Runtime]:
    """The runtime if one was built (never builds one just to report on it)."""
    return _current


def _build() -> Runtime:
    global _current
    from chalicelib.lazy import IMPORT_LOCK

    with IMPORT_LOCK, _lock:  # in this order, as a lazy import that reaches here holds IMPORT_LOCK
        if _current is None:
            from chalicelib.secrets import load_secret_values
            from chalicelib.settings import load_settings

            _current = Runtime(load_settings(secrets=load_secret_values()))
        return _current


def reload_settings() -> Settings:
    """Read the environment and the secrets again, bypassing the secrets cache (after the
    database refused the credentials: the secret may have been rotated), and put them in
    place in the runtime."""
    from chalicelib.secrets import load_secret_values
    from chalicelib.settings import load_settings

    fresh = load_settings(secrets=load_secret_values(force_fetch=True))
    runtime = current()
    with _lock:
        runtime.settings = fresh
    return fresh


def reset() -> None:
    """Close and forget the runtime; the next `current()` builds a new one."""
    global _current
    with _lock:
        runtime, _current = _current, None
    if runtime is not None:
        runtime.close()


def start_as_new_container() -> None:
    """Forget what this copied process inherited (see the module docstring). Never raises: a
    hook that raises after a restore kills the environment."""
    global _current, _lock
    try:
        random.seed()
        if _current is not None:
            _inherited.append(_current)
        # A new lock too: a copy made while another thread held the old one would wait forever.
        _current, _lock = None, threading.Lock()
    except Exception as exc:  # noqa: BLE001 - logged; the next request rebuilds what it can
        log.error("process copy: inherited state not fully dropped (%s)", type(exc).__name__)
