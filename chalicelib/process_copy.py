"""A process copied from another starts as a new container.

Lambda copies processes: SnapStart restores one snapshot into many environments, Lambda
Managed Instances runs several Python processes per environment, and prefork servers and
`multiprocessing` fork. A copy inherits its parent's memory: the container id, the sockets
of every database and Redis connection, the tracking connection and what coherence knows,
statistics, buffered audit events, the random generator's state. Serving from them would
interleave two processes' messages on one socket, publish two containers as one, and write
the same audit events twice.

`install()` registers `runtime.start_as_new_container()` (chalicelib/runtime.py) to run in
the copy (after `os.fork`, and after a SnapStart restore when `snapshot_restore_py` is
installed), before it serves anything; it never raises.
"""
from __future__ import annotations

import os

from chalicelib.runtime import start_as_new_container


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
