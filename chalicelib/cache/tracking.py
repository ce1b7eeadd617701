"""Invalidation pushes for L1: RESP3 connections with `CLIENT TRACKING ON BCAST PREFIX
... NOLOOP` on the version-key prefix, one per Redis node that owns keys (one on a single
node, one per primary on a cluster: `CLIENT TRACKING` reports only keys of its own node).

Lambda freezes containers between invocations, so no listener thread can run. Redis
queues the pushes in these sockets instead; `drain()` reads them without blocking at the
start of each request and reports the version keys that changed (one non-blocking poll()
over every socket when nothing is queued). While every connection is up, no topology change
is pending and the lease (lease.py, which needs every node's PONG) is young, L1 may trust
the version values it has seen. `drain()` reports a reset, and L1 must stop trusting what
it knew, when:

- a connection is missing (start, a connection lost or refused, a lease PING unanswered);
- the topology moved (a cluster only): the cluster client saw a slots refresh, a MOVED that
  changed an owner, or an ASK (`TopologySignal`, set by the client's hooks); a
  `create_versions` that got MOVED/ASK. The tracker then asks for the nodes again and
  reconnects to all;
- it was idle past the bound, or a flush push arrived.

While a reset is pending, `healthy` is False, so no version read from L2 is learned under
the old topology. What L1 knows is not kept here: `Coherence` applies each `DrainResult`
(chalicelib/cache/coherence.py). `_lock` guards only the connections.

Missing version keys are created on a tracking connection (`create_versions`, on the one
of the node that owns the keys' slot: every key of one call shares the tenant's hash tag):
with NOLOOP, its own writes do not come back to this container as pushes, so the entry a
read loads under a version it just created stays servable from L1; every other container
is still told.
"""
from __future__ import annotations

import bisect
import select
import threading
import time
from typing import Any, Callable, Optional, Sequence

from redis.connection import Connection, SSLConnection
from redis.crc import key_slot
from redis.exceptions import AskError, MovedError, RedisError, ResponseError

from chalicelib.cache import redis_seam
from chalicelib.cache.breaker import CircuitBreaker
from chalicelib.cache.keys import VERSION_TTL_S
from chalicelib.cache.lease import Lease
from chalicelib.cache.tickets import new_token
from chalicelib.settings import RedisSettings

SlotRange = tuple[int, int, str, int]
"""(first slot, last slot, host, port) of the node that owns a range of hash slots."""

LAST_SLOT = 16383


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


class TopologySignal:
    """Set from any thread when a cluster's layout moved; the tracker's next drain resets.
    One flag, shared by the cluster client's hooks (the setter) and the tracker."""

    __slots__ = ("moved",)

    def __init__(self) -> None:
        self.moved = False

    def set(self) -> None:
        self.moved = True


def one_node(settings: RedisSettings) -> Callable[[], list[SlotRange]]:
    """The node list of a single Redis: it owns every slot."""
    return lambda: [(0, LAST_SLOT, settings.host, settings.port)]


def primaries_of(client: Any) -> list[SlotRange]:
    """The slot ranges of a cluster and their primaries, from CLUSTER SLOTS asked of the
    first primary of the cluster client that answers."""
    last: Optional[BaseException] = None
    for node in list(client.get_primaries()):
        try:
            table = client.cluster_slots(target_nodes=node)
        except (RedisError, OSError) as exc:
            last = exc
            continue
        return sorted((int(start), int(end), str(owner["primary"][0]), int(owner["primary"][1]))
                      for (start, end), owner in table.items())
    raise ConnectionError(f"no primary answered CLUSTER SLOTS: {last!r}")


class InvalidationTracker:
    """Owns the tracking connections; `healthy` means pushes are being received from every
    node and no topology change is pending.

    `nodes` lists the nodes and the slots they own (default: the single node of
    `settings`; on a cluster, `primaries_of(client)`); `topology` is the signal the cluster
    client sets when the layout moves (a single node never sets it)."""

    def __init__(self, settings: RedisSettings, prefix: str, idle_bound_s: float, lease_s: float,
                 nodes: Optional[Callable[[], list[SlotRange]]] = None,
                 topology: Optional[TopologySignal] = None) -> None:
        self.settings = settings
        self.prefix = prefix
        self.idle_bound_s = idle_bound_s
        self.nodes = nodes or one_node(settings)
        self.topology = topology or TopologySignal()
        self.breaker = CircuitBreaker(1, settings.breaker_cooldown_s)
        self.lease = Lease(lease_s)
        self.topology_resets = 0
        # Invariants (under _lock): _conns, _starts, _owners and _poller change together in
        # _connect and _drop; _owners[i] = (last slot, index into _conns) of the range that
        # starts at _starts[i] (sorted); _poller watches exactly the sockets of _conns.
        self._conns: list[Connection] = []
        self._starts: list[int] = []
        self._owners: list[tuple[int, int]] = []
        self._poller: Optional["select.poll"] = None
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._last_drain = 0.0

    @property
    def healthy(self) -> bool:
        """Connected to every node, no topology change pending: pushes are being received."""
        return bool(self._conns) and not self.topology.moved

    @property
    def primaries(self) -> list[tuple[str, int]]:
        """(host, port) of the nodes this tracker is connected to."""
        return [(c.host, c.port) for c in self._conns]

    def _on_push(self, message: list) -> None:
        keys = message[1] if len(message) > 1 else None
        if keys is None:  # a flush: every key may have changed
            self._pending.append("")
            return
        for key in keys:
            self._pending.append(key.decode() if isinstance(key, bytes) else str(key))

    # -- the connections ------------------------------------------------------------------
    def _open(self, host: str, port: int) -> Connection:
        """One connected tracking connection whose pushes go to `_on_push`."""
        cls = SSLConnection if self.settings.tls else Connection
        conn = cls(host=host, port=port, db=0 if self.settings.cluster else self.settings.db,
                   username=self.settings.username, password=self.settings.password, protocol=3,
                   socket_connect_timeout=self.settings.connect_timeout_s,
                   socket_timeout=self.settings.read_timeout_s)
        try:
            conn.connect()
            redis_seam.set_push_handler(conn, self._on_push)
            conn.send_command("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", self.prefix, "NOLOOP")
            conn.read_response()
        except BaseException:
            conn.disconnect()
            raise
        return conn

    def _connect(self) -> bool:
        """Connect to every node (all or none); the lease starts when the first was asked."""
        if not self.breaker.allow():
            return False
        started = time.monotonic()
        conns: list[Connection] = []
        index: dict[tuple[str, int], int] = {}
        starts: list[int] = []
        owners: list[tuple[int, int]] = []
        try:
            for start, end, host, port in self.nodes():
                if (host, port) not in index:
                    conns.append(self._open(host, port))
                    index[(host, port)] = len(conns) - 1
                starts.append(start)
                owners.append((end, index[(host, port)]))
            poller = select.poll()  # the sockets themselves, polled without blocking
            for conn in conns:
                poller.register(redis_seam.live_socket(conn), select.POLLIN)
        except (RedisError, OSError, ConnectionError):
            for conn in conns:
                conn.disconnect()
            self.breaker.failure()
            return False
        self.breaker.success()
        self._conns, self._starts, self._owners, self._poller = conns, starts, owners, poller
        self.lease.granted(started)
        return True

    def _drop(self) -> None:
        for conn in self._conns:
            try:
                conn.disconnect()
            except Exception:  # noqa: BLE001 - already broken
                pass
        self._conns, self._starts, self._owners, self._poller = [], [], [], None

    # -- the quiet path and the drain -------------------------------------------------------
    def quiet(self) -> bool:
        """True when a drain would find nothing and do nothing: connected, no topology change,
        not idle past the bound, nothing due for the lease, no TLS bytes buffered, and no
        socket readable (one poll() syscall, no lock). `drain()` always reads until
        redis-py's own buffer is empty, so the sockets are the only place a push can wait.
        Callers that race a concurrent drain must guard this themselves (Coherence does)."""
        now = time.monotonic()
        if (self.topology.moved or self._pending or now - self._last_drain > self.idle_bound_s
                or not self.lease.quiet(now)):
            return False
        conns, poller = self._conns, self._poller
        if not conns or poller is None:
            return False
        try:
            if poller.poll(0):
                return False
        except RuntimeError:  # another thread is polling right now: take the locked path
            return False
        if self.settings.tls:  # decrypted bytes wait in the TLS layer, where poll() cannot see them
            for conn in conns:
                sock = redis_seam.socket_of(conn)
                if sock is None or redis_seam.tls_bytes_pending(sock):
                    return False
        self._last_drain = now
        return True

    def drain(self) -> DrainResult:
        """Read every queued push of every node without blocking; (re)connect to all nodes
        first when not connected or after a topology change (a reset)."""
        with self._lock:
            now = time.monotonic()
            if self.topology.moved:
                self.topology.moved = False
                self.topology_resets += 1
                self._drop()
                self._pending.clear()
            if not self._conns:
                if not self._connect():
                    return DrainResult([], True) if self._last_drain else _NOTHING
                self._last_drain = now
                return DrainResult([], True)
            reset = now - self._last_drain > self.idle_bound_s
            self._last_drain = now
            try:
                self.lease.keep(self._conns, now)
            except (RedisError, OSError, ConnectionError):
                self._drop()
                self._pending.clear()
                return DrainResult([], True)
            keys, self._pending = self._pending, []
            return drained(keys, reset)

    # -- creating versions ------------------------------------------------------------------
    def _owner(self, slot: int) -> Optional[int]:
        """The index of the connection whose node owns `slot`, if known."""
        i = bisect.bisect_right(self._starts, slot) - 1
        if i < 0 or slot > self._owners[i][0]:
            return None
        return self._owners[i][1]

    def _owner_of(self, version_keys: Sequence[str]) -> Optional[int]:
        """The connection that may create these keys: the only one, or on a cluster that of
        the node owning their slot (None when they span slots or the owner is unknown)."""
        if not self.settings.cluster:
            return 0
        slot = key_slot(version_keys[0].encode())
        if any(key_slot(k.encode()) != slot for k in version_keys[1:]):
            return None
        return self._owner(slot)

    def create_versions(self, version_keys: Sequence[str]) -> Optional[list[bytes]]:
        """Current values of `version_keys`, creating the missing ones, written on a tracking
        connection so the creation is not echoed back (see `create_on`). None when not
        connected, the keys span slots, the owner is unknown or the command failed; a broken
        connection is dropped (the next drain reports a reset), MOVED/ASK marks a topology
        change."""
        with self._lock:
            if not self._conns or self.topology.moved or not version_keys:
                return None
            owner = self._owner_of(version_keys)
            if owner is None:
                return None
            try:
                return create_on(self._conns[owner], version_keys, self.lease, owner)
            except ResponseError as exc:  # every reply was read: the connection is in step
                if isinstance(exc, (MovedError, AskError)) or str(exc).startswith(("MOVED", "ASK")):
                    self.topology.set()
                return None
            except (RedisError, OSError):
                self._drop()
                self._pending.clear()
                return None

    def close(self) -> None:
        """Drop the connections (tests, shutdown)."""
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
