"""Schedule management on the real database (Chalice test client): admin-only routes,
validation, slots that follow working hours and absences, stranded appointments (409 or
cancelled), deactivated doctors, Idempotency-Key, patients one by one, by record number
and in bulk (all or nothing)."""
from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from tests.data_finders import new_patient, tenant_today
from tests.helpers_schedules import every_day, free_slots_of

JSON = {"Content-Type": "application/json"}


def _send(client, app_env, method: str, path: str, body: dict | None = None, role: str = "admin",
          tenant: int = 1, key: str | None = None):
    headers = {**JSON, **app_env.headers(tenant, role)}
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.http.request(method, path, headers=headers, body=json.dumps(body) if body is not None else b"")


def _error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.body
    error = response.json_body["error"]
    if code is not None:
        assert error["code"] == code, error
    return error


def _department(client, app_env, name: str = "Cardiology") -> int:
    response = _send(client, app_env, "POST", "/api/admin/departments", {"clientId": 1, "name": name})
    assert response.status_code == 201, response.body
    return response.json_body["department"]["id"]


def _doctor_with_hours(client, app_env, start: str = "09:00", end: str = "12:00", minutes: int = 30) -> int:
    department = _department(client, app_env, f"Dept {uuid.uuid4().hex[:6]}")
    response = _send(client, app_env, "POST", "/api/admin/doctors",
                     {"clientId": 1, "name": "Dr. New", "departmentId": department, "specialty": "GP"})
    assert response.status_code == 201, response.body
    doctor = response.json_body["doctor"]["id"]
    response = _send(client, app_env, "PUT", f"/api/admin/doctors/{doctor}/working-hours",
                     {"clientId": 1, "hours": every_day(start, end, minutes)})
    assert response.status_code == 200, response.body
    return doctor


def _book(client, app_env, slot: int) -> dict:
    response = _send(client, app_env, "POST", "/api/appointments",
                     {"clientId": 1, "slotId": slot, "patientId": new_patient(app_env.sql)}, role="staff")
    assert response.status_code == 201, response.body
    return response.json_body["appointment"]


def _soon(app_env) -> dt.date:
    """A local day after today: all its slots lie in the future."""
    return tenant_today(app_env.sql) + dt.timedelta(days=2)


ROUTES = [("POST", "/api/admin/departments", {"clientId": 1, "name": "X"}),
          ("PATCH", "/api/admin/departments/1", {"clientId": 1, "name": "X"}),
          ("POST", "/api/admin/doctors", {"clientId": 1, "name": "X", "departmentId": 1}),
          ("PATCH", "/api/admin/doctors/1", {"clientId": 1, "name": "X"}),
          ("PUT", "/api/admin/doctors/1/working-hours", {"clientId": 1, "hours": []}),
          ("POST", "/api/admin/doctors/1/absences",
           {"clientId": 1, "from": "2099-01-01T09:00:00Z", "to": "2099-01-01T10:00:00Z"}),
          ("DELETE", "/api/admin/doctors/1/absences/1?clientId=1", None),
          ("POST", "/api/admin/patients", {"clientId": 1, "name": "X", "birthDate": "1980-01-01",
                                           "recordNumber": "X"}),
          ("PUT", "/api/admin/patients/by-record/X", {"clientId": 1, "name": "X", "birthDate": "1980-01-01"}),
          ("POST", "/api/admin/patients/bulk", {"clientId": 1, "patients": [
              {"name": "X", "birthDate": "1980-01-01", "recordNumber": "X"}]})]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_only_the_tenants_admin_may_write(client, app_env, method, path, body):
    _error(_send(client, app_env, method, path, body, role="staff"), 403)
    _error(_send(client, app_env, method, path, body, tenant=2), 403)


def test_department_created_renamed_and_deactivated(client, app_env):
    department = _department(client, app_env, "  Radiology  ")
    listed = {d["id"]: d["name"] for d in client.http.get(
        "/api/departments?clientId=1", headers=app_env.headers()).json_body["departments"]}
    assert listed[department] == "Radiology"  # trimmed

    renamed = _send(client, app_env, "PATCH", f"/api/admin/departments/{department}",
                    {"clientId": 1, "name": "Imaging"})
    assert renamed.json_body == {"department": {"id": department, "name": "Imaging", "active": True}}
    listed = {d["id"]: d["name"] for d in client.http.get(
        "/api/departments?clientId=1", headers=app_env.headers()).json_body["departments"]}
    assert listed[department] == "Imaging"  # the catalog version moved: no stale hit

    busy = app_env.sql("SELECT department_id FROM doctor WHERE tenant_id = 1 AND active LIMIT 1")[0][0]
    _error(_send(client, app_env, "PATCH", f"/api/admin/departments/{busy}", {"clientId": 1, "active": False}),
           409, "department_in_use")
    gone = _send(client, app_env, "PATCH", f"/api/admin/departments/{department}", {"clientId": 1, "active": False})
    assert gone.json_body["department"]["active"] is False
    listed = client.http.get("/api/departments?clientId=1", headers=app_env.headers()).json_body["departments"]
    assert department not in [d["id"] for d in listed]
    _error(_send(client, app_env, "POST", "/api/admin/doctors",
                 {"clientId": 1, "name": "Dr. X", "departmentId": department}), 400)
    _error(_send(client, app_env, "PATCH", "/api/admin/departments/999999", {"clientId": 1, "name": "Y"}), 404)


@pytest.mark.parametrize(("hours", "field"), [
    ([{"weekday": 1, "start": "09:00", "end": "12:00", "slotMinutes": 30},
      {"weekday": 1, "start": "11:30", "end": "13:00", "slotMinutes": 30}], "hours.1"),
    ([{"weekday": 2, "start": "12:00", "end": "09:00", "slotMinutes": 30}], "hours.0"),
    ([{"weekday": 3, "start": "09:00", "end": "10:00", "slotMinutes": 25}], "hours.0"),
    ([{"weekday": 8, "start": "09:00", "end": "10:00", "slotMinutes": 30}], "hours.0.weekday"),
    ([{"weekday": 1, "start": "9:00", "end": "10:00", "slotMinutes": 30}], "hours.0.start"),
])
def test_bad_working_hours_are_400_with_details(client, app_env, hours, field):
    doctor = app_env.sql("SELECT id FROM doctor WHERE tenant_id = 1 ORDER BY id LIMIT 1")[0][0]
    before = app_env.sql("SELECT count(*) FROM working_hours WHERE doctor_id = :d", d=doctor)
    error = _error(_send(client, app_env, "PUT", f"/api/admin/doctors/{doctor}/working-hours",
                         {"clientId": 1, "hours": hours}), 400)
    assert field in [d["field"] for d in error["details"]], error
    assert app_env.sql("SELECT count(*) FROM working_hours WHERE doctor_id = :d", d=doctor) == before


def test_bad_absences_and_names_are_400(client, app_env):
    doctor = app_env.sql("SELECT id FROM doctor WHERE tenant_id = 1 ORDER BY id LIMIT 1")[0][0]
    past = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2)).isoformat(timespec="seconds")
    later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)).isoformat(timespec="seconds")
    for body in ({"clientId": 1, "from": past, "to": later},
                 {"clientId": 1, "from": later, "to": past},
                 {"clientId": 1, "from": "2099-01-01 09:00", "to": "2099-01-02T09:00:00Z"}):
        _error(_send(client, app_env, "POST", f"/api/admin/doctors/{doctor}/absences", body), 400)
    for name in ("   ", "x" * 201):
        _error(_send(client, app_env, "POST", "/api/admin/departments", {"clientId": 1, "name": name}), 400)
    error = _error(_send(client, app_env, "POST", "/api/admin/doctors",
                         {"clientId": 1, "name": "Dr. X", "departmentId": 999999}), 400)
    assert error["details"][0]["field"] == "departmentId"


def test_new_doctor_with_hours_is_bookable(client, app_env):
    doctor = _doctor_with_hours(client, app_env)
    day = _soon(app_env)
    free = free_slots_of(app_env.sql, doctor, day)
    assert len(free) == 6  # 09:00-12:00 in 30-minute slots
    listed = client.http.get(f"/api/slots/available?clientId=1&date={day}&doctorId={doctor}",
                             headers=app_env.headers(role="staff")).json_body["slots"]
    assert [s["slotId"] for s in listed] == free
    assert _book(client, app_env, free[0])["doctorId"] == doctor


def test_hours_that_strand_a_booking_are_409_unless_cancelled(client, app_env):
    doctor = _doctor_with_hours(client, app_env)
    day = _soon(app_env)
    booked = _book(client, app_env, free_slots_of(app_env.sql, doctor, day)[1])
    slots_before = app_env.sql("SELECT count(*) FROM slot WHERE doctor_id = :d", d=doctor)
    narrower = {"clientId": 1, "hours": every_day("10:00", "12:00", 30)}  # 09:30 is outside

    error = _error(_send(client, app_env, "PUT", f"/api/admin/doctors/{doctor}/working-hours", narrower),
                   409, "schedule_conflict")
    assert [d["appointmentId"] for d in error["details"]] == [booked["id"]]
    assert error["details"][0]["patientId"] == booked["patientId"]
    assert app_env.sql("SELECT count(*) FROM slot WHERE doctor_id = :d", d=doctor) == slots_before  # rolled back

    done = _send(client, app_env, "PUT", f"/api/admin/doctors/{doctor}/working-hours",
                 {**narrower, "cancelAppointments": True})
    assert done.status_code == 200, done.body
    assert [(a["id"], a["status"]) for a in done.json_body["cancelled"]] == [(booked["id"], "cancelled")]
    assert app_env.sql("SELECT cancel_reason FROM appointment WHERE id = :a", a=booked["id"])[0][0]
    assert len(free_slots_of(app_env.sql, doctor, day)) == 4  # 10:00-12:00
    assert done.json_body["slotsRemoved"] > 0


def test_absence_over_a_booking_is_409_and_cancelling_frees_nothing_else(client, app_env):
    doctor = _doctor_with_hours(client, app_env)
    day = _soon(app_env)
    free = free_slots_of(app_env.sql, doctor, day)
    inside, outside = _book(client, app_env, free[2]), _book(client, app_env, free[4])
    absence = {"clientId": 1, "from": inside["startsAt"], "to": inside["endsAt"], "reason": "Conference"}
    path = f"/api/admin/doctors/{doctor}/absences"

    error = _error(_send(client, app_env, "POST", path, absence), 409, "schedule_conflict")
    assert [d["appointmentId"] for d in error["details"]] == [inside["id"]]
    assert not app_env.sql("SELECT 1 FROM absence WHERE doctor_id = :d", d=doctor)

    added = _send(client, app_env, "POST", path, {**absence, "cancelAppointments": True})
    assert added.status_code == 201, added.body
    assert [a["id"] for a in added.json_body["cancelled"]] == [inside["id"]]
    assert added.json_body["slotsRemoved"] == 1  # the freed slot of the absence, nothing else
    statuses = dict(app_env.sql("SELECT id, status FROM appointment WHERE doctor_id = :d", d=doctor))
    assert statuses == {inside["id"]: "cancelled", outside["id"]: "booked"}
    assert free_slots_of(app_env.sql, doctor, day) == [free[0], free[1], free[3], free[5]]

    absence_id = added.json_body["absence"]["id"]
    removed = _send(client, app_env, "DELETE", f"{path}/{absence_id}?clientId=1")
    assert removed.status_code == 200, removed.body
    assert removed.json_body["slotsAdded"] == 1  # the period's slot is offered again
    assert len(free_slots_of(app_env.sql, doctor, day)) == 5
    _error(_send(client, app_env, "DELETE", f"{path}/{absence_id}?clientId=1"), 404)


def test_a_deactivated_doctor_keeps_bookings_and_takes_no_new_ones(client, app_env):
    doctor = _doctor_with_hours(client, app_env)
    day = _soon(app_env)
    free = free_slots_of(app_env.sql, doctor, day)
    kept = _book(client, app_env, free[0])
    answer = _send(client, app_env, "PATCH", f"/api/admin/doctors/{doctor}", {"clientId": 1, "active": False})
    assert answer.status_code == 200 and answer.json_body["doctor"]["active"] is False
    assert free_slots_of(app_env.sql, doctor, day) == []
    assert app_env.sql("SELECT status FROM appointment WHERE id = :a", a=kept["id"]) == [["booked"]]
    refused = _send(client, app_env, "POST", "/api/appointments",
                    {"clientId": 1, "slotId": kept["slotId"], "patientId": new_patient(app_env.sql)}, role="staff")
    _error(refused, 404)
    doctors = client.http.get("/api/doctors?clientId=1", headers=app_env.headers()).json_body["doctors"]
    assert doctor not in [d["id"] for d in doctors]

    _send(client, app_env, "PATCH", f"/api/admin/doctors/{doctor}", {"clientId": 1, "active": True})
    assert len(free_slots_of(app_env.sql, doctor, day)) == 5  # back, around the kept booking


def test_a_repeated_key_creates_one_department(client, app_env):
    key = f"dep-{uuid.uuid4()}"
    body = {"clientId": 1, "name": f"Idem {key}"}
    first = _send(client, app_env, "POST", "/api/admin/departments", body, key=key)
    second = _send(client, app_env, "POST", "/api/admin/departments", body, key=key)
    assert first.status_code == second.status_code == 201
    assert first.json_body == second.json_body
    assert app_env.sql("SELECT count(*) FROM department WHERE name = :n", n=body["name"]) == [[1]]
    _error(_send(client, app_env, "POST", "/api/admin/departments", {**body, "name": "Other"}, key=key),
           422, "idempotency_key_reused")


def test_patients_created_and_upserted_by_record_number(client, app_env):
    record = f"MRN-{uuid.uuid4().hex[:8]}"
    body = {"clientId": 1, "name": " Ada Lovelace ", "birthDate": "1985-12-10", "recordNumber": f" {record} "}
    created = _send(client, app_env, "POST", "/api/admin/patients", body)
    assert created.status_code == 201, created.body
    patient = created.json_body["patient"]
    assert (patient["name"], patient["recordNumber"]) == ("Ada Lovelace", record)
    _error(_send(client, app_env, "POST", "/api/admin/patients", body), 409, "duplicate_record_number")

    path = f"/api/admin/patients/by-record/{record}"
    updated = _send(client, app_env, "PUT", path, {"clientId": 1, "name": "Ada King", "birthDate": "1985-12-10"})
    assert updated.status_code == 200 and updated.json_body["patient"]["id"] == patient["id"]
    fresh = _send(client, app_env, "PUT", f"{path}-2", {"clientId": 1, "name": "New", "birthDate": "1990-01-01"})
    assert fresh.status_code == 201
    found = client.http.get("/api/patients?clientId=1&q=ada%20king", headers=app_env.headers()).json_body
    assert [p["id"] for p in found["patients"]] == [patient["id"]]


def _bulk(count: int, prefix: str) -> list[dict]:
    return [{"name": f"Bulk {i}", "birthDate": "1970-01-01", "recordNumber": f"{prefix}-{i}"} for i in range(count)]


def test_bulk_import_is_all_or_nothing(client, app_env):
    prefix = uuid.uuid4().hex[:8]
    rows = _bulk(1000, prefix)
    rows[7] = {**rows[7], "birthDate": "1970-02-30"}
    error = _error(_send(client, app_env, "POST", "/api/admin/patients/bulk", {"clientId": 1, "patients": rows}), 400)
    assert error["details"][0]["index"] == 7 and error["details"][0]["field"] == "birthDate"
    rows[7] = {**rows[7], "birthDate": "1970-02-28", "recordNumber": rows[3]["recordNumber"]}
    error = _error(_send(client, app_env, "POST", "/api/admin/patients/bulk", {"clientId": 1, "patients": rows}), 400)
    assert error["details"][0]["index"] == 7
    assert app_env.sql("SELECT count(*) FROM patient WHERE record_number LIKE :p", p=f"{prefix}-%") == [[0]]

    rows = _bulk(1000, prefix)
    done = _send(client, app_env, "POST", "/api/admin/patients/bulk", {"clientId": 1, "patients": rows})
    assert done.status_code == 200, done.body
    assert done.json_body == {"created": 1000, "updated": 0}
    again = _send(client, app_env, "POST", "/api/admin/patients/bulk", {"clientId": 1, "patients": rows[:10]})
    assert again.json_body == {"created": 0, "updated": 10}
    _error(_send(client, app_env, "POST", "/api/admin/patients/bulk",
                 {"clientId": 1, "patients": _bulk(1001, prefix)}), 400)


def test_admin_writes_are_audited_with_ids_only(client, app_env):
    """Every schedule-management write leaves one audit event with its actor, in the same
    transaction; a refused one leaves none."""
    import json as _json

    headers = {"Authorization": f"Bearer {app_env.token(role='admin')}", "Content-Type": "application/json"}
    before = app_env.sql("SELECT count(*) FROM audit_event WHERE tenant_id = 1")[0][0]
    created = client.http.post("/api/admin/departments", headers=headers,
                               body=_json.dumps({"clientId": 1, "name": "Audited Dept"}))
    assert created.status_code == 201, created.body
    refused = client.http.post("/api/admin/departments", headers=headers,
                               body=_json.dumps({"clientId": 1, "name": " "}))
    assert refused.status_code == 400
    events = app_env.sql("""SELECT action, actor_role, details FROM audit_event WHERE tenant_id = 1
                            ORDER BY id DESC LIMIT 2""")
    assert app_env.sql("SELECT count(*) FROM audit_event WHERE tenant_id = 1")[0][0] == before + 1
    action, role, details = events[0]
    assert (action, role) == ("department.create", "admin")
    assert details["departmentId"] == created.json_body["department"]["id"]
    assert "Audited Dept" not in _json.dumps(details)
    listed = client.http.get("/api/audit?clientId=1&action=department.create", headers=headers)
    assert listed.status_code == 200 and listed.json_body["events"][0]["action"] == "department.create"
