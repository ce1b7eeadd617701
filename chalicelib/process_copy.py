"""A process copied from another starts as a new container.

Lambda copies processes: SnapStart restores one snapshot into many environments, Lambda
Managed Instances runs several Python processes per environment, and prefork servers and
`multiprocessing` fork. A copy inherits its parent's memory: the container id, the sockets
of every database and Redis connection, the tracking connection and what coherence knows,
statistics, buffered audit events, the random generator's state. Serving from them would
interleave two processes' messages on one socket, publish two containers as one, and write
the same audit events twice.

`start_as_new_container()` runs in the copy (after `os.fork`, and after a SnapStart restore
when `snapshot_restore_py` is installed), before it serves anything, and never raises:

1. a new container id and publishing counts (the fleet counts the copy as a container);
2. the parent's cache, pools and replica state forgotten, never closed (closing would shut
   the parent's sockets down) and kept unused so no finalizer runs; everything reconnects
   lazily on first use, tracking before the first fill;
3. the parent's buffered audit events dropped (the parent writes them);
4. metrics counted from zero; the random generator reseeded from the OS.
"""
from __future__ import annotations

import logging
import os
import random
import sys

log = logging.getLogger(__name__)

_inherited: list[object] = []  # what copies forgot: never used, never finalized


def start_as_new_container() -> None:
    """Drop what this process inherited (see the module docstring). Never raises: a hook that
    raises after a restore kills the environment."""
    try:
        _forget_inherited_state()
    except Exception as exc:  # noqa: BLE001 - logged; the next request rebuilds what it can
        log.error("process copy: inherited state not fully dropped (%s)", type(exc).__name__)


def _forget_inherited_state() -> None:
    random.seed()
    modules = sys.modules
    if "chalicelib.cache.fleet" in modules:
        modules["chalicelib.cache.fleet"].start_as_new_container()
    if "chalicelib.booking.caching" in modules:
        modules["chalicelib.booking.caching"].abandon_inherited_cache(_inherited)
    if "chalicelib.db.connection" in modules:
        modules["chalicelib.db.connection"].abandon_inherited_pools(_inherited)
    if "chalicelib.booking.read_source" in modules:
        modules["chalicelib.booking.read_source"].reset_state()
    if "chalicelib.audit.read_log" in modules:
        modules["chalicelib.audit.read_log"].read_log.forget_inherited()
    if "chalicelib.observability" in modules:
        modules["chalicelib.observability"].cache_metrics.restart()


def install() -> None:
    """Run `start_as_new_container` in every forked child, and after a SnapStart restore when
    the runtime's `snapshot_restore_py` is there (once per process)."""
    global _installed
    if _installed:
        return
    _installed = True
    os.register_at_fork(after_in_child=start_as_new_container)
    try:
        from snapshot_restore_py import register_after_restore  # the Lambda Python runtime's, with SnapStart
    except ImportError:
        return
    register_after_restore(start_as_new_container)


_installed = False
