"""The orchestrator: `get_or_load(key, loader, policy)` over L1 (memory), L2 (Redis) and
L3 (the loader, which queries the source of truth).

Policy lives here; the tiers only store. A read is a list of named steps:

1. serve from L1          `_serve_from_l1`  (the hit path is inlined in `get_or_load`)
2. ask L2                 `_ask_l2`         one MGET of versions and body; learns versions
3. choose a fallback      `_choose_fallback` the newest copy built under current versions
4. load under the lock    `_acquire`, `_load` one caller per key loads (Redis lock)
5. store                  inside `_load`, before the lock is released
6. fail safe              `_fail_safe`      a recent fallback as STALE, else CacheUnavailable

What this container knows about versions is owned by `Coherence` (coherence.py). The
loader signals "source unavailable" with one of the `source_errors` given at construction;
the cache then raises its own `CacheUnavailable`, never an HTTP error.
"""
from __future__ import annotations

import time
from types import MappingProxyType
from typing import Callable, Iterable, Mapping, Optional

from chalicelib.cache.coherence import Coherence
from chalicelib.cache.entry import Entry, Versions, decode_versions
from chalicelib.cache.errors import CacheUnavailable
from chalicelib.cache.keys import CacheKey, KeySpace
from chalicelib.cache.memory import L1Record, MemoryTier
from chalicelib.cache.policies import Freshness, Policy, policies_from
from chalicelib.cache.redis_tier import RedisTier
from chalicelib.cache.stats import CacheStats
from chalicelib.cache.tickets import Fill, new_token
from chalicelib.cache.tracking import InvalidationTracker, TopologySignal, one_node, primaries_of
from chalicelib.cache.verdict import L1Verdict, l1_verdict
from chalicelib.settings import Settings

Loader = Callable[[Fill], Optional[str]]
"""Builds a body (JSON text) from the source of truth for the fill it is handed; None means
"no such thing"."""
SourceErrors = tuple[type[BaseException], ...]
_SERVABLE = (L1Verdict.SERVE, L1Verdict.SERVE_UNTRACKED)
_NONE_DECLARED: Mapping[str, Freshness] = MappingProxyType({})


class CacheResult:
    """An entry and which tier answered: 'L1', 'L2', 'DB' or 'STALE'; db_s is loader time and
    read_from the loader's note of where it read (a 'DB' answer's `Fill.source`)."""

    __slots__ = ("entry", "source", "elapsed_s", "db_s", "read_from")

    def __init__(self, entry: Entry, source: str, elapsed_s: float, db_s: float = 0.0, read_from: str = "") -> None:
        self.entry = entry
        self.source = source
        self.elapsed_s = elapsed_s
        self.db_s = db_s
        self.read_from = read_from


class TieredCache:
    """One per container: L1, L2, the coherence state and statistics. `declared` names each
    cached resource's lifetimes (the settings may override them). A loader raising one of
    `source_errors` means "source unavailable" (fail-safe applies)."""

    def __init__(self, settings: Settings, declared: Mapping[str, Freshness] = _NONE_DECLARED,
                 source_errors: SourceErrors = (),
                 on_l2_recover: Optional[Callable[["TieredCache"], None]] = None) -> None:
        self.settings = settings
        self.config = settings.cache
        self.source_errors = source_errors
        self.keys = KeySpace(self.config.namespace)
        self.policies: dict[str, Policy] = policies_from(declared, self.config)
        self.stats = CacheStats()
        self.l1 = MemoryTier(self.config.l1_max_entries, self.config.l1_max_bytes)
        self.l2: Optional[RedisTier] = None
        self.tracker: Optional[InvalidationTracker] = None
        if settings.redis.enabled:
            # One tracking connection per node that owns keys; on a cluster, its client
            # reports topology moves through the signal and lists the primaries.
            topology = TopologySignal()
            recover = (lambda: on_l2_recover(self)) if on_l2_recover is not None else None
            l2 = RedisTier(settings.redis, self.stats.l2, on_recover=recover,
                           on_topology_change=topology.set if settings.redis.cluster else None)
            nodes = (lambda: primaries_of(l2.client)) if settings.redis.cluster else one_node(settings.redis)
            self.l2 = l2
            self.tracker = InvalidationTracker(settings.redis, self.keys.version_prefix,
                                               self.config.tracking_idle_bound_s, self.config.tracking_lease_s,
                                               nodes=nodes, topology=topology)
        self.coherence = Coherence(self.tracker, self.stats)
        # Apply queued invalidations before anything is served from L1 (once per request).
        self.begin_request: Callable[[], None] = self.coherence.begin_request

    def policy(self, resource: str) -> Policy:
        """The policy for a resource name."""
        return self.policies[resource]

    # -- reads -------------------------------------------------------------------------
    def get_or_load(self, key: CacheKey, loader: Loader, policy: Policy) -> Optional[CacheResult]:
        """The answer for `key`: from L1, L2, or `loader()` (None from the loader means
        "no such thing": nothing is cached and None is returned). Raises CacheUnavailable
        when the source is unavailable and no recent copy may be served."""
        now = time.time()
        epoch = self.coherence.epoch
        record = self.l1.get(key.body)
        if record is not None and record.checked_epoch == epoch and now < record.ok_until:
            # Step 1, the hot path: verified under this epoch (no version it depends on
            # changed since) and fresh. TierStats.record(True, elapsed), inlined.
            record.used = True
            elapsed = time.time() - now
            if elapsed < 0.0:  # the wall clock stepped back
                elapsed = 0.0
            l1 = self.stats.l1
            l1.hits += 1
            l1.latencies_us.append(elapsed * 1e6)
            return CacheResult(record.entry, "L1", elapsed)
        return self._read_through(key, loader, policy, record, now, epoch)

    def _read_through(self, key: CacheKey, loader: Loader, policy: Policy, record: Optional[L1Record],
                      now: float, epoch: int) -> Optional[CacheResult]:
        """Steps 1 to 6 for a read the hot path could not answer."""
        started = time.perf_counter()
        verdict = self._verdict(record, policy, now)
        answer = self._serve_from_l1(record, verdict, now, epoch, started)
        if answer is not None:
            return answer
        versions, from_l2 = self._ask_l2(key)
        if from_l2 is not None and from_l2.fresh_under(versions, now):
            return self._from_l2(key, from_l2, started)
        fallback = self._choose_fallback(record, verdict, from_l2, versions, policy, now)
        if versions is None:  # Redis unavailable: stamp with what this container knows
            versions = self.coherence.stamp(key.versions)
        token, answer = self._acquire(key, fallback, started)
        if answer is not None:
            return answer
        return self._load(key, loader, policy, versions, fallback, token, started)

    def _verdict(self, record: Optional[L1Record], policy: Policy, now: float) -> Optional[L1Verdict]:
        """The L1 verdict on `record` (None when there is no record)."""
        if record is None:
            return None
        config = self.config
        return l1_verdict(record.entry.versions, self.coherence.known, now - record.stored_at,
                          self.l2 is not None and self.l2.available, policy.critical,
                          config.l1_max_age_s, config.l1_max_age_untracked_s)

    def _serve_from_l1(self, record: Optional[L1Record], verdict: Optional[L1Verdict], now: float,
                       epoch: int, started: float) -> Optional[CacheResult]:
        """Step 1: a servable, fresh L1 entry (its SERVE verdict remembered for this epoch);
        otherwise count an L1 miss and return None."""
        if record is not None and verdict in _SERVABLE and now < record.entry.fresh_until:
            entry = record.entry
            record.used = True
            if verdict is L1Verdict.SERVE:
                record.ok_until = min(entry.fresh_until, record.stored_at + self.config.l1_max_age_s)
                record.checked_epoch = epoch
            elapsed = time.perf_counter() - started
            self.stats.l1.record(True, elapsed)
            return CacheResult(entry, "L1", elapsed)
        self.stats.l1.record(False, time.perf_counter() - started)
        return None

    def _ask_l2(self, key: CacheKey) -> tuple[Optional[Versions], Optional[Entry]]:
        """Step 2: current versions (creating missing ones) and the L2 entry in one MGET,
        and teach this container the versions; (None, None) when Redis is unavailable."""
        if self.l2 is None:
            return None, None
        generation = self.coherence.generation
        t0 = time.perf_counter()
        read = self._read_l2(key, create_missing=True)
        if read is None:
            return None, None
        versions, entry = read
        self.coherence.learn(generation, versions)
        self.stats.l2.record(entry is not None and entry.fresh_under(versions, time.time()),
                             time.perf_counter() - t0)
        return versions, entry

    def _read_l2(self, key: CacheKey, create_missing: bool = False) -> Optional[tuple[Versions, Optional[Entry]]]:
        """The current versions and the body entry of `key` from one MGET; None when Redis
        is unavailable. Missing version keys read as "" unless `create_missing`."""
        assert self.l2 is not None
        reply = self.l2.fetch(key.versions, key.body)
        if reply is None:
            return None
        raw_versions, raw_body = reply[:-1], reply[-1]
        if create_missing and None in raw_versions:
            created = self._create_versions(key.versions)
            if created is None:
                return None
            raw_versions = list(created)
        return decode_versions(key.versions, raw_versions), Entry.decode(raw_body) if raw_body else None

    def _create_versions(self, version_keys: tuple[str, ...]) -> Optional[list[bytes]]:
        """Missing version keys created: on the tracking connection while it is up (its own
        writes are not echoed back, so what this read loads stays servable from L1), else on
        the data connection; None when Redis is unavailable."""
        assert self.l2 is not None
        if self.tracker is not None and self.l2.available:
            created = self.tracker.create_versions(version_keys)
            if created is not None:
                return created
        return self.l2.init_versions(version_keys)

    def _from_l2(self, key: CacheKey, entry: Entry, started: float) -> CacheResult:
        """An L2 answer, copied into L1."""
        self.l1.set(key.body, entry)
        return CacheResult(entry, "L2", time.perf_counter() - started)

    def _choose_fallback(self, record: Optional[L1Record], verdict: Optional[L1Verdict],
                         from_l2: Optional[Entry], versions: Optional[Versions], policy: Policy,
                         now: float) -> Optional[Entry]:
        """Step 3: the copy that may be served stale if loading is not possible: the newest
        one built under the current versions (with Redis unavailable: the L1 copy, unless
        its verdict, taken again now, rejects it)."""
        l1_copy: Optional[Entry] = None
        if record is not None and (verdict in _SERVABLE
                                   or (verdict is L1Verdict.ASK_L2 and now < record.entry.stale_until)):
            l1_copy = record.entry
        if versions is None:
            if l1_copy is not None and self._verdict(record, policy, now) is L1Verdict.REJECT:
                return None
            return l1_copy
        copies = [e for e in (l1_copy, from_l2) if e is not None and e.versions == versions]
        return max(copies, key=lambda e: e.created, default=None)

    def _acquire(self, key: CacheKey, fallback: Optional[Entry],
                 started: float) -> tuple[Optional[str], Optional[CacheResult]]:
        """Step 4a, the stampede lock: (our lock token, None) to load ourselves (no token when
        Redis is unavailable or the wait ran out), or (None, an answer): the fallback as
        STALE while another caller loads, or the value another caller stored."""
        l2 = self.l2
        if l2 is None or not l2.available:
            return None, None
        token = l2.try_lock(key.lock, self.config.lock_ttl_ms)
        if token is None and l2.available:
            if fallback is not None:
                return None, self._stale(fallback, started)
            waited = self._wait_for_winner(key)
            if isinstance(waited, Entry):
                return None, self._from_l2(key, waited, started)
            token = waited
        if token is not None:
            # The previous holder may have stored and released between our read and our
            # lock: look once more before loading again.
            read = self._read_l2(key)
            if read is not None and read[1] is not None and read[1].fresh_under(read[0], time.time()):
                l2.unlock(key.lock, token)
                return None, self._from_l2(key, read[1], started)
        return token, None

    def _wait_for_winner(self, key: CacheKey) -> Entry | str | None:
        """Poll L2 for the lock holder's value. Returns the entry, or our own lock token
        when the holder vanished without storing, or None after the wait bound."""
        assert self.l2 is not None
        self.stats.lock_waits += 1
        deadline = time.monotonic() + self.config.lock_wait_s
        pause = 0.002
        while time.monotonic() < deadline:
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
            read = self._read_l2(key)
            if read is None:
                return None
            if read[1] is not None and read[1].fresh_under(read[0], time.time()):
                return read[1]
            token = self.l2.try_lock(key.lock, self.config.lock_ttl_ms)
            if token is not None:
                return token
        return None

    def _load(self, key: CacheKey, loader: Loader, policy: Policy, versions: Versions,
              fallback: Optional[Entry], token: Optional[str], started: float) -> Optional[CacheResult]:
        """Steps 4b and 5: run the loader, store the entry in L2 (before our lock is
        released) and L1; step 6 when the source is unavailable."""
        t0 = time.perf_counter()
        entry: Optional[Entry] = None
        fill = Fill.under([v for _, v in versions])
        try:
            body = loader(fill)
            db_s = time.perf_counter() - t0
            if body is not None:
                entry = Entry.build(body, versions, policy.fresh_for(), policy.stale_s)
                self._store_l2(key, entry)
        except self.source_errors:
            self.stats.db.failure(time.perf_counter() - t0)
            return self._fail_safe(fallback, started)
        finally:
            if token is not None and self.l2 is not None:
                self.l2.unlock(key.lock, token)
        self.stats.db.record(True, db_s)
        if entry is None:
            return None
        self.l1.set(key.body, entry)
        return CacheResult(entry, "DB", time.perf_counter() - started, db_s, fill.source)

    def _store_l2(self, key: CacheKey, entry: Entry) -> bool:
        """Store in L2 only if every version is still the one read before loading."""
        if self.l2 is None:
            return False
        ttl_ms = int((entry.stale_until - entry.created) * 1000) + 1000
        return self.l2.store(key.versions, [v for _, v in entry.versions], key.body, entry.encode(), ttl_ms)

    def _fail_safe(self, fallback: Optional[Entry], started: float) -> CacheResult:
        """Step 6: a fallback younger than the maximum stale age, as STALE; else raise."""
        if fallback is not None and time.time() - fallback.created <= self.config.max_stale_age_s:
            return self._stale(fallback, started)
        raise CacheUnavailable("The database is unavailable and no recent copy of this answer is cached.")

    def _stale(self, entry: Entry, started: float) -> CacheResult:
        self.stats.stale_served += 1
        return CacheResult(entry, "STALE", time.perf_counter() - started)

    # -- writes ------------------------------------------------------------------------
    def invalidate(self, tenant: int, scopes: Iterable[str], ticket: str = "") -> bool:
        """Bump the version keys of `scopes` after a commit; the new values carry `ticket`
        (opaque here, see tickets.py). This container sees the bump at once; others through
        tracking. Returns False when Redis could not be told (the caller records the keys
        for replay)."""
        return self.bump_keys([self.keys.version(tenant, s) for s in scopes], ticket) or self.l2 is None

    def bump_keys(self, version_keys: Iterable[str], ticket: str = "") -> bool:
        """Bump already-built version keys (a write's, or the outbox's on replay), carrying
        `ticket`; this container stops serving what they cover at once. True when Redis
        took them."""
        keys = list(version_keys)
        values = self.l2.bump(keys, ticket) if self.l2 is not None else None
        told = values is not None
        if values is None:
            values = {k: new_token(ticket) for k in keys}
        self.coherence.bumped(values)
        if not told and self.l2 is not None:
            # Redis is down: the tracker resets local versions on every request while it is
            # disconnected, so the bump above is forgotten at once; drop the L1 copies this
            # write made stale, or this container would serve them (untracked max age).
            self.l1.drop_depending_on(keys)
        return told

    # -- operations --------------------------------------------------------------------
    def clear_l1(self) -> None:
        """Drop every L1 entry and every known version (tests, benchmarks)."""
        self.l1.clear()
        self.coherence.forget_all()

    def prewarm(self, key: CacheKey, loader: Loader, policy: Policy) -> bool:
        """Load a body and store it in L2 under the versions read before loading, so a write
        racing the pre-warm makes the store a no-op instead of leaving old data behind."""
        if self.l2 is None:
            return False
        raw = self.l2.init_versions(key.versions)
        if raw is None:
            return False
        versions = decode_versions(key.versions, raw)
        body = loader(Fill.under([v for _, v in versions]))
        if body is None:
            return False
        return self._store_l2(key, Entry.build(body, versions, policy.fresh_for(), policy.stale_s))
