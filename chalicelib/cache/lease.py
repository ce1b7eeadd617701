"""The tracking lease: how recently this container proved it has every invalidation push.

Redis answers commands on a connection in order, and writes a push into a tracking
connection before it replies to the write that caused it. So a PONG read on the tracking
connection proves that every push Redis queued before it received that PING has been read:
a container whose last PONG answered a PING sent at `started` knows of every write that
returned before `started`. L1 may be trusted only while the lease is younger than its
length; `keep()` renews it on the drain path (both trackers share it; a cluster tracker's
lease needs the PONG of every primary):

- older than half the length, no PING out: send one and do not wait (a busy container picks
  up the PONG on a later drain, so its L1 hits never wait for a round trip);
- older than the length (an idle container, or a PONG that did not come): wait for the
  PONG until the PING's deadline, one round trip on a healthy connection;
- a PING unanswered for half the length: the connection is lost (`ConnectionError`; the
  tracker drops it and reports a reset, so nothing known is trusted any more).
"""
from __future__ import annotations

import time
from typing import Optional, Sequence

from redis.connection import Connection

_PONGS = (b"PONG", "PONG")


class Lease:
    """The lease over a tracker's connections (one per Redis primary; `awaiting` holds the
    indexes of those whose PONG has not come yet)."""

    __slots__ = ("length_s", "started", "sent_at", "awaiting")

    def __init__(self, length_s: float) -> None:
        self.length_s = length_s
        self.started = 0.0
        self.sent_at: Optional[float] = None
        self.awaiting: set[int] = set()

    def granted(self, at: float) -> None:
        """Tracking was (re)established by commands sent at `at`: the lease starts there."""
        self.started, self.sent_at, self.awaiting = at, None, set()

    def pong(self, index: int) -> None:
        """Connection `index` answered the outstanding PING; the last answer renews the lease."""
        self.awaiting.discard(index)
        if self.sent_at is not None and not self.awaiting:
            self.started, self.sent_at = self.sent_at, None

    def quiet(self, now: float) -> bool:
        """True when a drain has nothing to do for the lease at `now` (lock-free)."""
        sent_at = self.sent_at
        if sent_at is None:
            return now - self.started <= self.length_s / 2
        return now - self.started <= self.length_s and now - sent_at <= self.length_s / 2

    def keep(self, conns: Sequence[Connection], now: float) -> None:
        """Read every queued reply of `conns` (pushes go to their handlers, PONGs renew the
        lease), then renew as the module docstring says. Raises ConnectionError when a PING
        went unanswered past its deadline."""
        for index, conn in enumerate(conns):
            self._read_ready(conn, index, 0)
        if self.sent_at is None and now - self.started > self.length_s / 2:
            for conn in conns:
                conn.send_command("PING")
            self.sent_at, self.awaiting = now, set(range(len(conns)))
        if self.sent_at is not None and now - self.started > self.length_s:
            self._wait(conns, self.sent_at + self.length_s / 2)
        if self.sent_at is not None and now - self.sent_at > self.length_s / 2:
            raise ConnectionError("a tracking connection did not answer PING")

    def _wait(self, conns: Sequence[Connection], deadline: float) -> None:
        """Read replies until every outstanding PONG has come or `deadline` passed."""
        for index in sorted(self.awaiting):
            while index in self.awaiting:
                left = deadline - time.monotonic()
                if left <= 0 or not self._read_ready(conns[index], index, left):
                    raise ConnectionError("a tracking connection did not answer PING in time")

    def _read_ready(self, conn: Connection, index: int, timeout: float) -> bool:
        """Read the replies `conn` has (waiting up to `timeout` for the first); False if none came."""
        if not conn.can_read(timeout=timeout):
            return False
        while conn.can_read(timeout=0):
            if conn.read_response(push_request=True) in _PONGS:
                self.pong(index)
        return True

