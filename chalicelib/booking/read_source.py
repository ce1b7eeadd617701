"""Where the cached reads' loaders read: the primary, or the read replica of
DATABASE_READ_URL when it has replayed every write the fill's versions stand for.

The ticket flow (docs/caching.md, "Read replicas"):

1. A write commits on the primary; on the same connection `connection.py` reads the WAL
   insert position (at or after the commit record), and `invalidation.after_write` bumps
   the version keys with `commit_ticket(lsn)`: the LSN as 16 hex digits, so tickets order
   as strings and a bump keeps the higher one.
2. A fill reads the versions first (as always), and the cache hands the loader a `Fill`
   whose ticket is their highest, L (tickets.py); the loader passes it to `run`/`scalar`.
3. Here the replica is asked `pg_last_wal_replay_lsn() >= L`, and only when it says yes
   does the loader's query run there, as the next statement. Not in the same statement: a
   statement's snapshot is taken before its functions run, so a check inside the query
   can pass for a replay that happened after the query's snapshot, which then lacks the
   write (the bench's replica workload caught such a fill). A later statement's snapshot
   includes everything replayed before it starts. Not yet: retry with short pauses for at
   most DB_REPLICA_WAIT_MS, then read the primary. So a fill never stores pre-write rows
   under post-write versions.
4. A replica that fails (unreachable, refused, a recovery conflict) sends the read to the
   primary; a connection failure also keeps the replica out for DB_REPLICA_COOLDOWN
   seconds (one probe after it), so a dead replica costs nothing per request.

Without DATABASE_READ_URL, `scalar` and `run` are the primary's, after one global read.
Either way `run` notes where it read on the Fill ("replica" or "primary"), which the cache
returns with the answer (Server-Timing). A read outside any fill (a write's answer, say)
passes `primary_fill()`: it reads the primary, never a replica that may lag.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Optional

from chalicelib import runtime
from chalicelib.cache.breaker import CircuitBreaker
from chalicelib.cache.tickets import Fill
from chalicelib.db import connection as db
from chalicelib.db.errors import DatabaseUnavailable, PoolExhausted
from chalicelib.settings import get_settings

log = logging.getLogger(__name__)

TICKET_WIDTH = 16
# The ticket of a write whose commit LSN could not be read: no replica ever reaches it,
# so fills under it read the primary (at once, without waiting) until the next bump.
PRIMARY_ONLY = "f" * TICKET_WIDTH
# Has the replica replayed the WAL up to the fill's ticket? Asked in its own statement,
# before the query's (see the module's doc, step 3).
_REPLAYED = "SELECT pg_last_wal_replay_lsn() >= CAST(:hb_min_lsn AS pg_lsn)"
_FIRST_PAUSE_S = 0.002
_MAX_PAUSE_S = 0.01


def commit_ticket(lsn: Optional[int]) -> str:
    """The ticket of a write committed at `lsn` (None: unknown, so primary only)."""
    if lsn is None:
        return PRIMARY_ONLY
    return f"{lsn:0{TICKET_WIDTH}x}"


def lsn_text(lsn: int) -> str:
    """An LSN as PostgreSQL writes it (`X/Y`)."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


class ReplicaState:
    """The replica's owner: its breaker (the cache's CircuitBreaker: one failure keeps the
    replica out for DB_REPLICA_COOLDOWN seconds, then one probe) and what it did, for
    health and tests: reads served by it, reads sent to the primary because it lagged past
    the wait, or failed."""

    def __init__(self, cooldown_s: float) -> None:
        self.breaker = CircuitBreaker(1, cooldown_s)
        self.served = 0
        self.lagged = 0
        self.failed = 0
        self.last_error = ""

    def failure(self, exc: BaseException) -> None:
        """A connection failure: count it and keep the replica out for the cool-down."""
        self.failed += 1
        self.last_error = type(exc).__name__
        self.breaker.failure()


def replica_state() -> ReplicaState:
    """This container's replica state (the runtime's)."""
    return runtime.current().replica_state


def primary_fill() -> Fill:
    """The fill of a read that must see every committed write (outside the cache's fills)."""
    return Fill(PRIMARY_ONLY)


def scalar(fill: Fill, sql: str, **params: Any) -> Any:
    """The first column of the first row of a loader's query (None when no row)."""
    rows = run(fill, sql, **params)
    return rows[0][0] if rows else None


def run(fill: Fill, sql: str, **params: Any) -> list[list[Any]]:
    """A loader's query: on the replica when it has replayed the fill's ticket (see the
    module's doc), else on the primary; notes which on the fill (with a replica configured)."""
    replica = db.replica_pool()
    if replica is None:
        return db.run(sql, **params)
    rows = _on_replica(replica, fill.ticket, sql, params)
    fill.source = "primary" if rows is None else "replica"
    return db.run(sql, **params) if rows is None else rows


def _on_replica(replica: db.Pool, ticket: str, sql: str, params: dict[str, Any]) -> Optional[list[list[Any]]]:
    """The query's rows from the replica, or None: not allowed (breaker), not replayed far
    enough within the wait (`ticket`), or failed."""
    state = replica_state()
    if ticket == PRIMARY_ONLY or not state.breaker.allow():
        return None
    settings = get_settings()
    try:
        if not ticket:  # no write is waited for (versions made on read, or the outbox)
            rows = db.run_on(replica, sql, **params)
            state.breaker.success()
            state.served += 1
            return rows
        min_lsn = lsn_text(int(ticket, 16))
        deadline = time.monotonic() + settings.replica_wait_ms / 1000.0
        pause = _FIRST_PAUSE_S
        while True:
            replayed = db.run_on(replica, _REPLAYED, hb_min_lsn=min_lsn)[0][0]
            state.breaker.success()
            if replayed:  # the query's snapshot, taken after this, holds every write up to L
                rows = db.run_on(replica, sql, **params)
                state.served += 1
                return rows
            left = deadline - time.monotonic()
            if left <= 0:
                state.lagged += 1
                return None
            time.sleep(min(pause, left))
            pause = min(pause * 2, _MAX_PAUSE_S)
    except (DatabaseUnavailable, PoolExhausted) as exc:
        state.failure(exc)
        log.warning("read replica unavailable; reading the primary", extra={"error": type(exc).__name__})
        return None
    except Exception as exc:  # noqa: BLE001 - e.g. a recovery conflict: this read goes to the primary
        state.breaker.success()  # the replica answered (it is up); only this read moves
        state.failed += 1
        state.last_error = type(exc).__name__
        return None


def replica_health() -> Optional[str]:
    """"ok" or "down" for /api/health; None when no replica is configured."""
    replica = db.replica_pool()
    if replica is None:
        return None
    state = replica_state()
    if not state.breaker.allow():  # left out after a failure: no connect attempt per health check
        return "down"
    try:
        db.run_on(replica, "SELECT 1")
    except (DatabaseUnavailable, PoolExhausted) as exc:
        state.failure(exc)
        return "down"
    state.breaker.success()
    return "ok"
