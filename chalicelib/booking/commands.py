"""Write commands: book, cancel and reschedule, each one PostgreSQL transaction.

The database, not any cache, decides every race: the partial unique index allows one live
appointment per slot, and exclusion constraints one per doctor and one per patient at any
instant. Contenders queue rather than deadlock: every write first locks the slot row(s) (by
id), then the patient row, then the appointment row, in the same statement, before it
inserts or updates (`locking.py` says why), so its constraint checks meet only committed
rows. A booking's `ON CONFLICT (tenant_id, slot_id) ... DO NOTHING` turns a taken slot
into "no row"; the other violations (and a reschedule's, which is an UPDATE) arrive as
SQLSTATE 23505/23P01 naming the constraint, and `outcome.conflict` turns them into 409
`slot_taken` or `patient_busy`. Unkeyed staff bookings, cancels and reschedules are single
statements in one round trip; keyed writes and patient bookings (which count the patient's
live future bookings in a second statement, after the locks, so the count sees what the
previous lock holder committed) are transactions. Each command returns what it touched so
the caller can invalidate caches after commit.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from pg8000.exceptions import DatabaseError

from chalicelib.audit.actor import Actor
from chalicelib.audit.writes import audit_params, audited
from chalicelib.booking.errors import Conflict, NotFound
from chalicelib.booking.idempotency import IdempotencyKey, request_hash, run_once
from chalicelib.booking.locking import BOOKABLE_SLOT, BOOKING_LOCKS, appointment_locks
from chalicelib.booking.models import BookingBody, CancelBody, RescheduleBody
from chalicelib.booking.outcome import Touched, WriteResult, conflict, error_body
from chalicelib.booking.queries import APPOINTMENT_JOINS, appointment_json_sql
from chalicelib.db import connection as db
from chalicelib.db.connection import sqlstate

_DEADLOCK = "40P01"
_APPOINTMENT_DOCUMENT = f"json_build_object('appointment', {appointment_json_sql()})::text"


def _book_sql(capped: bool) -> str:
    """The booking statement (slot, then patient locked first); `capped` adds the patient's
    live future bookings and refuses to insert when they reach :cap (run after
    `_LOCK_BOOKING_SQL`, so the count's snapshot is taken under the locks)."""
    held = (""",
     held AS (SELECT count(*) AS n FROM appointment WHERE tenant_id = :t AND patient_id = :patient
              AND status <> 'cancelled' AND starts_at > now())""" if capped else "")
    return f"""
WITH {BOOKING_LOCKS}{held},
     ins AS (
        INSERT INTO appointment (tenant_id, slot_id, patient_id, doctor_id, department_id,
                                 day, starts_at, ends_at, status, reason)
        SELECT s.tenant_id, s.id, pt.id, s.doctor_id, s.department_id, s.day, s.starts_at, s.ends_at,
               'booked', :reason
        FROM s, pt WHERE s.starts_at > now(){" AND (SELECT n FROM held) < :cap" if capped else ""}
        ON CONFLICT (tenant_id, slot_id) WHERE status <> 'cancelled' DO NOTHING
        RETURNING *),
     {audited("ins")}
SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM pt),
       (SELECT s.starts_at > now() FROM s), (SELECT s.doctor_id FROM s), (SELECT s.day FROM s),
       {"(SELECT n >= :cap FROM held)" if capped else "false"},
       (SELECT {_APPOINTMENT_DOCUMENT} FROM ins a {APPOINTMENT_JOINS})
"""


# The unkeyed staff booking: one statement, one round trip (params t, slot, patient, reason
# and the audit's).
BOOK_SQL = _book_sql(capped=False)
_BOOK_CAPPED_SQL = _book_sql(capped=True)
# Serializes one patient's capped bookings (in the lock order, slot then patient): the
# booking statement after it takes a new snapshot, so it counts every booking committed by
# the locks' previous holder.
_LOCK_BOOKING_SQL = f"WITH {BOOKING_LOCKS} SELECT count(*) FROM pt"

# `FOR UPDATE` in `target`: under concurrent writes to the row, the statement reads the row
# as committed by the last writer (the version it updates), not its starting snapshot, so
# the answer and the touched (doctor, day) are those of the row it changed.
_CANCEL_SQL = f"""
WITH {appointment_locks("{owner}", new_slot=False)},
     upd AS (
        UPDATE appointment a SET status = 'cancelled', cancelled_at = now(), cancel_reason = :reason
        FROM target WHERE a.tenant_id = target.tenant_id AND a.id = target.id
          AND target.status = 'booked' AND target.starts_at > now()
        RETURNING a.*),
     {audited("upd", before="target")}
SELECT (SELECT count(*) FROM target), (SELECT status FROM target), (SELECT starts_at > now() FROM target),
       (SELECT {_APPOINTMENT_DOCUMENT} FROM upd a {APPOINTMENT_JOINS}),
       (SELECT doctor_id FROM upd), (SELECT day FROM upd)
"""

_RESCHEDULE_SQL = f"""
WITH {appointment_locks("{owner}", new_slot=True)},
     s AS (SELECT * FROM slot WHERE tenant_id = :t AND id = :slot AND {BOOKABLE_SLOT}),
     upd AS (
        UPDATE appointment a
        SET slot_id = s.id, doctor_id = s.doctor_id, department_id = s.department_id, day = s.day,
            starts_at = s.starts_at, ends_at = s.ends_at, reason = coalesce(CAST(:reason AS text), a.reason)
        FROM target, s
        WHERE a.tenant_id = target.tenant_id AND a.id = target.id
          AND target.status = 'booked' AND target.starts_at > now() AND s.starts_at > now()
        RETURNING a.*),
     {audited("upd", before="target")}
SELECT (SELECT count(*) FROM target), (SELECT status FROM target), (SELECT starts_at > now() FROM target),
       (SELECT count(*) FROM s), (SELECT starts_at > now() FROM s),
       (SELECT {_APPOINTMENT_DOCUMENT} FROM upd a {APPOINTMENT_JOINS}),
       (SELECT doctor_id FROM target), (SELECT day FROM target), (SELECT doctor_id FROM upd), (SELECT day FROM upd)
"""


def _decided(attempt: Callable[[], WriteResult]) -> WriteResult:
    """`attempt()`, or the 409 answer when PostgreSQL refused it with a race-deciding violation.
    The lock order leaves writes of this module no cycle to wait in; an attempt that is still
    chosen as a deadlock's victim (against a write from elsewhere) was rolled back, and runs
    once more."""
    for last in (False, True):
        try:
            return attempt()
        except DatabaseError as exc:
            if sqlstate(exc) == _DEADLOCK and not last:
                continue
            answer = conflict(exc)
            if answer is None:
                raise
            return answer
    raise AssertionError("unreachable")


def _in_savepoint(conn: db.Transaction, attempt: Callable[[], WriteResult]) -> WriteResult:
    """`_decided(attempt)` inside an open transaction: a refused statement is rolled back to
    a savepoint, so the transaction goes on (to store the 409 as the key's answer)."""

    def rolled_back_on_refusal() -> WriteResult:
        conn.run("SAVEPOINT attempt")
        try:
            return attempt()
        except DatabaseError:
            conn.run("ROLLBACK TO SAVEPOINT attempt")
            raise

    return _decided(rolled_back_on_refusal)


def _answer_to(committed: db.Committed, answer: Callable[[list[list[Any]]], WriteResult]) -> WriteResult:
    """The answer to one committed statement's rows, stamped with its commit position."""
    return answer(committed.rows).committed_at(committed.position)


def _book_result(body: BookingBody, rows: list[list[Any]]) -> WriteResult:
    slot_found, patient_found, in_future, doctor_id, day, at_cap, created = rows[0]
    if not slot_found:
        raise NotFound(f"Slot {body.slotId} does not exist for this clientId or is no longer offered.")
    if not patient_found:
        raise NotFound(f"Patient {body.patientId} does not exist for this clientId.")
    if not in_future:
        return WriteResult(409, error_body("slot_taken", "This slot has already started and cannot be booked."), None)
    if at_cap:
        return WriteResult(409, error_body("booking_limit", "This patient already holds the most upcoming"
                                           " appointments allowed; cancel one first."), None)
    if created is None:
        return WriteResult(409, error_body("slot_taken", "This slot is already booked."), None)
    return WriteResult(201, created, Touched.slots(body.clientId, (doctor_id, day)))


def book(body: BookingBody, actor: Actor, idempotency: Optional[IdempotencyKey] = None,
         patient_cap: Optional[int] = None) -> WriteResult:
    """Book a slot for a patient, audited as `actor`'s. 201 with the appointment; 409
    `slot_taken`, `patient_busy`, or `booking_limit` (with `patient_cap`: the patient already
    holds that many live future appointments); 404 unknowns. With an Idempotency-Key, see
    `idempotency.run_once`."""
    params: dict[str, object] = {"t": body.clientId, "slot": body.slotId, "patient": body.patientId,
                                 "reason": body.reason, **audit_params(actor, "book")}
    sql = BOOK_SQL
    if patient_cap is not None:
        params["cap"], sql = patient_cap, _BOOK_CAPPED_SQL

    def in_transaction(conn: db.Transaction) -> WriteResult:
        if patient_cap is not None:
            conn.run(_LOCK_BOOKING_SQL, t=body.clientId, slot=body.slotId, patient=body.patientId)
        return _book_result(body, conn.run(sql, **params))

    if idempotency is not None:
        return run_once(idempotency, "book", request_hash(body.model_dump()),
                        lambda conn: _in_savepoint(conn, lambda: in_transaction(conn)))
    if patient_cap is None:
        # One statement, atomic on its own: no BEGIN/COMMIT round trips.
        return _decided(lambda: _answer_to(db.write(sql, **params), lambda rows: _book_result(body, rows)))

    def locked() -> WriteResult:
        with db.transaction() as conn:
            result = in_transaction(conn)
        return result.committed_at(conn.position)

    return _decided(locked)


def _owner(params: dict[str, object], patient_id: Optional[int]) -> str:
    """The SQL condition restricting a write to the patient's own appointment (if a patient)."""
    if patient_id is None:
        return ""
    params["pid"] = patient_id
    return "AND patient_id = :pid"


def cancel(appointment_id: int, body: CancelBody, actor: Actor, patient_id: Optional[int] = None) -> WriteResult:
    """Cancel a booked future appointment, audited as `actor`'s. 200, 404 (unknown, or not
    the patient's own), 409 `not_cancellable` (already cancelled, checked in, completed,
    no-show, or started)."""
    params: dict[str, object] = {"t": body.clientId, "id": appointment_id, "reason": body.reason,
                                 **audit_params(actor, "cancel")}
    sql = _CANCEL_SQL.format(owner=_owner(params, patient_id))
    committed = db.write(sql, **params)
    found, status, in_future, updated, doctor_id, day = committed.rows[0]
    if not found:
        raise NotFound(f"Appointment {appointment_id} does not exist for this clientId.")
    if updated is None:
        why = f"it is {status.replace('_', ' ')}" if status != "booked" else "it has already started"
        raise Conflict(f"This appointment cannot be cancelled: {why}.", code="not_cancellable")
    return WriteResult(200, updated, Touched.slots(body.clientId, (doctor_id, day))).committed_at(committed.position)


def _reschedule_result(appointment_id: int, body: RescheduleBody, rows: list[list[Any]]) -> WriteResult:
    (found, status, in_future, slot_found, slot_in_future, updated,
     old_doctor, old_day, new_doctor, new_day) = rows[0]
    if not found:
        raise NotFound(f"Appointment {appointment_id} does not exist for this clientId.")
    if not slot_found:
        raise NotFound(f"Slot {body.slotId} does not exist for this clientId or is no longer offered.")
    if updated is None and not (status == "booked" and in_future):
        why = f"it is {str(status).replace('_', ' ')}" if status != "booked" else "it has already started"
        return WriteResult(409, error_body("not_reschedulable", f"This appointment cannot be rescheduled: {why}."),
                           None)
    if updated is None:
        return WriteResult(409, error_body("slot_taken", "This slot has already started and cannot be booked."), None)
    return WriteResult(200, updated, Touched.slots(body.clientId, (old_doctor, old_day), (new_doctor, new_day)))


def reschedule(appointment_id: int, body: RescheduleBody, actor: Actor, patient_id: Optional[int] = None,
               idempotency: Optional[IdempotencyKey] = None) -> WriteResult:
    """Move a booked future appointment to another free slot in one statement, audited as
    `actor`'s: the old slot is freed and the new one taken together, or nothing changes. 200 with the appointment
    (its new slot; `reason` replaced when given); 404 (unknown appointment, not the
    patient's own, unknown slot); 409 `not_reschedulable`, `slot_taken` or `patient_busy`.
    Rescheduling into the slot it already holds changes nothing and answers 200."""
    params: dict[str, object] = {"t": body.clientId, "id": appointment_id, "slot": body.slotId,
                                 "reason": body.reason, **audit_params(actor, "reschedule")}
    sql = _RESCHEDULE_SQL.format(owner=_owner(params, patient_id))
    if idempotency is None:
        return _decided(lambda: _answer_to(db.write(sql, **params),
                                           lambda rows: _reschedule_result(appointment_id, body, rows)))
    hashed = request_hash({"appointmentId": appointment_id, **body.model_dump()})
    return run_once(idempotency, "reschedule", hashed, lambda conn: _in_savepoint(
        conn, lambda: _reschedule_result(appointment_id, body, conn.run(sql, **params))),
        authorize=lambda conn: _require_own(conn, body.clientId, appointment_id, patient_id))


_OWN_APPOINTMENT_SQL = "SELECT 1 FROM appointment WHERE tenant_id = :t AND id = :id AND patient_id = :pid"


def _require_own(conn: db.Transaction, tenant: int, appointment_id: int, patient_id: Optional[int]) -> None:
    """404, as for a fresh request, unless a patient's appointment is their own (staff: any)."""
    if patient_id is not None and not conn.run(_OWN_APPOINTMENT_SQL, t=tenant, id=appointment_id, pid=patient_id):
        raise NotFound(f"Appointment {appointment_id} does not exist for this clientId.")
