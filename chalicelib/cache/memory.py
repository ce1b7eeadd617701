"""L1: a module-level, thread-safe store of entries, bounded by count and by bytes, with
second-chance (CLOCK) eviction: an approximation of LRU whose hits cost no reordering.

It lives as long as the Lambda container (or the `chalice local` process). It only
stores; whether an entry may be served is decided by the orchestrator's policy.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable, Iterable, Optional

from chalicelib.cache.entry import Entry


class L1Record:
    """One stored entry, when this container stored it (epoch seconds), whether it was
    served since eviction last passed it (`used`), and the last "servable until" verdict the
    orchestrator recorded for it (so a repeat hit skips the version check while nothing was
    invalidated in between)."""

    __slots__ = ("entry", "stored_at", "used", "checked_epoch", "ok_until")

    def __init__(self, entry: Entry, stored_at: float) -> None:
        self.entry = entry
        self.stored_at = stored_at
        self.used = False
        self.checked_epoch = -1
        self.ok_until = 0.0


class MemoryTier:
    """Bounded store: get / set / delete / clear. Whoever serves a record sets
    `record.used = True`; eviction takes the oldest record not used since it was last
    passed over, giving used ones a second chance at the young end."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._data: "OrderedDict[str, L1Record]" = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.evictions = 0
        # The record under a key, or None: the dict's own bound method (no Python frame on
        # the hottest path of the service).
        self.get: Callable[[str], Optional[L1Record]] = self._data.get

    def set(self, key: str, entry: Entry) -> None:
        """Store `entry`, evicting least recently used entries past the limits."""
        if entry.size > self.max_bytes:
            return
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old.entry.size
            self._data[key] = L1Record(entry, time.time())
            self._bytes += entry.size
            while len(self._data) > self.max_entries or self._bytes > self.max_bytes:
                oldest, record = self._data.popitem(last=False)
                if record.used and oldest != key:
                    record.used = False  # second chance: back to the young end
                    self._data[oldest] = record
                    continue
                self._bytes -= record.entry.size
                self.evictions += 1

    def delete(self, key: str) -> None:
        """Forget `key` if present."""
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old.entry.size

    def drop_depending_on(self, version_keys: Iterable[str]) -> int:
        """Forget every entry built under any of `version_keys`; returns how many."""
        wanted = set(version_keys)
        with self._lock:
            stale = [k for k, r in self._data.items() if any(v in wanted for v, _ in r.entry.versions)]
            for key in stale:
                self._bytes -= self._data.pop(key).entry.size
        return len(stale)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._data.clear()
            self._bytes = 0

    def snapshot(self) -> dict[str, L1Record]:
        """A copy of key -> record (tests compare records by identity)."""
        with self._lock:
            return dict(self._data)

    @property
    def entries(self) -> int:
        return len(self._data)

    @property
    def bytes(self) -> int:
        return self._bytes
