"""Schedule changes seen by two separate API server processes sharing Redis, without a
restart: each process holds the reads in its caches before an admin write on the other, and
its very next read shows the change (the catalog and slot versions moved for every container)."""
from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from tests.data_finders import new_patient, tenant_today
from tests.helpers_schedules import every_day
from tests.helpers_servers import KeepAlive, running_servers

CACHED = ("L1", "L2")  # the read before the write is held by a cache tier (L1 unless evicted meanwhile)


@pytest.fixture(scope="module")
def clients(app_env):
    with running_servers(app_env.env, 2) as (a_server, b_server):
        a, b = KeepAlive(a_server.port, app_env.headers()), KeepAlive(b_server.port, app_env.headers())
        try:
            yield a, b
        finally:
            a.close()
            b.close()


def _write(client: KeepAlive, method: str, path: str, body: dict, status: int) -> dict:
    got, _, raw = client.request(method, path, body=body)
    assert got == status, raw
    return json.loads(raw)


def _free_slot_ids(client: KeepAlive, day: dt.date, doctor: int) -> list[int]:
    status, _, body = client.get_json(f"/api/slots/available?clientId=1&date={day}&doctorId={doctor}")
    assert status == 200, body
    return [s["slotId"] for s in body["slots"]]


def test_a_new_doctor_with_hours_is_bookable_on_both_processes(clients, app_env):
    a, b = clients
    day = tenant_today(app_env.sql) + dt.timedelta(days=3)
    doctors_path = "/api/doctors?clientId=1"
    for client in (a, b):
        assert client.warm(doctors_path) in CACHED
        client.warm("/api/departments?clientId=1")

    department = _write(a, "POST", "/api/admin/departments", {"clientId": 1, "name": f"Dept {uuid.uuid4().hex[:6]}"},
                        201)["department"]["id"]
    doctor = _write(a, "POST", "/api/admin/doctors", {"clientId": 1, "name": "Dr. Both", "departmentId": department},
                    201)["doctor"]["id"]
    for client in (a, b):
        assert client.warm(f"/api/slots/available?clientId=1&date={day}&doctorId={doctor}") in CACHED
        assert _free_slot_ids(client, day, doctor) == []
    _write(a, "PUT", f"/api/admin/doctors/{doctor}/working-hours",
           {"clientId": 1, "hours": every_day("14:00", "16:00", 20)}, 200)

    for client in (b, a):
        _, _, listed = client.get_json(doctors_path)
        assert doctor in [d["id"] for d in listed["doctors"]]
        _, _, departments = client.get_json("/api/departments?clientId=1")
        assert {"id": department, "doctorCount": 1}.items() <= next(
            d for d in departments["departments"] if d["id"] == department).items()
        assert len(_free_slot_ids(client, day, doctor)) == 6
    slot = _free_slot_ids(b, day, doctor)[0]
    booked = _write(b, "POST", "/api/appointments",
                    {"clientId": 1, "slotId": slot, "patientId": new_patient(app_env.sql)}, 201)
    assert booked["appointment"]["doctorId"] == doctor
    assert slot not in _free_slot_ids(a, day, doctor)


def test_an_absence_on_one_process_empties_the_day_on_the_other(clients, app_env):
    a, b = clients
    day = tenant_today(app_env.sql) + dt.timedelta(days=4)
    department = _write(a, "POST", "/api/admin/departments", {"clientId": 1, "name": f"Away {uuid.uuid4().hex[:6]}"},
                        201)["department"]["id"]
    doctor = _write(a, "POST", "/api/admin/doctors", {"clientId": 1, "name": "Dr. Away", "departmentId": department},
                    201)["doctor"]["id"]
    _write(a, "PUT", f"/api/admin/doctors/{doctor}/working-hours",
           {"clientId": 1, "hours": every_day("09:00", "10:00", 30)}, 200)
    assert b.warm(f"/api/slots/available?clientId=1&date={day}&doctorId={doctor}") in CACHED
    assert b.warm(f"/api/slots/available?clientId=1&date={day}") in CACHED
    slots = _free_slot_ids(b, day, doctor)
    assert len(slots) == 2
    starts = app_env.sql("SELECT min(starts_at), max(ends_at) FROM slot WHERE id = ANY(:ids)", ids=slots)[0]
    _write(a, "POST", f"/api/admin/doctors/{doctor}/absences",
           {"clientId": 1, "from": starts[0].isoformat(), "to": starts[1].isoformat()}, 201)
    assert _free_slot_ids(b, day, doctor) == []
    _, _, whole_day = b.get_json(f"/api/slots/available?clientId=1&date={day}")
    assert not set(slots) & {s["slotId"] for s in whole_day["slots"]}


def test_a_renamed_department_shows_on_both_processes_next_read(clients, app_env):
    a, b = clients
    department = app_env.sql("SELECT id FROM department WHERE tenant_id = 1 AND active ORDER BY id LIMIT 1")[0][0]
    for client in (a, b):
        assert client.warm("/api/departments?clientId=1") in CACHED
    name = f"Renamed {uuid.uuid4().hex[:6]}"
    _write(b, "PATCH", f"/api/admin/departments/{department}", {"clientId": 1, "name": name}, 200)
    for client in (a, b):
        _, headers, body = client.get_json("/api/departments?clientId=1")
        assert {d["id"]: d["name"] for d in body["departments"]}[department] == name, headers.get("x-cache")


def test_a_bad_row_rejects_a_served_bulk_import_with_its_index(clients, app_env):
    """1,000 patients (about 80 KiB of JSON, over the other routes' 16 KiB) through `serve`:
    one bad row is a 400 naming its index and nothing is written; the good batch imports."""
    a, _ = clients
    prefix = uuid.uuid4().hex[:8]
    rows = [{"name": f"Served {i}", "birthDate": "1975-06-01", "recordNumber": f"{prefix}-{i:04d}"}
            for i in range(1000)]
    bad = [*rows[:612], {**rows[612], "name": " "}, *rows[613:]]
    error = _write(a, "POST", "/api/admin/patients/bulk", {"clientId": 1, "patients": bad}, 400)["error"]
    assert (error["details"][0]["index"], error["details"][0]["field"]) == (612, "name")
    assert app_env.sql("SELECT count(*) FROM patient WHERE record_number LIKE :p", p=f"{prefix}-%") == [[0]]
    assert _write(a, "POST", "/api/admin/patients/bulk", {"clientId": 1, "patients": rows}, 200) == {
        "created": 1000, "updated": 0}
