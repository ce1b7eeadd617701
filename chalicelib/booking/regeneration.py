"""A doctor's future free slots follow their schedule (working hours, absences, active
flag), inside the caller's transaction.

Order of a regeneration: lock the doctor row, then every future slot of the doctor in id
order (bookings lock slots first too, so a booking racing with a schedule change either
committed before, and its appointment is seen here, or waits and then finds its slot gone);
list the live future appointments the schedule no longer covers (outside working hours or
inside an absence): 409 `schedule_conflict` unless the caller asked to cancel them; then
withdraw the free slots the schedule no longer plans and offer the planned ones that are
missing. A slot holding a live appointment is never touched; a planned slot overlapping it
is not offered. A free slot that cancelled appointments still refer to is withdrawn
(`slot.withdrawn_at`), any other is deleted.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import orjson

from chalicelib.booking.errors import Conflict
from chalicelib.booking.queries import APPOINTMENT_JOINS, appointment_json_sql
from chalicelib.booking.slot_plan import OFFER_AGAIN_SQL, PLANNED_SLOTS
from chalicelib.db import connection as db
from chalicelib.settings import get_settings

# The doctor row (serializes regenerations of one doctor) with NO KEY UPDATE, so a booking's
# foreign-key check (KEY SHARE on the doctor) never waits on it: a booking that holds a slot
# lock would otherwise wait here while this waits on that slot, a deadlock. Then every future
# slot of the doctor in id order, as bookings lock them (chalicelib/booking/locking.py).
_LOCK_SQL = """
WITH doc AS MATERIALIZED (SELECT id FROM doctor WHERE tenant_id = :t AND id = :doctor FOR NO KEY UPDATE)
SELECT count(*) FROM (SELECT id FROM slot WHERE tenant_id = :t AND doctor_id = (SELECT id FROM doc)
                      AND starts_at > now() ORDER BY id FOR NO KEY UPDATE) held"""

_LIVE_FUTURE = """a.tenant_id = :t AND a.doctor_id = :doctor AND a.status <> 'cancelled' AND a.starts_at > now()"""

# Live future appointments outside the doctor's working hours of their local weekday, or
# overlapping one of the doctor's absences.
_STRANDED_SQL = f"""
SELECT a.id, a.starts_at, a.patient_id FROM appointment a JOIN tenant t ON t.id = a.tenant_id
WHERE {_LIVE_FUTURE}
  AND (EXISTS (SELECT 1 FROM absence ab WHERE ab.tenant_id = a.tenant_id AND ab.doctor_id = a.doctor_id
                 AND ab.starts_at < a.ends_at AND ab.ends_at > a.starts_at)
       OR NOT EXISTS (SELECT 1 FROM working_hours w
                      WHERE w.tenant_id = a.tenant_id AND w.doctor_id = a.doctor_id
                        AND w.weekday = extract(isodow FROM a.day)
                        AND a.day + w.starts <= a.starts_at AT TIME ZONE t.time_zone
                        AND a.ends_at AT TIME ZONE t.time_zone <= a.day + w.ends))
ORDER BY a.starts_at, a.id"""

_CANCEL_SQL = f"""
WITH upd AS (
    UPDATE appointment a SET status = 'cancelled', cancelled_at = now(), cancel_reason = :reason
    WHERE {_LIVE_FUTURE} AND a.id = ANY(CAST(:ids AS bigint[]))
    RETURNING a.*)
SELECT {appointment_json_sql()}::text, a.day FROM upd a {APPOINTMENT_JOINS} ORDER BY a.starts_at, a.id"""

_WITHDRAW_SQL = f"""
WITH {PLANNED_SLOTS},
gone AS (
    SELECT s.id, EXISTS (SELECT 1 FROM appointment a WHERE a.tenant_id = s.tenant_id AND a.slot_id = s.id)
           AS referred
    FROM slot s
    WHERE s.tenant_id = :t AND s.doctor_id = :doctor AND s.starts_at > now() AND s.withdrawn_at IS NULL
      AND s.day <= (SELECT max(day) FROM tenant_day)
      AND NOT EXISTS (SELECT 1 FROM appointment a WHERE a.tenant_id = s.tenant_id AND a.slot_id = s.id
                      AND a.status <> 'cancelled')
      AND NOT EXISTS (SELECT 1 FROM planned p WHERE p.starts_at = s.starts_at AND p.ends_at = s.ends_at
                      AND p.department_id = s.department_id)),
deleted AS (
    DELETE FROM slot s USING gone WHERE s.tenant_id = :t AND s.id = gone.id AND NOT gone.referred
    RETURNING s.day),
withdrawn AS (
    UPDATE slot s SET withdrawn_at = now() FROM gone WHERE s.tenant_id = :t AND s.id = gone.id AND gone.referred
    RETURNING s.day)
SELECT day FROM deleted UNION ALL SELECT day FROM withdrawn"""


@dataclass(frozen=True)
class Regenerated:
    """What a regeneration changed: slots added and removed, the appointments it cancelled
    (their JSON documents) and the local days whose slots or appointment lists changed."""

    added: int
    removed: int
    cancelled: tuple[Any, ...]
    slot_days: tuple[dt.date, ...]
    list_days: tuple[dt.date, ...]


def follow_schedule(conn: db.Transaction, tenant: int, doctor: int, cancel_appointments: bool = False,
                    cancel_reason: str = "The doctor's schedule changed") -> Regenerated:
    """Make the doctor's future free slots over the horizon match the schedule written in
    this transaction. 409 `schedule_conflict` (details: the stranded appointments) unless
    `cancel_appointments`, which cancels them with `cancel_reason`."""
    conn.run(_LOCK_SQL, t=tenant, doctor=doctor)
    stranded = conn.run(_STRANDED_SQL, t=tenant, doctor=doctor)
    if stranded and not cancel_appointments:
        raise Conflict(f"{len(stranded)} booked appointment(s) would fall outside the schedule; send"
                            ' "cancelAppointments": true to cancel them.', code="schedule_conflict",
                       details=[{"appointmentId": a, "startsAt": s.isoformat(), "patientId": p}
                                for a, s, p in stranded])
    cancelled = conn.run(_CANCEL_SQL, t=tenant, doctor=doctor, reason=cancel_reason,
                         ids=[row[0] for row in stranded]) if stranded else []
    plan = {"t": tenant, "doctor": doctor, "tenant_id": tenant, "doctor_id": doctor, "start_day": None,
            "end_day": None, "horizon_days": get_settings().slot_horizon_days}
    removed = [row[0] for row in conn.run(_WITHDRAW_SQL, **plan)]
    added = [row[0] for row in conn.run(OFFER_AGAIN_SQL, **plan, future_only=True)]
    list_days = tuple(dict.fromkeys(day for _, day in cancelled))
    return Regenerated(len(added), len(removed), tuple(orjson.loads(doc) for doc, _ in cancelled),
                       tuple(sorted(set(removed) | set(added) | set(list_days))), list_days)
