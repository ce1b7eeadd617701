"""A circuit breaker: opens after consecutive failures, lets one probe through after a
cool-down, closes again on the probe's success."""
from __future__ import annotations

import threading
import time


class CircuitBreaker:
    """closed -> (failures >= threshold) -> open -> (cool-down elapsed) -> half-open probe."""

    def __init__(self, failure_threshold: int, cooldown_s: float) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self._lock = threading.Lock()
        self.opened_count = 0

    @property
    def state(self) -> str:
        """'closed', 'open' or 'half_open'."""
        if self._failures < self.failure_threshold:
            return "closed"
        if time.monotonic() - self._opened_at >= self.cooldown_s:
            return "half_open"
        return "open"

    @property
    def tripped(self) -> bool:
        """Open or half-open (`state != "closed"`, without reading the clock)."""
        return self._failures >= self.failure_threshold

    def allow(self) -> bool:
        """May a call go through now? In half-open, only one caller gets to probe."""
        if self._failures < self.failure_threshold:
            return True
        with self._lock:
            if self._probing or time.monotonic() - self._opened_at < self.cooldown_s:
                return False
            self._probing = True
            return True

    def success(self) -> None:
        """Record a successful call: the breaker closes."""
        if self._failures or self._probing:
            with self._lock:
                self._failures = 0
                self._probing = False

    def failure(self) -> None:
        """Record a failed call; at the threshold (or a failed probe) the breaker opens."""
        with self._lock:
            self._failures += 1
            self._probing = False
            if self._failures >= self.failure_threshold:
                if self._failures == self.failure_threshold:
                    self.opened_count += 1
                self._opened_at = time.monotonic()
