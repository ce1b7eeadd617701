"""The one place that touches redis-py's private connection attributes.

redis-py exposes neither the socket of a `Connection` (needed to poll it without blocking
on the request path) nor a public way to set a RESP3 invalidation-push handler on one
connection. `check()` fails loudly when an upgrade moves them (tests/unit/test_seams.py).
"""
from __future__ import annotations

import socket
from typing import Any, Callable, Optional

from redis.connection import Connection


def socket_of(conn: Connection) -> Optional[socket.socket]:
    """The connected socket, or None when the connection is closed."""
    return conn._sock  # type: ignore[attr-defined]


def set_push_handler(conn: Connection, handler: Callable[[list[Any]], None]) -> None:
    """Have the connection's RESP3 parser call `handler` for each invalidation push."""
    conn._parser.set_invalidation_push_handler(handler)  # type: ignore[attr-defined]


def check() -> None:
    """Raise if this redis-py no longer has the attributes this module reads."""
    conn = Connection(protocol=3)
    if not hasattr(conn, "_sock"):
        raise RuntimeError("redis-py Connection has no _sock: update chalicelib/cache/redis_seam.py")
    if not callable(getattr(getattr(conn, "_parser", None), "set_invalidation_push_handler", None)):
        raise RuntimeError("redis-py Connection._parser has no set_invalidation_push_handler:"
                           " update chalicelib/cache/redis_seam.py")
