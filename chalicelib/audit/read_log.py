"""Reads of patient data in the audit trail, buffered in memory so a cached read (an L1
hit) pays one list append and never a database round trip.

Buffered events are written in one multi-row INSERT when the oldest is `max_age_s` old or
`max_events` are waiting, checked at the start and at the end of every request (a frozen
Lambda container runs nothing between invocations, so the next request's start flushes
what the last one left). What a crash or a recycled container can lose: the events of its
last `max_age_s` seconds, and (asynchronous commit) those of PostgreSQL's last fraction of
a second if PostgreSQL itself crashes (docs/audit.md). At most `capacity` events wait; while PostgreSQL
refuses the INSERT, later reads are counted in `dropped` rather than buffered.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from chalicelib.audit.actor import Actor
from chalicelib.lazy import lazy_module
from chalicelib.observability import error_fields, request_scope

if TYPE_CHECKING:
    from chalicelib.db import connection as db
else:
    db = lazy_module("chalicelib.db.connection", globals())

log = logging.getLogger(__name__)

_INSERT_SQL = """
INSERT INTO audit_event (tenant_id, at, actor_sub, actor_role, actor_issuer, action, patient_id, request_id, details)
SELECT e.tenant_id, to_timestamp(e.at), e.sub, e.role, e.issuer, e.action, e.patient_id, e.request_id, e.details::jsonb
FROM unnest(CAST(:tenants AS integer[]), CAST(:ats AS float8[]), CAST(:subs AS text[]), CAST(:roles AS text[]),
            CAST(:issuers AS text[]), CAST(:actions AS text[]), CAST(:patients AS integer[]),
            CAST(:requests AS text[]), CAST(:details AS text[]))
     AS e(tenant_id, at, sub, role, issuer, action, patient_id, request_id, details)"""
RETRY_AFTER_FAILURE_S = 5.0


@dataclass(frozen=True)
class ReadEvent:
    """What one read plan records on every read: its actor (the request id is added per
    read), action, patient (if one) and details as JSON text (never a search term)."""

    actor: Actor
    action: str
    patient_id: Optional[int]
    details: str


class ReadLog:
    """A bounded buffer of read events and its flushes (the runtime owns the container's:
    a new runtime, after a reset or in a copied process, starts with an empty one)."""

    def __init__(self, max_age_s: float = 1.0, max_events: int = 1000, capacity: int = 10000) -> None:
        self.max_age_s, self.max_events, self.capacity = max_age_s, max_events, capacity
        self.pending: list[tuple[ReadEvent, Optional[str], float]] = []
        self.oldest_at = 0.0
        self.retry_at = 0.0
        self.dropped = 0
        self.lock = threading.Lock()

    def record(self, event: ReadEvent) -> None:
        """Buffer one read of the current request (dropped and counted when full)."""
        now = time.time()
        with self.lock:
            if not self.pending:
                self.oldest_at = now
            elif len(self.pending) >= self.capacity:
                self.dropped += 1
                return
            self.pending.append((event, request_scope.request_id(), now))

    def flush_if_due(self) -> None:
        """Write the buffer when its oldest event is `max_age_s` old or it holds
        `max_events` (not within RETRY_AFTER_FAILURE_S of a failed write)."""
        if not self.pending:
            return
        now = time.time()
        due = len(self.pending) >= self.max_events or now - self.oldest_at >= self.max_age_s
        if due and now >= self.retry_at:
            self.flush()

    def flush(self) -> None:
        """Write every buffered event in one INSERT; on failure keep them for a retry
        (a request never fails for it: one WARNING with the count, no event content)."""
        with self.lock:
            batch, self.pending = self.pending, []
        if not batch:
            return
        try:
            _insert(batch)
        except Exception as exc:  # noqa: BLE001 - auditing reads must never fail a request
            self._keep(batch)
            log.warning("audit: %d patient-read events not written yet", len(batch), extra=error_fields(exc))

    def _keep(self, batch: list[tuple[ReadEvent, Optional[str], float]]) -> None:
        """Put a failed batch back before newer events (the oldest dropped past capacity)."""
        with self.lock:
            merged = batch + self.pending
            self.dropped += max(0, len(merged) - self.capacity)
            self.pending = merged[-self.capacity:]
            self.oldest_at = self.pending[0][2]
            self.retry_at = time.time() + RETRY_AFTER_FAILURE_S


def _insert(batch: list[tuple[ReadEvent, Optional[str], float]]) -> None:
    """One INSERT of the batch, committed without waiting for the WAL flush: these events
    are already ones a crash may lose, and the flushing request does not wait on a disk."""
    with db.transaction() as conn:
        conn.run("SET LOCAL synchronous_commit TO off")
        conn.run(_INSERT_SQL, **_columns(batch))


def _columns(batch: list[tuple[ReadEvent, Optional[str], float]]) -> dict[str, list[Any]]:
    """The INSERT's parameters: one array per column."""
    return {"tenants": [e.actor.tenant for e, _, _ in batch], "ats": [at for _, _, at in batch],
            "subs": [e.actor.sub for e, _, _ in batch], "roles": [e.actor.role for e, _, _ in batch],
            "issuers": [e.actor.issuer for e, _, _ in batch], "actions": [e.action for e, _, _ in batch],
            "patients": [e.patient_id for e, _, _ in batch], "requests": [rid for _, rid, _ in batch],
            "details": [e.details for e, _, _ in batch]}

