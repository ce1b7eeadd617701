"""Write commands: book and cancel, each one PostgreSQL transaction.

The database, not any cache, prevents double booking: the partial unique index allows one
live appointment per slot and the exclusion constraint one per doctor at any instant;
`INSERT ... ON CONFLICT DO NOTHING` turns either conflict into "no row" without an error.
Book (without an Idempotency-Key) and cancel are single statements, run on their own in one
round trip; a keyed booking is a transaction. Each command returns what it touched so the
caller can invalidate caches after commit.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Optional

import orjson

from chalicelib.booking.models import BookingBody, CancelBody
from chalicelib.booking.queries import APPOINTMENT_JOINS, appointment_json_sql
from chalicelib.db import connection as db
from chalicelib.http import ApiError


@dataclass(frozen=True)
class Touched:
    """What a write changed: tenant, the slot's doctor and local day."""

    tenant: int
    doctor_id: int
    day: dt.date


@dataclass(frozen=True)
class WriteResult:
    """A command's answer (status and JSON body) and what it touched (None if nothing)."""

    status: int
    body: str
    touched: Optional[Touched]


_BOOK_SQL = f"""
WITH s AS (SELECT * FROM slot WHERE tenant_id = :t AND id = :slot),
     pt AS (SELECT id FROM patient WHERE tenant_id = :t AND id = :patient),
     ins AS (
        INSERT INTO appointment (tenant_id, slot_id, patient_id, doctor_id, department_id,
                                 day, starts_at, ends_at, status, reason)
        SELECT s.tenant_id, s.id, pt.id, s.doctor_id, s.department_id, s.day, s.starts_at, s.ends_at,
               'booked', :reason
        FROM s, pt WHERE s.starts_at > now()
        ON CONFLICT DO NOTHING
        RETURNING *)
SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM pt),
       (SELECT s.starts_at > now() FROM s), (SELECT s.doctor_id FROM s), (SELECT s.day FROM s),
       (SELECT json_build_object('appointment', {appointment_json_sql()})::text
        FROM ins a {APPOINTMENT_JOINS})
"""

_CANCEL_SQL = f"""
WITH target AS (SELECT * FROM appointment WHERE tenant_id = :t AND id = :id {{owner}}),
     upd AS (
        UPDATE appointment a SET status = 'cancelled', cancelled_at = now(), cancel_reason = :reason
        FROM target WHERE a.tenant_id = target.tenant_id AND a.id = target.id
          AND a.status = 'booked' AND a.starts_at > now()
        RETURNING a.*)
SELECT (SELECT count(*) FROM target), (SELECT status FROM target), (SELECT starts_at > now() FROM target),
       (SELECT json_build_object('appointment', {appointment_json_sql()})::text FROM upd a {APPOINTMENT_JOINS}),
       (SELECT doctor_id FROM upd), (SELECT day FROM upd)
"""


def _book_params(body: BookingBody) -> dict[str, object]:
    return {"t": body.clientId, "slot": body.slotId, "patient": body.patientId, "reason": body.reason}


def _book_result(body: BookingBody, rows: list[list[object]]) -> WriteResult:
    slot_found, patient_found, in_future, doctor_id, day, created = rows[0]
    if not slot_found:
        raise ApiError(404, f"Slot {body.slotId} does not exist for this clientId.")
    if not patient_found:
        raise ApiError(404, f"Patient {body.patientId} does not exist for this clientId.")
    if not in_future:
        return WriteResult(409, _error_body("slot_taken", "This slot has already started and cannot be booked."), None)
    if created is None:
        return WriteResult(409, _error_body("slot_taken", "This slot is already booked."), None)
    return WriteResult(201, created, Touched(body.clientId, doctor_id, day))  # type: ignore[arg-type]


def _error_body(code: str, message: str) -> str:
    return orjson.dumps({"error": {"code": code, "message": message}}).decode()


def _request_hash(body: BookingBody) -> str:
    return hashlib.sha256(orjson.dumps(body.model_dump(), option=orjson.OPT_SORT_KEYS)).hexdigest()


def book(body: BookingBody, idempotency_key: Optional[str] = None) -> WriteResult:
    """Book a slot for a patient. 201 with the appointment, 409 `slot_taken`, 404 unknowns.

    With an Idempotency-Key, same-key requests are serialized by a transaction-scoped
    advisory lock; the first answer (201 or 409) is stored with the booking in the same
    transaction and returned again for every retry, creating nothing.
    """
    if idempotency_key is None:
        # One statement, atomic on its own: no BEGIN/COMMIT round trips.
        return _book_result(body, db.write(_BOOK_SQL, **_book_params(body)))
    request_hash = _request_hash(body)
    with db.transaction() as conn:
        conn.run("SELECT pg_advisory_xact_lock(hashtextextended(:k, :t))", k=idempotency_key, t=body.clientId)
        stored = conn.run(
            "SELECT request_hash, status_code, body FROM idempotency_key WHERE tenant_id = :t AND key = :k",
            t=body.clientId, k=idempotency_key,
        )
        if stored:
            previous_hash, status, previous_body = stored[0]
            if previous_hash != request_hash:
                raise ApiError(400, "This Idempotency-Key was already used with a different request.")
            return WriteResult(status, previous_body, None)
        result = _book_result(body, conn.run(_BOOK_SQL, **_book_params(body)))
        conn.run(
            "INSERT INTO idempotency_key (tenant_id, key, request_hash, status_code, body)"
            " VALUES (:t, :k, :h, :s, :b)",
            t=body.clientId, k=idempotency_key, h=request_hash, s=result.status, b=result.body,
        )
        return result


def cancel(appointment_id: int, body: CancelBody, patient_id: Optional[int] = None) -> WriteResult:
    """Cancel a booked future appointment. 200, 404 (unknown, or not the patient's own),
    409 `not_cancellable` (already cancelled, checked in, completed, no-show, or started)."""
    owner = "AND patient_id = :pid" if patient_id is not None else ""
    params = {"t": body.clientId, "id": appointment_id, "reason": body.reason}
    if patient_id is not None:
        params["pid"] = patient_id
    found, status, in_future, updated, doctor_id, day = db.write(_CANCEL_SQL.format(owner=owner), **params)[0]
    if not found:
        raise ApiError(404, f"Appointment {appointment_id} does not exist for this clientId.")
    if updated is None:
        why = f"it is {status.replace('_', ' ')}" if status != "booked" else "it has already started"
        raise ApiError(409, f"This appointment cannot be cancelled: {why}.", code="not_cancellable")
    return WriteResult(200, updated, Touched(body.clientId, doctor_id, day))
