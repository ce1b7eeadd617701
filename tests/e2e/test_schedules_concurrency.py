"""An absence added while bookings for the same doctor and day arrive concurrently through
`serve`: every request gets a normal answer (never a 5xx), and afterwards no live
appointment lies inside the absence and no slot inside it is offered, whichever order
PostgreSQL gave the writes (bookings lock slots first, the regeneration locks the doctor's
future slots in id order)."""
from __future__ import annotations

import datetime as dt
import json
import threading
import uuid

import pytest

from tests.data_finders import new_patients, tenant_today
from tests.helpers_schedules import every_day, free_slots_of
from tests.helpers_servers import KeepAlive, running_servers

BOOKERS = 6


@pytest.fixture(scope="module")
def port(app_env):
    with running_servers(app_env.env, 1) as (server,):
        yield server.port


def _doctor_with_hours(client: KeepAlive) -> int:
    _, _, body = client.get_json("/api/departments?clientId=1")
    department = body["departments"][0]["id"]
    status, _, raw = client.request("POST", "/api/admin/doctors",
                                    body={"clientId": 1, "name": f"Dr. Race {uuid.uuid4().hex[:4]}",
                                          "departmentId": department})
    assert status == 201, raw
    doctor = json.loads(raw)["doctor"]["id"]
    status, _, raw = client.request("PUT", f"/api/admin/doctors/{doctor}/working-hours",
                                    body={"clientId": 1, "hours": every_day("08:00", "12:00", 20)})
    assert status == 200, raw
    return doctor


def test_bookings_racing_an_absence_leave_nothing_inside_it(port, app_env):
    admin = KeepAlive(port, app_env.headers())
    doctor = _doctor_with_hours(admin)
    day = tenant_today(app_env.sql) + dt.timedelta(days=2)
    slots = free_slots_of(app_env.sql, doctor, day)
    assert len(slots) == 12
    span = app_env.sql("SELECT min(starts_at), max(ends_at) FROM slot WHERE id = ANY(:ids)", ids=slots[3:9])[0]
    patients = new_patients(app_env.sql, count=len(slots))
    statuses: list[int] = []
    start = threading.Barrier(BOOKERS + 1)

    def book(share: list[tuple[int, int]]) -> None:
        client = KeepAlive(port, app_env.headers(role="staff"))
        start.wait()
        for slot, patient in share:
            status, _, _ = client.request("POST", "/api/appointments",
                                          body={"clientId": 1, "slotId": slot, "patientId": patient})
            statuses.append(status)
        client.close()

    pairs = list(zip(slots, patients))
    threads = [threading.Thread(target=book, args=(pairs[i::BOOKERS],)) for i in range(BOOKERS)]
    for thread in threads:
        thread.start()
    start.wait()
    status, _, raw = admin.request("POST", f"/api/admin/doctors/{doctor}/absences", body={
        "clientId": 1, "from": span[0].isoformat(), "to": span[1].isoformat(), "cancelAppointments": True})
    for thread in threads:
        thread.join(timeout=60)
    admin.close()

    assert status == 201, raw
    assert len(statuses) == len(slots) and set(statuses) <= {201, 404}, statuses
    inside = app_env.sql("""SELECT count(*) FILTER (WHERE a.status <> 'cancelled') FROM appointment a
                            WHERE a.doctor_id = :d AND a.starts_at < :e AND a.ends_at > :s""",
                         d=doctor, s=span[0], e=span[1])[0][0]
    assert inside == 0
    assert set(free_slots_of(app_env.sql, doctor, day)) <= set(slots[:3] + slots[9:])
