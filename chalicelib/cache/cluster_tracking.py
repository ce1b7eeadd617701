"""Invalidation pushes on a Redis Cluster: one tracking connection per primary.

`CLIENT TRACKING` reports only keys of the node a connection is on, so this tracker keeps a
RESP3 connection with `CLIENT TRACKING ON BCAST PREFIX ... NOLOOP` to every primary, found
with `CLUSTER SLOTS` asked through the cluster client. The quiet path is the single-node
one with a longer list: one non-blocking poll() over all the sockets (one syscall), no lock.

Resets (the next drain reports `reset`, so `Coherence` forgets every known version):

- the tracker is not connected to every primary (start, a connection lost or refused, a
  lease PING unanswered on any of them: the lease, lease.py, needs every primary's PONG);
- the topology moved: the cluster client saw a slots refresh, a MOVED that changed an
  owner, or an ASK (`topology_changed()`, wired by `TieredCache`); a `create_versions` that
  got MOVED/ASK; the tracker then asks for the primaries again and reconnects to all;
- idle past the bound, or a flush push (as on one node).

While a reset is pending, `healthy` is False, so no version read from L2 is learned
under the old topology. `create_versions` writes on the tracking connection of the primary
that owns the keys' slot (every key of one call shares the tenant's hash tag, so one slot).
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
from chalicelib.cache.lease import Lease
from chalicelib.cache.tracking import DrainResult, create_on, drained
from chalicelib.settings import RedisSettings

_NOTHING = DrainResult([], False)


def primaries_of(client: Any) -> list[tuple[int, int, str, int]]:
    """(first slot, last slot, host, port) of every slot range, from CLUSTER SLOTS asked of
    the first primary of the cluster client that answers."""
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


class ClusterTracker:
    """Same interface as InvalidationTracker; `healthy` means connected to every primary
    and no topology change is pending."""

    def __init__(self, settings: RedisSettings, prefix: str, idle_bound_s: float, lease_s: float,
                 discover: Optional[Callable[[], list[tuple[int, int, str, int]]]] = None) -> None:
        self.settings = settings
        self.prefix = prefix
        self.idle_bound_s = idle_bound_s
        self.discover = discover  # set by TieredCache once the cluster client exists
        self.breaker = CircuitBreaker(1, settings.breaker_cooldown_s)
        self.lease = Lease(lease_s)
        self._conns: list[Connection] = []
        self._starts: list[int] = []  # first slot of each range, sorted
        self._owners: list[tuple[int, int]] = []  # (last slot, index into _conns) per range
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._last_drain = 0.0
        self._poller: Optional["select.poll"] = None
        self._moved = False
        self.topology_resets = 0

    @property
    def healthy(self) -> bool:
        return bool(self._conns) and not self._moved

    @property
    def primaries(self) -> list[tuple[str, int]]:
        """(host, port) of the primaries this tracker is connected to."""
        return [(c.host, c.port) for c in self._conns]

    def topology_changed(self) -> None:
        """The cluster's layout moved (called from any thread, e.g. by the cluster client)."""
        self._moved = True

    def _on_push(self, message: list) -> None:
        keys = message[1] if len(message) > 1 else None
        if keys is None:
            self._pending.append("")
            return
        for key in keys:
            self._pending.append(key.decode() if isinstance(key, bytes) else str(key))

    def _connect(self) -> bool:
        if not self.breaker.allow() or self.discover is None:
            return False
        started = time.monotonic()
        conns: list[Connection] = []
        cls = SSLConnection if self.settings.tls else Connection
        try:
            ranges = self.discover()
            index: dict[tuple[str, int], int] = {}
            starts, owners = [], []
            for start, end, host, port in ranges:
                if (host, port) not in index:
                    conn = cls(host=host, port=port, username=self.settings.username,
                               password=self.settings.password, protocol=3,
                               socket_connect_timeout=self.settings.connect_timeout_s,
                               socket_timeout=self.settings.read_timeout_s)
                    conns.append(conn)
                    conn.connect()
                    redis_seam.set_push_handler(conn, self._on_push)
                    conn.send_command("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", self.prefix, "NOLOOP")
                    conn.read_response()
                    index[(host, port)] = len(conns) - 1
                starts.append(start)
                owners.append((end, index[(host, port)]))
        except (RedisError, OSError, ConnectionError):
            for conn in conns:
                conn.disconnect()
            self.breaker.failure()
            return False
        self.breaker.success()
        poller = select.poll()
        for conn in conns:
            poller.register(redis_seam.live_socket(conn), select.POLLIN)
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

    def quiet(self) -> bool:
        """As InvalidationTracker.quiet, over every primary's socket with one poll()."""
        now = time.monotonic()
        if (self._moved or self._pending or now - self._last_drain > self.idle_bound_s
                or not self.lease.quiet(now)):
            return False
        conns, poller = self._conns, self._poller
        if not conns or poller is None:
            return False
        try:
            if poller.poll(0):
                return False
        except RuntimeError:
            return False
        if self.settings.tls:
            for conn in conns:
                sock = redis_seam.socket_of(conn)
                if sock is None or redis_seam.tls_bytes_pending(sock):
                    return False
        self._last_drain = now
        return True

    def drain(self) -> DrainResult:
        """Read every queued push of every primary without blocking; (re)connect to all
        primaries first when not connected or after a topology change (a reset)."""
        with self._lock:
            now = time.monotonic()
            if self._moved:
                self._moved = False
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

    def _owner(self, slot: int) -> Optional[int]:
        i = bisect.bisect_right(self._starts, slot) - 1
        if i < 0 or slot > self._owners[i][0]:
            return None
        return self._owners[i][1]

    def create_versions(self, version_keys: Sequence[str]) -> Optional[list[bytes]]:
        """As InvalidationTracker.create_versions, on the tracking connection of the primary
        that owns the keys' slot. None when the keys span slots, the owner is not known or
        the command failed; MOVED/ASK marks a topology change (the next drain resets)."""
        with self._lock:
            if not self._conns or self._moved or not version_keys:
                return None
            slot = key_slot(version_keys[0].encode())
            if any(key_slot(k.encode()) != slot for k in version_keys[1:]):
                return None
            owner = self._owner(slot)
            if owner is None:
                return None
            conn = self._conns[owner]
            try:
                return create_on(conn, version_keys, self.lease, owner)
            except ResponseError as exc:  # MovedError/AskError, or a plain "MOVED ..."
                if isinstance(exc, (MovedError, AskError)) or str(exc).startswith(("MOVED", "ASK")):
                    self._moved = True
                return None
            except (RedisError, OSError):
                self._drop()
                self._pending.clear()
                return None

    def close(self) -> None:
        with self._lock:
            self._drop()
