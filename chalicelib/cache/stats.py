"""Cache statistics per tier: hits, misses, errors and a latency histogram; stale answers.

The read path only counts and appends the latency (microseconds) to `latencies_us`, a
bounded deque (one C call). `fold()` moves those samples into the tier's histogram
(chalicelib.cache.histogram), in bulk, when statistics are read, published or flushed.
`CacheStats.snapshot()` is the mergeable form: plain counters and histogram buckets, the
same for one container and for a sum of containers (chalicelib.cache.fleet).
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from chalicelib.cache import histogram

PENDING_SAMPLES = 65536
"""Latency samples kept between two folds (oldest dropped beyond; folds run every few s)."""

COUNTERS = ("staleServed", "lockWaits", "invalidationsReceived", "l1Resets")


@dataclass
class TierStats:
    """Counters, latencies not yet folded (microseconds) and the histogram of the folded ones."""

    hits: int = 0
    misses: int = 0
    errors: int = 0
    latencies_us: deque = field(default_factory=lambda: deque(maxlen=PENDING_SAMPLES))
    buckets: dict = field(default_factory=dict)
    _fold_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, hit: bool, elapsed_s: float) -> None:
        """Count one lookup and remember its latency (the L1 hit path inlines this)."""
        if hit:
            self.hits += 1
        else:
            self.misses += 1
        self.latencies_us.append(elapsed_s * 1e6)

    def failure(self, elapsed_s: float) -> None:
        """Count one lookup that failed (an error and a miss) and remember its latency."""
        self.errors += 1
        self.record(False, elapsed_s)

    def fold(self) -> dict[int, int]:
        """Move pending samples into the histogram; returns the histogram (live dict).

        The deque is swapped for a new one rather than drained, so a reader never waits on
        the read path; a thread appending at that very instant may lose its one sample."""
        with self._fold_lock:
            pending, self.latencies_us = self.latencies_us, deque(maxlen=PENDING_SAMPLES)
            if pending:
                histogram.add(self.buckets, histogram.bucket_counts(pending))
            return self.buckets

    def snapshot(self) -> dict[str, Any]:
        """Mergeable form: hits, misses, errors and the histogram (JSON-encoded buckets)."""
        buckets = self.fold()
        with self._fold_lock:
            encoded = histogram.encode(buckets)
        return {"hits": self.hits, "misses": self.misses, "errors": self.errors, "latency": encoded}


class CacheStats:
    """All tiers' statistics for this container."""

    def __init__(self) -> None:
        self.l1 = TierStats()
        self.l2 = TierStats()
        self.db = TierStats()
        self.stale_served = 0
        self.lock_waits = 0
        self.invalidations_received = 0
        self.l1_resets = 0
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Start counting again from zero."""
        with self._lock:
            self.__init__()  # type: ignore[misc]

    def snapshot(self, l1_size: Optional[Mapping[str, int]] = None) -> dict[str, Any]:
        """This container's figures in the mergeable form; `l1_size` adds the memory tier's
        entries, bytes and evictions to `l1`."""
        l1 = self.l1.snapshot()
        l1.update(l1_size or {"entries": 0, "bytes": 0, "evictions": 0})
        return {"l1": l1, "l2": self.l2.snapshot(), "db": self.db.snapshot(),
                "staleServed": self.stale_served, "lockWaits": self.lock_waits,
                "invalidationsReceived": self.invalidations_received, "l1Resets": self.l1_resets}
