"""Invalidation pushes for L1: a RESP3 connection with `CLIENT TRACKING ON BCAST PREFIX
... NOLOOP` on the version-key prefix.

Lambda freezes containers between invocations, so no listener thread can run. Redis
queues the pushes in this socket instead; `drain()` reads them without blocking at the
start of each request and reports the version keys that changed (one non-blocking poll()
when nothing is queued). While the connection is healthy and its lease (lease.py) is
young, L1 may trust the version values it has seen; when it is lost, when it was idle
longer than a bound, or when a lease PING goes unanswered, `drain()` reports a reset and L1
must stop trusting what it knew. What L1 knows is not kept here: `Coherence` applies each
`DrainResult` (chalicelib/cache/coherence.py). `_lock` guards only the connection.

Missing version keys are created on this connection (`create_versions`): with NOLOOP, its
own writes do not come back to this container as pushes, so the entry a read loads under a
version it just created stays servable from L1; every other container is still told.
"""
from __future__ import annotations

import select
import threading
import time
from typing import Optional, Sequence

from redis.connection import Connection, SSLConnection
from redis.exceptions import RedisError, ResponseError

from chalicelib.cache import redis_seam
from chalicelib.cache.breaker import CircuitBreaker
from chalicelib.cache.keys import VERSION_TTL_S
from chalicelib.cache.lease import Lease
from chalicelib.cache.tickets import new_token
from chalicelib.settings import RedisSettings


class DrainResult:
    """What one drain found: changed version keys, or a reset (trust nothing)."""

    __slots__ = ("keys", "reset")

    def __init__(self, keys: list[str], reset: bool) -> None:
        self.keys = keys
        self.reset = reset


_NOTHING = DrainResult([], False)


def drained(keys: list[str], reset: bool) -> DrainResult:
    """What a drain reports for the pushes it collected: their keys, or a reset when a flush
    ("" : every key may have changed) was among them or the drain found a reset."""
    if not keys:
        return DrainResult([], True) if reset else _NOTHING
    if "" in keys:
        return DrainResult([], True)
    return DrainResult(keys, reset)


class InvalidationTracker:
    """Owns the tracking connection; `healthy` means pushes are being received."""

    def __init__(self, settings: RedisSettings, prefix: str, idle_bound_s: float, lease_s: float) -> None:
        self.settings = settings
        self.prefix = prefix
        self.idle_bound_s = idle_bound_s
        self.breaker = CircuitBreaker(1, settings.breaker_cooldown_s)
        self.lease = Lease(lease_s)
        self._conn: Optional[Connection] = None
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._last_drain = 0.0
        self._poller: Optional["select.poll"] = None

    @property
    def healthy(self) -> bool:
        """Connected: pushes are being received."""
        return self._conn is not None

    def _on_push(self, message: list) -> None:
        keys = message[1] if len(message) > 1 else None
        if keys is None:  # a flush: every key may have changed
            self._pending.append("")
            return
        for key in keys:
            self._pending.append(key.decode() if isinstance(key, bytes) else str(key))

    def _connect(self) -> bool:
        if not self.breaker.allow():
            return False
        started = time.monotonic()
        cls = SSLConnection if self.settings.tls else Connection
        conn = cls(host=self.settings.host, port=self.settings.port, db=self.settings.db,
                   username=self.settings.username, password=self.settings.password, protocol=3,
                   socket_connect_timeout=self.settings.connect_timeout_s,
                   socket_timeout=self.settings.read_timeout_s)
        try:
            conn.connect()
            redis_seam.set_push_handler(conn, self._on_push)
            conn.send_command("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", self.prefix, "NOLOOP")
            conn.read_response()
        except (RedisError, OSError):
            conn.disconnect()
            self.breaker.failure()
            return False
        self.breaker.success()
        self._conn = conn
        # The socket itself, polled without blocking on the fast path.
        self._poller = select.poll()
        self._poller.register(redis_seam.live_socket(conn), select.POLLIN)
        self.lease.granted(started)
        return True

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.disconnect()
            except Exception:  # noqa: BLE001 - already broken
                pass
        self._conn = None
        self._poller = None

    def quiet(self) -> bool:
        """True when a drain would find nothing and do nothing: connected, not idle past the
        bound, nothing due for the lease, no TLS bytes buffered, and the socket not readable
        (one poll() syscall, no lock). `drain()` always reads until redis-py's own buffer is
        empty, so the socket is the only place a push can wait.
        Callers that race a concurrent drain must guard this themselves (Coherence does)."""
        now = time.monotonic()
        if self._pending or now - self._last_drain > self.idle_bound_s or not self.lease.quiet(now):
            return False
        conn, poller = self._conn, self._poller
        sock = redis_seam.socket_of(conn) if conn is not None else None
        if sock is None or poller is None:
            return False
        try:
            if poller.poll(0):
                return False
        except RuntimeError:  # another thread is polling right now: take the locked path
            return False
        if redis_seam.tls_bytes_pending(sock):
            return False
        self._last_drain = now
        return True

    def drain(self) -> DrainResult:
        """Read every queued push without blocking; connect first if needed."""
        with self._lock:
            now = time.monotonic()
            if self._conn is None:
                if not self._connect():
                    return DrainResult([], True) if self._last_drain else _NOTHING
                self._last_drain = now
                return DrainResult([], True)
            reset = now - self._last_drain > self.idle_bound_s
            self._last_drain = now
            try:
                self.lease.keep([self._conn], now)
            except (RedisError, OSError, ConnectionError):
                self._drop()
                self._pending.clear()
                return DrainResult([], True)
            keys, self._pending = self._pending, []
            return drained(keys, reset)

    def create_versions(self, version_keys: Sequence[str]) -> Optional[list[bytes]]:
        """Current values of `version_keys`, creating the missing ones, written on the
        tracking connection so the creation is not echoed back (see `create_on`). None when
        not connected or the command failed; a broken connection is dropped, and the next
        drain reports a reset."""
        with self._lock:
            conn = self._conn
            if conn is None:
                return None
            try:
                return create_on(conn, version_keys, self.lease, 0)
            except ResponseError:
                return None  # every reply was read: the connection is still in step
            except (RedisError, OSError):
                self._drop()
                self._pending.clear()
                return None

    def close(self) -> None:
        """Drop the connection (tests, shutdown)."""
        with self._lock:
            self._drop()


def create_on(conn: Connection, version_keys: Sequence[str], lease: Lease, index: int) -> list[bytes]:
    """Create the missing `version_keys` with fresh tokens on a tracking connection and
    return every key's value. One pipelined MULTI of `SET key token NX` and `GET key` per
    key: NOLOOP keeps the creation from being pushed back to this connection (Redis ignores
    NOLOOP for writes inside a Lua script, and `SET ... NX GET` needs Redis 7). If
    connection `index` owes `lease` the PONG of an earlier PING, that PONG is read first
    and renews the lease. Pushes read on the way go to the connection's push handler, and
    none is left in redis-py's buffer. Every reply is read before the first error reply (a
    MOVED, say) is raised, so the connection stays in step."""
    commands: list[tuple[str, ...]] = [("MULTI",)]
    for key in version_keys:
        commands += [("SET", key, new_token(), "NX", "EX", str(VERSION_TTL_S)), ("GET", key)]
    commands.append(("EXEC",))
    conn.send_packed_command(conn.pack_commands(commands))
    if index in lease.awaiting:
        conn.read_response()
        lease.pong(index)
    error: Optional[ResponseError] = None
    reply = None
    for _ in commands:  # OK, QUEUED per command, then EXEC's array
        try:
            reply = conn.read_response()
        except ResponseError as exc:
            error = error or exc
    # Pushes that arrived with the reply may sit in redis-py's buffer, where the quiet
    # path's poll() cannot see them: read them now, so the socket stays the only place a
    # push can wait (the invariant `quiet()` relies on).
    while conn.can_read(timeout=0):
        conn.read_response(push_request=True)
    if error is not None:
        raise error
    return list(reply[1::2])  # type: ignore[index]
