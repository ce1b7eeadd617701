"""The one place that touches redis-py's private connection attributes.

redis-py exposes neither the socket of a `Connection` (needed to poll it without blocking
on the request path) nor a public way to set a RESP3 invalidation-push handler on one
connection. On a cluster, a slots refresh is announced through redis-py's event dispatcher
(`AfterSlotsCacheRefreshEvent`: every re-initialisation and every MOVED that changed an
owner), but an ASK redirection is not announced at all: the cluster client's own
`get_node(node_name=...)` is what its ASK path calls, so that one method is wrapped.
`check()` fails loudly when an upgrade moves them (tests/unit/test_seams.py).
"""
from __future__ import annotations

import socket
import ssl
from typing import Any, Callable, Optional

from redis.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError


def socket_of(conn: Connection) -> Optional[socket.socket]:
    """The connected socket, or None when the connection is closed."""
    sock: Optional[socket.socket] = conn._sock
    return sock


def live_socket(conn: Connection) -> socket.socket:
    """The socket of a connection that has just connected (redis' ConnectionError if closed)."""
    sock = socket_of(conn)
    if sock is None:
        raise RedisConnectionError("the connection closed")
    return sock


def tls_bytes_pending(sock: socket.socket) -> bool:
    """Has the TLS layer already decrypted bytes that polling the socket cannot see?"""
    return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0


def set_push_handler(conn: Connection, handler: Callable[[list[Any]], None]) -> None:
    """Have the connection's RESP3 parser call `handler` for each invalidation push."""
    conn._parser.set_invalidation_push_handler(handler)


def topology_dispatcher(callback: Optional[Callable[[], None]]) -> Any:
    """An EventDispatcher for RedisCluster(event_dispatcher=...) calling `callback` after each
    refresh of the cluster client's slots cache."""
    from redis.event import AfterSlotsCacheRefreshEvent, EventDispatcher, EventListenerInterface

    dispatcher = EventDispatcher()
    if callback is not None:
        notify: Callable[[], None] = callback

        class _Listener(EventListenerInterface):
            def listen(self, event: object) -> None:
                notify()

        dispatcher.register_listeners({AfterSlotsCacheRefreshEvent: [_Listener()]})
    return dispatcher


def watch_ask(client: Any, callback: Callable[[], None]) -> None:
    """Call `callback` when the cluster client follows an ASK redirection (it then looks the
    target up by name with `get_node`; nothing else on the command path does)."""
    original = client.get_node

    def get_node(host: Any = None, port: Any = None, node_name: Any = None) -> Any:
        if node_name is not None and host is None:
            callback()
        return original(host=host, port=port, node_name=node_name)

    client.get_node = get_node


def check() -> None:
    """Raise if this redis-py no longer has the attributes this module reads."""
    conn = Connection(protocol=3)
    if not hasattr(conn, "_sock"):
        raise RuntimeError("redis-py Connection has no _sock: update chalicelib/cache/redis_seam.py")
    if not callable(getattr(getattr(conn, "_parser", None), "set_invalidation_push_handler", None)):
        raise RuntimeError("redis-py Connection._parser has no set_invalidation_push_handler:"
                           " update chalicelib/cache/redis_seam.py")
    from redis import event

    if not hasattr(event, "AfterSlotsCacheRefreshEvent"):
        raise RuntimeError("redis-py has no AfterSlotsCacheRefreshEvent: update chalicelib/cache/redis_seam.py")
