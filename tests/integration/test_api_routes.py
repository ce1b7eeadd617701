"""Every route of API.md: the success shape and each error status the contract lists."""
from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from tests.data_finders import (
    appointment_window,
    day_with_appointments,
    day_with_booked_and_free_slots,
    days_with_free_slots,
    new_patient,
)
from tests.helpers_servers import free_future_slots

JSON = {"Content-Type": "application/json"}
APPOINTMENT_FIELDS = {"id", "slotId", "patientId", "patientName", "doctorId", "doctorName", "departmentId",
                      "departmentName", "startsAt", "endsAt", "status", "reason"}
_used_slots: set[int] = set()


def _rfc3339(value: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, value
    return parsed


def _assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.body
    body = response.json_body
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str)
    if code is not None:
        assert body["error"]["code"] == code, body
    return body


def _take_slot(client, app_env, tenant: int = 1, **filters) -> dict:
    """A free slot on a day after the tenant's today that no other test of this module has used."""
    headers = app_env.headers(tenant, "staff")
    extra = "".join(f"&{k}={v}" for k, v in filters.items())
    for day in days_with_free_slots(app_env.sql, tenant):
        response = client.http.get(f"/api/slots/available?clientId={tenant}&date={day}{extra}",
                                   headers=headers)
        assert response.status_code == 200, response.body
        for slot in response.json_body["slots"]:
            if slot["slotId"] not in _used_slots:
                _used_slots.add(slot["slotId"])
                return slot
    raise AssertionError("no free slot left")


def _book(client, app_env, slot_id: int, patient_id: int = 1, tenant: int = 1, role: str = "staff",
          token_patient: int | None = None, reason: str | None = None):
    body = {"clientId": tenant, "slotId": slot_id, "patientId": patient_id}
    if reason is not None:
        body["reason"] = reason
    headers = {**app_env.headers(tenant, role, token_patient), **JSON}
    return client.http.post("/api/appointments", headers=headers, body=json.dumps(body))


def _cancel(client, app_env, appointment_id, tenant: int = 1, role: str = "staff",
            token_patient: int | None = None, reason: str | None = None):
    body: dict = {"clientId": tenant}
    if reason is not None:
        body["reason"] = reason
    headers = {**app_env.headers(tenant, role, token_patient), **JSON}
    return client.http.post(f"/api/appointments/{appointment_id}/cancel", headers=headers, body=json.dumps(body))


# --- health, openapi -------------------------------------------------------------------

def test_health(client):
    response = client.http.get("/api/health")
    assert response.status_code == 200, response.body
    assert response.json_body == {"status": "ok", "db": "ok", "redis": "ok"}


def test_openapi_is_valid_and_lists_every_route(client):
    import app as app_module

    response = client.http.get("/api/openapi.json")
    assert response.status_code == 200, response.body
    doc = response.json_body
    assert doc["openapi"].startswith("3.")
    from openapi_spec_validator import validate

    validate(doc)
    normalize = lambda path: re.sub(r"\{[^}]+\}", "{}", path)  # noqa: E731
    documented = {(normalize(path), method.upper()) for path, item in doc["paths"].items() for method in item
                  if method in {"get", "post", "put", "patch", "delete"}}
    contract = {("/api/health", "GET"), ("/api/departments", "GET"), ("/api/doctors", "GET"),
                ("/api/patients", "GET"), ("/api/slots/available", "GET"), ("/api/appointments/list", "GET"),
                ("/api/appointments", "POST"), ("/api/appointments/{}/cancel", "POST"),
                ("/api/dashboard/stats", "GET"), ("/api/cache/stats", "GET")}
    assert contract <= documented
    for path, entries in app_module.app.routes.items():
        if path == "/api/openapi.json" or not path.startswith("/api/"):
            continue  # the document itself; non-API pages (e.g. an HTML monitor)
        for method in entries:
            assert (normalize(path), method) in documented, (path, method)


# --- catalog ---------------------------------------------------------------------------

@pytest.mark.parametrize("role,patient", [("admin", None), ("staff", None), ("patient", 1)])
def test_departments(client, app_env, role, patient):
    response = client.http.get("/api/departments?clientId=1", headers=app_env.headers(1, role, patient))
    assert response.status_code == 200, response.body
    body = response.json_body
    assert body["clientId"] == 1
    assert body["departments"]
    expected = app_env.sql("SELECT count(*) FROM department WHERE tenant_id = 1")[0][0]
    assert len(body["departments"]) == expected
    for dep in body["departments"]:
        assert set(dep) == {"id", "name", "doctorCount"}
        assert isinstance(dep["id"], int) and isinstance(dep["name"], str) and isinstance(dep["doctorCount"], int)


def test_departments_unknown_tenant_404(client, app_env):
    # A token for a tenant that does not exist, asking for that tenant: 404 not_found.
    _assert_error(client.http.get("/api/departments?clientId=999", headers=app_env.headers(999, "admin")),
                  404, "not_found")


def test_doctors_and_department_filter(client, app_env):
    headers = app_env.headers(1, "patient", 1)
    response = client.http.get("/api/doctors?clientId=1", headers=headers)
    assert response.status_code == 200, response.body
    doctors = response.json_body["doctors"]
    assert response.json_body["clientId"] == 1 and doctors
    for doc in doctors:
        assert set(doc) == {"id", "name", "departmentId", "specialty"}
    department = doctors[0]["departmentId"]
    filtered = client.http.get(f"/api/doctors?clientId=1&departmentId={department}", headers=headers)
    assert filtered.status_code == 200, filtered.body
    got = filtered.json_body["doctors"]
    assert got and all(d["departmentId"] == department for d in got)
    assert {d["id"] for d in got} == {d["id"] for d in doctors if d["departmentId"] == department}
    active = app_env.sql("SELECT count(*) FROM doctor WHERE tenant_id = 1 AND active")[0][0]
    assert len(doctors) == active


# --- patients --------------------------------------------------------------------------

def test_patients_name_prefix(client, app_env):
    name = app_env.sql("SELECT name FROM patient WHERE tenant_id = 1 AND id = 1")[0][0]
    prefix = name[:3]
    response = client.http.get(f"/api/patients?clientId=1&q={prefix.lower()}", headers=app_env.headers(1, "staff"))
    assert response.status_code == 200, response.body
    patients = response.json_body["patients"]
    assert response.json_body["clientId"] == 1 and patients
    for patient in patients:
        assert set(patient) == {"id", "name", "birthDate"}
        assert patient["name"].lower().startswith(prefix.lower())
        dt.date.fromisoformat(patient["birthDate"])


def test_patients_record_number_exact(client, app_env):
    record, pid = app_env.sql("SELECT record_number, id FROM patient WHERE tenant_id = 1 AND id = 1")[0]
    assert record.startswith("MRN-")
    response = client.http.get(f"/api/patients?clientId=1&q={record}", headers=app_env.headers(1, "admin"))
    assert response.status_code == 200, response.body
    assert [p["id"] for p in response.json_body["patients"]] == [pid]
    partial = client.http.get(f"/api/patients?clientId=1&q={record[:-1]}", headers=app_env.headers(1, "admin"))
    assert partial.status_code == 200
    assert pid not in [p["id"] for p in partial.json_body["patients"]]


def test_patients_limit(client, app_env):
    response = client.http.get("/api/patients?clientId=1&q=a&limit=2", headers=app_env.headers(1, "staff"))
    assert response.status_code == 200, response.body
    assert len(response.json_body["patients"]) <= 2


def test_patients_forbidden_for_patient(client, app_env):
    _assert_error(client.http.get("/api/patients?clientId=1&q=a", headers=app_env.headers(1, "patient", 1)),
                  403, "forbidden")


def test_patients_q_required(client, app_env):
    _assert_error(client.http.get("/api/patients?clientId=1", headers=app_env.headers(1, "staff")),
                  400, "validation_error")


# --- slots -----------------------------------------------------------------------------

def test_slots_free_only_in_start_order(client, app_env):
    # A day after the tenant's today, so no slot of it starts between the two reads below.
    day = day_with_booked_and_free_slots(app_env.sql, 1)
    response = client.http.get(f"/api/slots/available?clientId=1&date={day}", headers=app_env.headers(1, "patient", 1))
    assert response.status_code == 200, response.body
    body = response.json_body
    assert body["clientId"] == 1 and body["date"] == day
    slots = body["slots"]
    for slot in slots:
        assert set(slot) == {"slotId", "doctorId", "departmentId", "startsAt", "endsAt"}
        assert _rfc3339(slot["endsAt"]) > _rfc3339(slot["startsAt"])
    keys = [(_rfc3339(s["startsAt"]), s["slotId"]) for s in slots]
    assert keys == sorted(keys)
    expected = app_env.sql(
        "SELECT s.id FROM slot s WHERE s.tenant_id = 1 AND s.day = CAST(:d AS date) AND s.starts_at > now()"
        " AND NOT EXISTS (SELECT 1 FROM appointment a WHERE a.tenant_id = 1 AND a.slot_id = s.id"
        " AND a.status <> 'cancelled') ORDER BY s.starts_at, s.id", d=day)
    assert [s["slotId"] for s in slots] == [r[0] for r in expected]
    live = app_env.sql(
        "SELECT count(*) FROM appointment a JOIN slot s ON s.tenant_id = a.tenant_id AND s.id = a.slot_id"
        " WHERE a.tenant_id = 1 AND s.day = CAST(:d AS date) AND a.status <> 'cancelled'", d=day)[0][0]
    assert live > 0, "the seed should have booked some slots of that day"


def test_slots_date_required(client, app_env):
    _assert_error(client.http.get("/api/slots/available?clientId=1", headers=app_env.headers()), 400,
                  "validation_error")


def test_slots_filters(client, app_env):
    headers = app_env.headers(1, "staff")
    day = days_with_free_slots(app_env.sql, 1)[0]
    every = client.http.get(f"/api/slots/available?clientId=1&date={day}", headers=headers).json_body["slots"]
    assert every
    department, doctor = every[0]["departmentId"], every[0]["doctorId"]
    by_dep = client.http.get(f"/api/slots/available?clientId=1&date={day}&departmentId={department}",
                             headers=headers).json_body["slots"]
    assert by_dep and all(s["departmentId"] == department for s in by_dep)
    assert [s["slotId"] for s in by_dep] == [s["slotId"] for s in every if s["departmentId"] == department]
    by_doc = client.http.get(f"/api/slots/available?clientId=1&date={day}&doctorId={doctor}",
                             headers=headers).json_body["slots"]
    assert by_doc and all(s["doctorId"] == doctor for s in by_doc)
    assert [s["slotId"] for s in by_doc] == [s["slotId"] for s in every if s["doctorId"] == doctor]


# --- booking and cancelling ------------------------------------------------------------

def test_book_201_shape_and_slot_gone(client, app_env):
    slot = _take_slot(client, app_env)
    patient = new_patient(app_env.sql)
    response = _book(client, app_env, slot["slotId"], patient_id=patient, reason="check-up")
    assert response.status_code == 201, response.body
    appointment = response.json_body["appointment"]
    assert set(appointment) == APPOINTMENT_FIELDS
    assert appointment["slotId"] == slot["slotId"] and appointment["patientId"] == patient
    assert appointment["status"] == "booked" and appointment["reason"] == "check-up"
    assert appointment["doctorId"] == slot["doctorId"] and appointment["departmentId"] == slot["departmentId"]
    assert _rfc3339(appointment["startsAt"]) == _rfc3339(slot["startsAt"])
    rows = app_env.sql("SELECT status, patient_id FROM appointment WHERE tenant_id = 1 AND id = :i",
                       i=appointment["id"])
    assert rows == [["booked", patient]]
    date = app_env.sql("SELECT day FROM slot WHERE tenant_id = 1 AND id = :s", s=slot["slotId"])[0][0]
    after = client.http.get(f"/api/slots/available?clientId=1&date={date}", headers=app_env.headers())
    assert slot["slotId"] not in [s["slotId"] for s in after.json_body["slots"]]


def test_book_unknown_slot_404(client, app_env):
    _assert_error(_book(client, app_env, 9_000_000_000), 404, "not_found")


def test_book_other_tenants_slot_404(client, app_env):
    other = app_env.sql("SELECT id FROM slot WHERE tenant_id = 2 AND starts_at > now() + interval '2 days' LIMIT 1")
    _assert_error(_book(client, app_env, other[0][0]), 404, "not_found")


def test_book_unknown_patient_404(client, app_env):
    slot = _take_slot(client, app_env)
    _assert_error(_book(client, app_env, slot["slotId"], patient_id=999_999), 404, "not_found")
    # patient 201 belongs to tenant 2
    _assert_error(_book(client, app_env, slot["slotId"], patient_id=201), 404, "not_found")


def test_book_taken_409(client, app_env):
    slot = _take_slot(client, app_env)
    assert _book(client, app_env, slot["slotId"], patient_id=new_patient(app_env.sql)).status_code == 201
    _assert_error(_book(client, app_env, slot["slotId"], patient_id=new_patient(app_env.sql)), 409, "slot_taken")
    live = app_env.sql("SELECT count(*) FROM appointment WHERE tenant_id = 1 AND slot_id = :s"
                       " AND status <> 'cancelled'", s=slot["slotId"])[0][0]
    assert live == 1


def test_patient_books_for_self_and_not_for_others(client, app_env):
    slot = _take_slot(client, app_env)
    patient = new_patient(app_env.sql)
    _assert_error(_book(client, app_env, slot["slotId"], patient_id=2, role="patient", token_patient=patient),
                  403, "forbidden")
    ok = _book(client, app_env, slot["slotId"], patient_id=patient, role="patient", token_patient=patient)
    assert ok.status_code == 201, ok.body
    assert ok.json_body["appointment"]["patientId"] == patient


def test_cancel_200_then_409_and_slot_free_again(client, app_env):
    slot = _take_slot(client, app_env)
    booked = _book(client, app_env, slot["slotId"], patient_id=new_patient(app_env.sql))
    assert booked.status_code == 201, booked.body
    appointment_id = booked.json_body["appointment"]["id"]
    date = app_env.sql("SELECT day FROM slot WHERE tenant_id = 1 AND id = :s", s=slot["slotId"])[0][0]
    url = f"/api/slots/available?clientId=1&date={date}"
    assert slot["slotId"] not in [s["slotId"]
                                  for s in client.http.get(url, headers=app_env.headers()).json_body["slots"]]

    cancelled = _cancel(client, app_env, appointment_id, reason="feeling better")
    assert cancelled.status_code == 200, cancelled.body
    appointment = cancelled.json_body["appointment"]
    assert set(appointment) == APPOINTMENT_FIELDS
    assert appointment["status"] == "cancelled" and appointment["id"] == appointment_id
    assert app_env.sql("SELECT status FROM appointment WHERE tenant_id = 1 AND id = :i", i=appointment_id) == [
        ["cancelled"]]

    _assert_error(_cancel(client, app_env, appointment_id), 409, "not_cancellable")
    assert slot["slotId"] in [s["slotId"] for s in client.http.get(url, headers=app_env.headers()).json_body["slots"]]
    again = _book(client, app_env, slot["slotId"], patient_id=new_patient(app_env.sql))
    assert again.status_code == 201, again.body


def test_cancel_unknown_404(client, app_env):
    _assert_error(_cancel(client, app_env, 9_000_000_000), 404, "not_found")
    other = app_env.sql("SELECT id FROM appointment WHERE tenant_id = 2 AND status = 'booked' LIMIT 1")[0][0]
    _assert_error(_cancel(client, app_env, other), 404, "not_found")


@pytest.mark.parametrize("status", ["completed", "no_show", "checked_in"])
def test_cancel_finished_appointment_409(client, app_env, status):
    # A future slot, so the status alone is what makes the appointment not cancellable.
    slot_id, _, _ = free_future_slots(app_env, limit=1)[0]
    appointment_id = app_env.sql(
        """INSERT INTO appointment (tenant_id, slot_id, patient_id, doctor_id, department_id, day, starts_at,
                                    ends_at, status)
           SELECT s.tenant_id, s.id, :p, s.doctor_id, s.department_id, s.day, s.starts_at, s.ends_at, :s
           FROM slot s WHERE s.tenant_id = 1 AND s.id = :slot RETURNING id""",
        p=new_patient(app_env.sql), s=status, slot=slot_id)[0][0]
    resp = _cancel(client, app_env, appointment_id)
    _assert_error(resp, 409, "not_cancellable")
    assert status.replace("_", " ") in resp.json_body["error"]["message"]
    assert app_env.sql("SELECT status FROM appointment WHERE tenant_id = 1 AND id = :i", i=appointment_id) == [[status]]


def test_patient_cancels_own_but_not_others(client, app_env):
    slot = _take_slot(client, app_env)
    owner = new_patient(app_env.sql)
    booked = _book(client, app_env, slot["slotId"], patient_id=owner)
    assert booked.status_code == 201, booked.body
    appointment_id = booked.json_body["appointment"]["id"]
    # Another patient may not cancel it (not theirs: 404 per the service, or 403).
    other = _cancel(client, app_env, appointment_id, role="patient", token_patient=7)
    assert other.status_code in (403, 404), other.body
    _assert_error(other, other.status_code)
    own = _cancel(client, app_env, appointment_id, role="patient", token_patient=owner)
    assert own.status_code == 200, own.body
    assert own.json_body["appointment"]["status"] == "cancelled"


# --- appointment lists -----------------------------------------------------------------

def _list(client, app_env, query: str, role: str = "staff", patient: int | None = None, tenant: int = 1):
    return client.http.get(f"/api/appointments/list?clientId={tenant}{query}",
                           headers=app_env.headers(tenant, role, patient))


def test_list_shape_and_default_limit(client, app_env):
    response = _list(client, app_env, "")
    assert response.status_code == 200, response.body
    body = response.json_body
    assert set(body) == {"clientId", "appointments", "nextCursor"}
    assert body["clientId"] == 1
    assert len(body["appointments"]) == 50
    assert isinstance(body["nextCursor"], str)
    for appointment in body["appointments"]:
        assert set(appointment) == APPOINTMENT_FIELDS
    keys = [(_rfc3339(a["startsAt"]), a["id"]) for a in body["appointments"]]
    assert keys == sorted(keys)


@pytest.mark.parametrize("limit,status", [(1, 200), (200, 200), (0, 400), (201, 400)])
def test_list_limit_bounds(client, app_env, limit, status):
    response = _list(client, app_env, f"&limit={limit}")
    if status == 200:
        assert response.status_code == 200, response.body
        assert len(response.json_body["appointments"]) == limit
    else:
        _assert_error(response, 400, "validation_error")


def test_list_cursor_walks_every_page_once(client, app_env):
    start, end = appointment_window(app_env.sql, 1, span_days=3, min_count=26)
    expected = [r[0] for r in app_env.sql(
        "SELECT id FROM appointment WHERE tenant_id = 1 AND day BETWEEN CAST(:a AS date) AND CAST(:b AS date)"
        " ORDER BY starts_at, id", a=start, b=end)]
    assert len(expected) > 25
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        query = f"&from={start}&to={end}&limit=13" + (f"&cursor={cursor}" if cursor else "")
        response = _list(client, app_env, query)
        assert response.status_code == 200, response.body
        page = response.json_body
        assert len(page["appointments"]) <= 13
        seen.extend(a["id"] for a in page["appointments"])
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break
        assert len(page["appointments"]) == 13
        assert pages < 1000
    assert len(seen) == len(set(seen))
    assert seen == expected


@pytest.mark.parametrize("status", ["booked", "cancelled", "completed"])
def test_list_status_filter(client, app_env, status):
    response = _list(client, app_env, f"&status={status}&limit=200")
    assert response.status_code == 200, response.body
    appointments = response.json_body["appointments"]
    assert appointments
    assert all(a["status"] == status for a in appointments)


def test_list_other_filters(client, app_env):
    day = day_with_appointments(app_env.sql, 1, min_count=6)
    by_day = _list(client, app_env, f"&date={day}&limit=200").json_body["appointments"]
    assert by_day
    doctor, department = by_day[0]["doctorId"], by_day[0]["departmentId"]
    by_doc = _list(client, app_env, f"&date={day}&doctorId={doctor}&limit=200").json_body["appointments"]
    assert [a["id"] for a in by_doc] == [a["id"] for a in by_day if a["doctorId"] == doctor]
    by_dep = _list(client, app_env, f"&date={day}&departmentId={department}&limit=200").json_body["appointments"]
    assert [a["id"] for a in by_dep] == [a["id"] for a in by_day if a["departmentId"] == department]


def test_list_patient_sees_only_own(client, app_env):
    slot = _take_slot(client, app_env)
    patient = new_patient(app_env.sql)
    assert _book(client, app_env, slot["slotId"], patient_id=patient).status_code == 201
    response = _list(client, app_env, "&limit=200", role="patient", patient=patient)
    assert response.status_code == 200, response.body
    appointments = response.json_body["appointments"]
    assert [(a["patientId"], a["slotId"]) for a in appointments] == [(patient, slot["slotId"])]
    explicit = _list(client, app_env, f"&patientId={patient}&limit=200", role="patient", patient=patient)
    assert explicit.status_code == 200
    assert explicit.json_body["appointments"] == appointments


def test_list_patient_asking_for_other_patient_403(client, app_env):
    _assert_error(_list(client, app_env, "&patientId=9", role="patient", patient=8), 403, "forbidden")


def test_list_staff_patient_filter(client, app_env):
    response = _list(client, app_env, "&patientId=8&limit=200")
    assert response.status_code == 200
    assert all(a["patientId"] == 8 for a in response.json_body["appointments"])


# --- dashboard and cache statistics ----------------------------------------------------

@pytest.mark.parametrize("role", ["staff", "admin"])
def test_dashboard(client, app_env, role):
    response = client.http.get("/api/dashboard/stats?clientId=1", headers=app_env.headers(1, role))
    assert response.status_code == 200, response.body
    body = response.json_body
    assert {"clientId", "asOf", "today", "upcoming7d", "utilization", "byDepartment"} <= set(body)
    assert body["clientId"] == 1
    _rfc3339(body["asOf"])
    assert set(body["today"]) == {"total", "booked", "checkedIn", "completed", "cancelled", "noShow"}
    assert all(isinstance(v, int) for v in body["today"].values())
    assert isinstance(body["upcoming7d"], int) and body["upcoming7d"] > 0
    assert 0 <= body["utilization"] <= 1
    assert body["byDepartment"]
    for dep in body["byDepartment"]:
        assert set(dep) == {"departmentId", "name", "today", "utilization"}
        assert 0 <= dep["utilization"] <= 1


def test_dashboard_patient_403(client, app_env):
    _assert_error(client.http.get("/api/dashboard/stats?clientId=1", headers=app_env.headers(1, "patient", 1)),
                  403, "forbidden")


def test_cache_stats_operator(client, app_env):
    client.http.get("/api/departments?clientId=1", headers=app_env.headers())
    response = client.http.get("/api/cache/stats", headers=app_env.headers(1, "operator"))
    assert response.status_code == 200, response.body
    body = response.json_body
    assert body["fleetSource"] == "redis" and body["fleet"]["containers"] >= 1
    for part in (body["fleet"], body["container"]):
        for tier in ("l1", "l2", "db"):
            assert {"hits", "misses", "hitRate", "p50Us", "p99Us"} <= set(part[tier]), part[tier]
        assert {"entries", "bytes"} <= set(part["l1"])
        assert "staleServed" in part and "errors" in part


@pytest.mark.parametrize("role,patient", [("staff", None), ("patient", 1), ("admin", None)])
def test_cache_stats_not_operator_403(client, app_env, role, patient):
    _assert_error(client.http.get("/api/cache/stats", headers=app_env.headers(1, role, patient)), 403, "forbidden")


def test_cache_stats_needs_token(client):
    _assert_error(client.http.get("/api/cache/stats"), 401, "unauthorized")
