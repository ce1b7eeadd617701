"""Schedule management: departments, doctors, working hours and absences. Each action is
one function that writes inside the caller's transaction (`conn`) and returns its answer
and what it touched (the catalog always; the slot days a regeneration changed), so the
caller commits, then invalidates through the same after-write path as bookings."""
from __future__ import annotations

from typing import Any, Optional

import orjson

from chalicelib.booking import scopes
from chalicelib.booking.admin_models import (
    AbsenceBody,
    DepartmentBody,
    DepartmentChange,
    DoctorBody,
    DoctorChange,
    WorkingHoursBody,
    WorkingPeriod,
)
from chalicelib.booking.errors import Conflict, InvalidRequest, NotFound
from chalicelib.booking.outcome import Touched, WriteResult
from chalicelib.booking.regeneration import Regenerated, follow_schedule
from chalicelib.db import connection as db

_DEPARTMENT_COLUMNS = "id, name, active"
_DOCTOR_COLUMNS = "id, name, department_id, specialty, active"


def _department(row: list[Any]) -> dict[str, Any]:
    return {"id": row[0], "name": row[1], "active": row[2]}


def _doctor(row: list[Any]) -> dict[str, Any]:
    return {"id": row[0], "name": row[1], "departmentId": row[2], "specialty": row[3], "active": row[4]}


def _catalog_changed(tenant: int, status: int, body: dict[str, Any], doctor: Optional[int] = None,
                     regenerated: Optional[Regenerated] = None) -> WriteResult:
    """The answer of a catalog write; with a regeneration, its slot and list days too."""
    if regenerated is None or doctor is None:
        return WriteResult(status, orjson.dumps(body).decode(), Touched(tenant, (), (), (scopes.CATALOG,)))
    touched = Touched(tenant, tuple((doctor, day) for day in regenerated.slot_days), regenerated.list_days,
                      (scopes.CATALOG,))
    return WriteResult(status, orjson.dumps(body).decode(), touched)


def _require_active_department(conn: db.Transaction, tenant: int, department: int) -> None:
    """400 naming departmentId unless the tenant has this active department."""
    if not conn.run("SELECT 1 FROM department WHERE tenant_id = :t AND id = :d AND active", t=tenant, d=department):
        raise InvalidRequest(f"Invalid parameter 'departmentId': no active department {department} in this tenant.",
                             details=[{"field": "departmentId",
                                       "message": "is not an active department of this tenant"}])


def create_department(conn: db.Transaction, body: DepartmentBody) -> WriteResult:
    """POST /api/admin/departments: 201 with the new active department."""
    row = conn.run(f"INSERT INTO department (tenant_id, name) VALUES (:t, :name) RETURNING {_DEPARTMENT_COLUMNS}",
                   t=body.clientId, name=body.name)[0]
    return _catalog_changed(body.clientId, 201, {"department": _department(row)})


def change_department(conn: db.Transaction, department: int, body: DepartmentChange) -> WriteResult:
    """PATCH /api/admin/departments/{id}: rename and/or (de)activate; 404 unknown; 409
    `department_in_use` when deactivating a department that still has active doctors."""
    if body.active is False and conn.run(
            "SELECT 1 FROM doctor WHERE tenant_id = :t AND department_id = :d AND active LIMIT 1",
            t=body.clientId, d=department):
        raise Conflict("This department still has active doctors; move or deactivate them first.",
                       code="department_in_use")
    rows = conn.run(f"""UPDATE department SET name = coalesce(CAST(:name AS text), name),
                                           active = coalesce(CAST(:active AS boolean), active)
                        WHERE tenant_id = :t AND id = :d RETURNING {_DEPARTMENT_COLUMNS}""",
                    t=body.clientId, d=department, name=body.name, active=body.active)
    if not rows:
        raise NotFound(f"Department {department} does not exist for this clientId.")
    return _catalog_changed(body.clientId, 200, {"department": _department(rows[0])})


def create_doctor(conn: db.Transaction, body: DoctorBody) -> WriteResult:
    """POST /api/admin/doctors: 201 with the new active doctor (no working hours yet, so no
    slots); 400 when the department is unknown or inactive."""
    _require_active_department(conn, body.clientId, body.departmentId)
    row = conn.run(f"""INSERT INTO doctor (tenant_id, name, department_id, specialty)
                       VALUES (:t, :name, :d, :specialty) RETURNING {_DOCTOR_COLUMNS}""",
                   t=body.clientId, name=body.name, d=body.departmentId, specialty=body.specialty)[0]
    return _catalog_changed(body.clientId, 201, {"doctor": _doctor(row)})


def change_doctor(conn: db.Transaction, doctor: int, body: DoctorChange) -> WriteResult:
    """PATCH /api/admin/doctors/{id}: 200; a new department or active flag regenerates the
    doctor's future free slots (a deactivated doctor keeps booked appointments, offers no
    free slot and takes no new booking)."""
    if body.departmentId is not None:
        _require_active_department(conn, body.clientId, body.departmentId)
    rows = conn.run(f"""UPDATE doctor SET name = coalesce(CAST(:name AS text), name),
                                       department_id = coalesce(CAST(:d AS integer), department_id),
                                       specialty = coalesce(CAST(:specialty AS text), specialty),
                                       active = coalesce(CAST(:active AS boolean), active)
                        WHERE tenant_id = :t AND id = :doctor RETURNING {_DOCTOR_COLUMNS}""",
                    t=body.clientId, doctor=doctor, name=body.name, d=body.departmentId,
                    specialty=body.specialty, active=body.active)
    if not rows:
        raise NotFound(f"Doctor {doctor} does not exist for this clientId.")
    regenerated = None
    if body.departmentId is not None or body.active is not None:
        regenerated = follow_schedule(conn, body.clientId, doctor)
    return _catalog_changed(body.clientId, 200, {"doctor": _doctor(rows[0])}, doctor, regenerated)


def _require_doctor(conn: db.Transaction, tenant: int, doctor: int) -> None:
    if not conn.run("SELECT 1 FROM doctor WHERE tenant_id = :t AND id = :doctor", t=tenant, doctor=doctor):
        raise NotFound(f"Doctor {doctor} does not exist for this clientId.")


def check_no_overlap(hours: list[WorkingPeriod]) -> None:
    """400 with the index of each period that overlaps an earlier one of the same weekday."""
    ordered = sorted(range(len(hours)), key=lambda i: (hours[i].weekday, hours[i].start))
    details = [{"field": f"hours.{i}", "message": f"overlaps hours.{j} on weekday {hours[i].weekday}"}
               for j, i in zip(ordered, ordered[1:])
               if hours[i].weekday == hours[j].weekday and hours[i].start < hours[j].end]
    if details:
        raise InvalidRequest(f"Invalid parameter '{details[0]['field']}': {details[0]['message']}.", details=details)


def _period(period: WorkingPeriod) -> dict[str, Any]:
    return {"weekday": period.weekday, "start": period.start.strftime("%H:%M"), "end": period.end.strftime("%H:%M"),
            "slotMinutes": period.slotMinutes}


def replace_working_hours(conn: db.Transaction, doctor: int, body: WorkingHoursBody) -> WriteResult:
    """PUT /api/admin/doctors/{id}/working-hours: the doctor's weekly hours replaced and the
    future free slots regenerated; 409 `schedule_conflict` for appointments left outside
    them unless `cancelAppointments`."""
    check_no_overlap(body.hours)
    _require_doctor(conn, body.clientId, doctor)
    conn.run("DELETE FROM working_hours WHERE tenant_id = :t AND doctor_id = :doctor", t=body.clientId, doctor=doctor)
    conn.run("""INSERT INTO working_hours (tenant_id, doctor_id, weekday, starts, ends, slot_minutes)
                SELECT :t, :doctor, w, s, e, m
                FROM unnest(CAST(:w AS smallint[]), CAST(:s AS time[]), CAST(:e AS time[]), CAST(:m AS smallint[]))
                     AS u(w, s, e, m)""",
             t=body.clientId, doctor=doctor, w=[h.weekday for h in body.hours], s=[h.start for h in body.hours],
             e=[h.end for h in body.hours], m=[h.slotMinutes for h in body.hours])
    regenerated = follow_schedule(conn, body.clientId, doctor, body.cancelAppointments,
                                  "The doctor's working hours changed")
    answer = {"doctorId": doctor, "hours": [_period(h) for h in sorted(body.hours, key=lambda h: (h.weekday, h.start))],
              "slotsAdded": regenerated.added, "slotsRemoved": regenerated.removed,
              "cancelled": list(regenerated.cancelled)}
    return _catalog_changed(body.clientId, 200, answer, doctor, regenerated)


def _absence(row: list[Any]) -> dict[str, Any]:
    return {"id": row[0], "from": row[1].isoformat(), "to": row[2].isoformat(), "reason": row[3]}


def add_absence(conn: db.Transaction, doctor: int, body: AbsenceBody) -> WriteResult:
    """POST /api/admin/doctors/{id}/absences: 201; the absence's free slots are removed;
    409 `schedule_conflict` for booked appointments inside it unless `cancelAppointments`."""
    _require_doctor(conn, body.clientId, doctor)
    row = conn.run("""INSERT INTO absence (tenant_id, doctor_id, starts_at, ends_at, reason)
                      VALUES (:t, :doctor, :starts, :ends, :reason) RETURNING id, starts_at, ends_at, reason""",
                   t=body.clientId, doctor=doctor, starts=body.from_, ends=body.to, reason=body.reason)[0]
    why = "The doctor is absent" + (f": {body.reason}" if body.reason else "")
    regenerated = follow_schedule(conn, body.clientId, doctor, body.cancelAppointments, why[:500])
    answer = {"absence": _absence(row), "slotsRemoved": regenerated.removed, "cancelled": list(regenerated.cancelled)}
    return _catalog_changed(body.clientId, 201, answer, doctor, regenerated)


def remove_absence(conn: db.Transaction, tenant: int, doctor: int, absence: int) -> WriteResult:
    """DELETE /api/admin/doctors/{id}/absences/{absenceId}: 200; the freed period's slots
    come back; 404 unknown."""
    rows = conn.run("""DELETE FROM absence WHERE tenant_id = :t AND doctor_id = :doctor AND id = :a
                       RETURNING id, starts_at, ends_at, reason""", t=tenant, doctor=doctor, a=absence)
    if not rows:
        raise NotFound(f"Absence {absence} of doctor {doctor} does not exist for this clientId.")
    regenerated = follow_schedule(conn, tenant, doctor)
    return _catalog_changed(tenant, 200, {"absence": _absence(rows[0]), "slotsAdded": regenerated.added},
                            doctor, regenerated)

