"""Appointment status changes at the desk: booked -> checked_in -> completed, and
booked -> no_show once the slot has started. Cancelling has its own command.

Each change is one UPDATE whose WHERE holds the only status it may come from (and the
time condition), so of two concurrent writes to one appointment (a cancel and a check-in,
two check-ins) PostgreSQL lets exactly one change the row: the other re-checks the WHERE
against the committed row and updates nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from chalicelib.audit.actor import Actor
from chalicelib.audit.writes import audit_params, audited
from chalicelib.booking.errors import NotFound
from chalicelib.booking.locking import appointment_locks
from chalicelib.booking.models import StatusBody
from chalicelib.booking.outcome import Touched, WriteResult, error_body
from chalicelib.booking.queries import APPOINTMENT_JOINS, appointment_json_sql
from chalicelib.db import connection as db


@dataclass(frozen=True)
class Transition:
    """The one status a new status may come from, and whether the slot must have started."""

    source: str
    after_start: bool


TRANSITIONS: dict[str, Transition] = {
    "checked_in": Transition("booked", after_start=False),
    "completed": Transition("checked_in", after_start=False),
    "no_show": Transition("booked", after_start=True),
}

# `FOR UPDATE` in `target`: a write that lost a race reports the status it lost to. The
# slot and patient are locked first (locking.py): the updated row's constraint checks could
# otherwise wait on a booking of the same patient that waits on this row.
_STATUS_SQL = f"""
WITH {appointment_locks("", new_slot=False)},
     upd AS (
        UPDATE appointment a SET status = :status
        FROM target WHERE a.tenant_id = target.tenant_id AND a.id = target.id
          AND target.status = CAST(:source AS text)
          AND (NOT CAST(:after_start AS boolean) OR target.starts_at <= now())
        RETURNING a.*),
     {audited("upd", before="target")}
SELECT (SELECT count(*) FROM target), (SELECT status FROM target),
       (SELECT json_build_object('appointment', {appointment_json_sql()})::text FROM upd a {APPOINTMENT_JOINS}),
       (SELECT day FROM upd)
"""


def set_status(appointment_id: int, body: StatusBody, actor: Actor) -> WriteResult:
    """Move an appointment to `body.status`, audited as `actor`'s. 200 with the appointment; 404 unknown;
    409 `invalid_transition` for any change the table does not allow from its current
    status (or a no-show before the slot has started)."""
    rule: Optional[Transition] = TRANSITIONS.get(body.status)
    committed = db.write(
        _STATUS_SQL, t=body.clientId, id=appointment_id, status=body.status,
        source=rule.source if rule is not None else None, after_start=rule is not None and rule.after_start,
        **audit_params(actor, "status"))
    found, current, updated, day = committed.rows[0]
    if not found:
        raise NotFound(f"Appointment {appointment_id} does not exist for this clientId.")
    if updated is None:
        why = (f"it is {current.replace('_', ' ')}" if rule is None or current != rule.source
               else "its slot has not started yet")
        return WriteResult(409, error_body("invalid_transition",
                                           f"This appointment cannot become {body.status.replace('_', ' ')}: {why}."),
                           None)
    return WriteResult(200, updated, Touched.lists(body.clientId, day)).committed_at(committed.position)
