"""Cache statistics per tier: hits, misses, latency percentiles; stale answers; errors."""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TierStats:
    """Counters and a window of recent latencies (microseconds) for one tier."""

    hits: int = 0
    misses: int = 0
    errors: int = 0
    latencies_us: deque = field(default_factory=lambda: deque(maxlen=2048))

    def record(self, hit: bool, elapsed_s: float) -> None:
        """Count one lookup and remember its latency."""
        if hit:
            self.hits += 1
        else:
            self.misses += 1
        self.latencies_us.append(elapsed_s * 1e6)

    def snapshot(self) -> dict[str, Any]:
        """Counts, hit rate and p50/p99 of the recent window."""
        lat = sorted(self.latencies_us)
        total = self.hits + self.misses

        def pct(q: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(q * len(lat)))], 1) if lat else None

        return {"hits": self.hits, "misses": self.misses,
                "hitRate": round(self.hits / total, 4) if total else None,
                "p50Us": pct(0.50), "p99Us": pct(0.99), "errors": self.errors}


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
