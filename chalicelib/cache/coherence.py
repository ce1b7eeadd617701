"""The coherence state of one container, under one owner and one lock.

State (every change happens under `_lock`; the lock-free reads are named):

- `known`: version key -> value this container knows to be current. Changed by `apply`
  (drained pushes and resets forget), `learn` (values read from L2) and `bumped` (this
  container's own writes). Read without the lock by the L1 verdict (one dict get each).
- `epoch`: increases after every change that forgets or alters a known value. Read without
  the lock on the L1 hit path: a verdict recorded under epoch e holds while epoch == e.
- `generation`: increases with every applied drain that found something (pushes or a reset)
  and every local bump. A reader notes it before reading versions from L2 and `learn`s them
  only if it has not moved since (no invalidation was applied in between).
- `drains`: a seqlock, odd while a drain is being applied; the lock-free "nothing queued"
  check of `begin_request` is trusted only if it was even and unchanged across the check.

Invariants:

1. A value in `known` is trusted only while tracking has been unbroken since it was learned:
   every reset (lost connection, idle past the bound, a flush) empties `known`.
2. `learn` writes only values read after the last applied invalidation: its generation check
   and its write happen in one critical section, and `apply` bumps `generation` in the same
   lock, so a drain that removed a key can never be followed by a write-back of the old value.
3. `known` is changed *before* `epoch` moves, so a verdict recorded under the new epoch was
   computed from a `known` that already holds the change.
4. The lock-free fast path of `begin_request` returns only when no drain was in progress
   and none started while it looked at the socket.
5. `known` holds at most `max_known` values: past that, the oldest learned quarter is
   forgotten (forgetting is always safe: an unknown version is checked in L2) and `epoch`
   moves, as for any other change.
"""
from __future__ import annotations

import itertools
import threading
from typing import Callable, Iterable, Mapping, Optional, Protocol

from chalicelib.cache.entry import Versions
from chalicelib.cache.stats import CacheStats
from chalicelib.cache.tracking import DrainResult


class Tracker(Protocol):
    """What Coherence needs of the tracking connection (chalicelib.cache.tracking)."""

    @property
    def healthy(self) -> bool: ...

    def quiet(self) -> bool: ...

    def drain(self) -> DrainResult: ...


# Version values a container remembers at most (one dict entry each, about 200 bytes).
MAX_KNOWN = 50_000


def _nothing() -> None:
    return None


class Coherence:
    """Owns `known`, `epoch`, `generation` and `drains` (see the module docstring).

    `after_learn_check` runs inside `learn` between its generation check and its write
    (tests use it to force interleavings; it is a no-op otherwise)."""

    def __init__(self, tracker: Optional[Tracker], stats: CacheStats,
                 after_learn_check: Callable[[], None] = _nothing, max_known: int = MAX_KNOWN) -> None:
        self.tracker = tracker
        self.stats = stats
        self.max_known = max_known
        self.known: dict[str, str] = {}
        self.epoch = 0
        self.generation = 0
        self.drains = 0
        self._lock = threading.Lock()
        self._after_learn_check = after_learn_check

    def begin_request(self) -> None:
        """Apply queued invalidations before anything is served from L1."""
        tracker = self.tracker
        if tracker is None:
            return
        seen = self.drains
        if not seen & 1 and tracker.quiet() and self.drains == seen:
            return
        with self._lock:
            self.drains += 1
            try:
                self.apply(tracker.drain())
            finally:
                self.drains += 1

    def apply(self, result: DrainResult) -> None:
        """Forget what a drain reported changed (everything on a reset). Caller holds the
        lock (`begin_request`) or owns the object alone (tests)."""
        if not result.keys and not result.reset:
            return
        known = self.known
        if result.reset:
            if known:
                self.stats.l1_resets += 1
            known.clear()
        for key in result.keys:
            known.pop(key, None)
        self.stats.invalidations_received += len(result.keys)
        self.generation += 1
        self.epoch += 1

    def learn(self, generation: int, versions: Versions) -> None:
        """Remember versions read from L2, if tracking is healthy and nothing was applied
        since `generation` was read (before the L2 read)."""
        tracker = self.tracker
        if tracker is None or not tracker.healthy:
            return
        with self._lock:
            if self.generation != generation or not tracker.healthy:
                return
            self._after_learn_check()
            known = self.known
            changed = any(known.get(name, value) != value for name, value in versions)
            known.update(versions)
            if changed:  # L2 saw a bump before its push arrived here
                self.epoch += 1
            self._bound()

    def bumped(self, values: Mapping[str, str]) -> None:
        """This container's own write gave these version keys new values."""
        with self._lock:
            self.known.update(values)
            self.generation += 1
            self.epoch += 1
            self._bound()

    def _bound(self) -> None:
        """Invariant 5: forget the oldest quarter of `known` once it outgrows `max_known`.
        Caller holds the lock."""
        known = self.known
        if len(known) <= self.max_known:
            return
        for name in list(itertools.islice(known, len(known) - self.max_known * 3 // 4)):
            del known[name]
        self.epoch += 1

    def forget_all(self) -> None:
        """Trust no known version any more (tests, benchmarks)."""
        with self._lock:
            self.known.clear()
            self.generation += 1
            self.epoch += 1

    def stamp(self, names: Iterable[str]) -> Versions:
        """Versions for an entry built while Redis is unavailable: what this container knows."""
        known = self.known
        return tuple((name, known.get(name, "")) for name in names)
