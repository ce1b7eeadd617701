"""Readers bound the window of a write whose container could not reach Redis.

Such a write commits, fails to bump its version keys and leaves them in
`cache_invalidation_outbox` (invalidation.py); no push tells the other containers. So a
booking-critical read looks at the outbox itself, at most once every
`CACHE_OUTBOX_CHECK_EVERY` seconds per container, and replays what it finds (bumps are
idempotent: a second replay only makes one more new version). The replay tells every
container through Redis and this one at once (`TieredCache.bump_keys`), so a write that
returned is visible everywhere within about one check interval. On an empty outbox the
look is one indexed query; between looks a read pays one clock comparison.
"""
from __future__ import annotations

import logging
import threading
import time

from chalicelib.booking.invalidation import replay_outbox
from chalicelib.cache.tiered import TieredCache

log = logging.getLogger(__name__)


class OutboxWatch:
    """When this container last looked at the outbox, and the look itself."""

    def __init__(self) -> None:
        self.next_at = 0.0
        self._lock = threading.Lock()

    def look(self, cache: TieredCache) -> None:
        """Replay the outbox if this container has not looked for the check interval."""
        if time.monotonic() < self.next_at:
            return
        with self._lock:
            now = time.monotonic()
            if now < self.next_at:
                return  # another thread looked meanwhile
            self.next_at = now + cache.config.outbox_check_every_s
        try:
            replay_outbox(cache)
        except Exception:  # noqa: BLE001 - the read goes on; the next look or the schedule retries
            log.warning("looking at the invalidation outbox failed")


watch = OutboxWatch()
