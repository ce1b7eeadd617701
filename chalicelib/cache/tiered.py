"""The orchestrator: `get_or_load(key, loader, policy)` over L1 (memory), L2 (Redis) and
L3 (the loader, which queries PostgreSQL).

Policy lives here; the tiers only store. The rules:
- An entry is served only while it is fresh (logical time) and built under the current
  versions of every scope it depends on. L1 knows current versions without a round trip
  while the tracking connection is healthy (see `tracking`); otherwise it asks L2, and with
  Redis down it trusts booking-critical L1 copies only for a short maximum age.
- On a miss one caller per key (Redis lock) loads; others serve a version-valid stale copy
  or wait briefly for the winner's value, and load themselves if the holder vanished.
- A loader that fails with the database unavailable leaves every tier untouched; a
  version-valid copy younger than the maximum stale age is served as STALE, else 503.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Iterable, Optional

from chalicelib.cache.entry import Entry, Versions
from chalicelib.cache.keys import CacheKey, KeySpace
from chalicelib.cache.memory import MemoryTier
from chalicelib.cache.policies import Policy, policies_from
from chalicelib.cache.redis_tier import RedisTier, new_token
from chalicelib.cache.stats import CacheStats
from chalicelib.cache.tracking import DrainResult, InvalidationTracker
from chalicelib.db.connection import DatabaseUnavailable
from chalicelib.http import ApiError
from chalicelib.settings import Settings

_OK, _OK_UNTRACKED, _UNKNOWN, _INVALID = 0, 1, 2, 3


class CacheResult:
    """An entry and which tier answered: 'L1', 'L2', 'DB' or 'STALE'; db_s is loader time."""

    __slots__ = ("entry", "source", "elapsed_s", "db_s")

    def __init__(self, entry: Entry, source: str, elapsed_s: float, db_s: float = 0.0) -> None:
        self.entry = entry
        self.source = source
        self.elapsed_s = elapsed_s
        self.db_s = db_s


class TieredCache:
    """One per container: L1, L2, tracking, local version knowledge and statistics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.config = settings.cache
        self.keys = KeySpace(self.config.namespace)
        self.policies: dict[str, Policy] = policies_from(self.config)
        self.stats = CacheStats()
        self.l1 = MemoryTier(self.config.l1_max_entries, self.config.l1_max_bytes)
        self.l2: Optional[RedisTier] = None
        self.tracker: Optional[InvalidationTracker] = None
        if settings.redis.enabled:
            self.l2 = RedisTier(settings.redis, self.stats.l2)
            self.tracker = InvalidationTracker(settings.redis, self.keys.version_prefix,
                                               self.config.tracking_idle_bound_s)
        # Version values this container knows to be current (kept so by tracking pushes).
        self.local_versions: dict[str, str] = {}
        # Increases whenever a known version is forgotten or changed: an L1 verdict
        # recorded under an older epoch must be checked again.
        self.epoch = 0
        self._versions_lock = threading.Lock()
        self._drain_lock = threading.Lock()
        self._drains = 0  # odd while a drain is being applied

    # -- per request -------------------------------------------------------------------
    def begin_request(self) -> None:
        """Apply queued invalidations before anything is served from L1."""
        tracker = self.tracker
        if tracker is None:
            return
        # Fast path: nothing queued and no drain in progress in another thread (a seqlock:
        # the counter is odd while a drain runs, and changes if one starts meanwhile).
        in_progress = self._drains
        if not in_progress & 1 and tracker.quiet() and self._drains == in_progress:
            return
        with self._drain_lock:
            self._drains += 1
            try:
                self._apply(tracker.drain())
            finally:
                self._drains += 1

    def _apply(self, result: DrainResult) -> None:
        if not result.keys and not result.reset:
            return
        self.epoch += 1
        if result.reset:
            if self.local_versions:
                self.stats.l1_resets += 1
            self.local_versions.clear()
        for key in result.keys:
            self.local_versions.pop(key, None)
        self.stats.invalidations_received += len(result.keys)

    # -- reads -------------------------------------------------------------------------
    def policy(self, resource: str) -> Policy:
        """The policy for a resource name."""
        return self.policies[resource]

    def _l1_state(self, entry: Entry, stored_at: float, policy: Policy, now: float) -> int:
        """Whether an L1 entry may be served: OK (every version known and current), OK_UNTRACKED
        (some version unknown while Redis is down), UNKNOWN (ask L2) or INVALID. Ages count
        from when this container stored (and so last verified) the entry."""
        local = self.local_versions
        unknown = False
        for key, value in entry.versions:
            known = local.get(key)
            if known is None:
                unknown = True
            elif known != value:
                return _INVALID
        if now - stored_at > self.config.l1_max_age_s:
            return _UNKNOWN
        if unknown:
            if self.l2 is not None and self.l2.available:
                return _UNKNOWN
            if policy.critical and now - stored_at > self.config.l1_max_age_untracked_s:
                return _INVALID
            return _OK_UNTRACKED
        return _OK

    def get_or_load(self, key: CacheKey, loader: Callable[[], Optional[str]],
                    policy: Policy) -> Optional[CacheResult]:
        """The answer for `key`: from L1, L2, or `loader()` (None from the loader means
        "no such thing": nothing is cached and None is returned)."""
        now = time.time()
        epoch = self.epoch
        record = self.l1.get(key.body)
        if record is not None and record.checked_epoch == epoch and now < record.ok_until:
            # Verified under this epoch (no version it depends on changed since) and fresh.
            record.used = True
            elapsed = time.time() - now
            if elapsed < 0.0:  # the wall clock stepped back
                elapsed = 0.0
            l1 = self.stats.l1  # TierStats.record(True, elapsed), inlined on the hottest path
            l1.hits += 1
            l1.latencies_us.append(elapsed * 1e6)
            return CacheResult(record.entry, "L1", elapsed)
        started = time.perf_counter()
        fallback: Optional[Entry] = None
        stored_at = 0.0
        if record is not None:
            entry, stored_at = record.entry, record.stored_at
            state = self._l1_state(entry, stored_at, policy, now)
            if state <= _OK_UNTRACKED:
                if now < entry.fresh_until:
                    record.used = True
                    if state == _OK:
                        record.ok_until = min(entry.fresh_until, stored_at + self.config.l1_max_age_s)
                        record.checked_epoch = epoch
                    elapsed = time.perf_counter() - started
                    self.stats.l1.record(True, elapsed)
                    return CacheResult(entry, "L1", elapsed)
                fallback = entry
            elif state == _UNKNOWN and now < entry.stale_until:
                fallback = entry  # only if L2 confirms its versions (checked below)
        self.stats.l1.record(False, time.perf_counter() - started)

        versions, from_l2 = self._current_versions_and_body(key)
        if from_l2 is not None:
            if from_l2.versions == versions and now < from_l2.fresh_until:
                self.l1.set(key.body, from_l2)
                return CacheResult(from_l2, "L2", time.perf_counter() - started)
            if from_l2.versions == versions and (fallback is None or from_l2.created > fallback.created):
                fallback = from_l2
        if fallback is not None and versions is not None and fallback.versions != versions:
            fallback = None
        if versions is None:  # Redis unavailable: stamp with what this container knows
            versions = tuple((k, self.local_versions.get(k, "")) for k in key.versions)
            if fallback is not None and self._l1_state(fallback, stored_at, policy, now) == _INVALID:
                fallback = None
        return self._load(key, loader, policy, versions, fallback, started)

    def _current_versions_and_body(self, key: CacheKey) -> tuple[Optional[Versions], Optional[Entry]]:
        """Current versions (None if Redis is unavailable) and the L2 entry, one MGET."""
        if self.l2 is None:
            return None, None
        sequence = self.tracker.sequence if self.tracker else -1
        t0 = time.perf_counter()
        reply = self.l2.fetch(key.versions, key.body)
        if reply is None:
            return None, None
        raw_versions, raw_body = reply[:-1], reply[-1]
        if None in raw_versions:
            raw_versions = self.l2.init_versions(key.versions)
            if raw_versions is None:
                return None, None
        versions = tuple(zip(key.versions, map(bytes.decode, raw_versions)))
        tracker = self.tracker
        if tracker is not None and tracker.healthy and tracker.sequence == sequence:
            with self._versions_lock:
                if tracker.sequence == sequence:
                    local = self.local_versions
                    for name, value in versions:
                        if local.get(name, value) != value:
                            self.epoch += 1  # L2 saw a bump before its push arrived here
                            break
                    local.update(versions)
        entry = Entry.decode(raw_body) if raw_body else None
        self.stats.l2.record(entry is not None and entry.versions == versions and time.time() < entry.fresh_until,
                             time.perf_counter() - t0)
        return versions, entry

    def _load(self, key: CacheKey, loader: Callable[[], Optional[str]], policy: Policy,
              versions: Versions, fallback: Optional[Entry], started: float) -> Optional[CacheResult]:
        lock_token: Optional[str] = None
        if self.l2 is not None and self.l2.available:
            lock_token = self.l2.try_lock(key.lock, self.config.lock_ttl_ms)
            if lock_token is None and self.l2.available:
                if fallback is not None:
                    return self._stale(fallback, started)
                waited = self._wait_for_winner(key, versions)
                if isinstance(waited, Entry):
                    self.l1.set(key.body, waited)
                    return CacheResult(waited, "L2", time.perf_counter() - started)
                lock_token = waited
            if lock_token is not None:
                # The previous holder may have stored and released between our read and our
                # lock: look once more before loading again.
                stored = self._fresh_in_l2(key)
                if stored is not None:
                    self.l2.unlock(key.lock, lock_token)
                    self.l1.set(key.body, stored)
                    return CacheResult(stored, "L2", time.perf_counter() - started)
        t0 = time.perf_counter()
        entry: Optional[Entry] = None
        try:
            body = loader()
            db_s = time.perf_counter() - t0
            if body is not None:
                entry = Entry.build(body, versions, policy.fresh_for(), policy.stale_s)
                if self.l2 is not None:  # stored before the lock is released (finally)
                    ttl_ms = int((entry.stale_until - entry.created) * 1000) + 1000
                    self.l2.store(key.versions, [v for _, v in versions], key.body, entry.encode(), ttl_ms)
        except DatabaseUnavailable:
            self.stats.db.errors += 1
            self.stats.db.record(False, time.perf_counter() - t0)
            if fallback is not None and time.time() - fallback.created <= self.config.max_stale_age_s:
                return self._stale(fallback, started)
            raise ApiError(503, "The database is unavailable and no recent copy of this answer is cached.",
                           code="unavailable", headers={"Retry-After": "5"}) from None
        finally:
            if lock_token is not None and self.l2 is not None:
                self.l2.unlock(key.lock, lock_token)
        self.stats.db.record(True, db_s)
        if entry is None:
            return None
        self.l1.set(key.body, entry)
        return CacheResult(entry, "DB", time.perf_counter() - started, db_s)

    def _fresh_in_l2(self, key: CacheKey) -> Optional[Entry]:
        """The L2 entry of `key` if it is fresh and built under the current versions."""
        assert self.l2 is not None
        reply = self.l2.fetch(key.versions, key.body)
        if reply is None or reply[-1] is None:
            return None
        entry = Entry.decode(reply[-1])
        current = tuple((k, v.decode() if v else "") for k, v in zip(key.versions, reply[:-1]))
        if entry is not None and entry.versions == current and time.time() < entry.fresh_until:
            return entry
        return None

    def _wait_for_winner(self, key: CacheKey, versions: Versions) -> Entry | str | None:
        """Poll L2 for the lock holder's value. Returns the entry, or our own lock token
        when the holder vanished without storing, or None after the wait bound."""
        assert self.l2 is not None
        self.stats.lock_waits += 1
        deadline = time.monotonic() + self.config.lock_wait_s
        pause = 0.002
        while time.monotonic() < deadline:
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
            reply = self.l2.fetch(key.versions, key.body)
            if reply is None:
                return None
            entry = Entry.decode(reply[-1]) if reply[-1] else None
            current = tuple((k, v.decode() if v else "") for k, v in zip(key.versions, reply[:-1]))
            if entry is not None and entry.versions == current and time.time() < entry.fresh_until:
                return entry
            token = self.l2.try_lock(key.lock, self.config.lock_ttl_ms)
            if token is not None:
                return token
        return None

    def _stale(self, entry: Entry, started: float) -> CacheResult:
        self.stats.stale_served += 1
        return CacheResult(entry, "STALE", time.perf_counter() - started)

    # -- writes ------------------------------------------------------------------------
    def invalidate(self, tenant: int, scopes: Iterable[str]) -> bool:
        """Bump the version keys of `scopes` after a commit. This container sees the bump
        at once; others through tracking. Returns False when Redis could not be told (the
        caller records the keys for replay)."""
        version_keys = [self.keys.version(tenant, s) for s in scopes]
        values = self.l2.bump(version_keys) if self.l2 is not None else None
        told = values is not None
        if values is None:
            values = {k: new_token() for k in version_keys}
        with self._versions_lock:
            self.local_versions.update(values)
            self.epoch += 1
            if self.tracker is not None:
                self.tracker.sequence += 1
        if not told and self.l2 is not None:
            # Redis is down: the tracker resets local versions on every request while it is
            # disconnected, so the bump above is forgotten at once; drop the L1 copies this
            # write made stale, or this container would serve them (untracked max age).
            self.l1.drop_depending_on(version_keys)
        return told or self.l2 is None

    def bump_keys(self, version_keys: Iterable[str]) -> bool:
        """Bump already-built version keys (outbox replay); True when Redis took them."""
        keys = list(version_keys)
        return self.l2 is not None and self.l2.bump(keys) is not None

    # -- operations --------------------------------------------------------------------
    def clear_l1(self) -> None:
        """Drop every L1 entry and every known version (tests, benchmarks)."""
        self.l1.clear()
        self.local_versions.clear()
        self.epoch += 1

    def prewarm(self, key: CacheKey, loader: Callable[[], Optional[str]], policy: Policy) -> bool:
        """Load a body and store it in L2 under the versions read before loading, so a write
        racing the pre-warm makes the store a no-op instead of leaving old data behind."""
        if self.l2 is None:
            return False
        raw = self.l2.init_versions(key.versions)
        if raw is None:
            return False
        versions = tuple((k, v.decode()) for k, v in zip(key.versions, raw))
        body = loader()
        if body is None:
            return False
        entry = Entry.build(body, versions, policy.fresh_for(), policy.stale_s)
        ttl_ms = int((entry.stale_until - entry.created) * 1000) + 1000
        return self.l2.store(key.versions, [v for _, v in versions], key.body, entry.encode(), ttl_ms)


_cache: Optional[TieredCache] = None
_cache_lock = threading.Lock()


def get_cache() -> TieredCache:
    """This container's cache, built from settings on first use."""
    global _cache
    cache = _cache
    if cache is None:
        from chalicelib.settings import get_settings

        with _cache_lock:
            if _cache is None:
                _cache = TieredCache(get_settings())
            cache = _cache
    return cache


def reset_cache() -> None:
    """Forget this container's cache (tests; after settings change)."""
    global _cache
    with _cache_lock:
        if _cache is not None and _cache.tracker is not None:
            _cache.tracker.close()
        _cache = None
