"""Reschedules and status changes across containers: two `serve` processes share Redis and
PostgreSQL. Both hold both days of a reschedule (free slots and appointment lists) in L1;
after the write returns through one, the other's very next reads show it. 20 rounds each,
zero stale reads allowed. Then ten appointments race into one slot through both servers."""
from __future__ import annotations

import json
import threading

import pytest

from tests.data_finders import new_patients
from tests.helpers_servers import KeepAlive, free_future_slots, running_servers

ROUNDS = 20


@pytest.fixture(scope="module")
def servers(app_env):
    with running_servers(app_env.env, 2) as started:
        yield started


@pytest.fixture()
def pair(servers, app_env):
    """Keep-alive staff connections to server A and server B."""
    headers = app_env.headers(role="staff")
    a, b = KeepAlive(servers[0].port, headers), KeepAlive(servers[1].port, headers)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def _paths(doctor: int, day: str) -> tuple[str, str, str]:
    """The reads of one (doctor, day): free slots of the day, of the doctor, the day's list."""
    return (f"/api/slots/available?clientId=1&date={day}",
            f"/api/slots/available?clientId=1&date={day}&doctorId={doctor}",
            f"/api/appointments/list?clientId=1&date={day}&limit=200")


def _post(conn: KeepAlive, path: str, body: dict) -> tuple[int, dict]:
    status, _, raw = conn.request("POST", path, body=body)
    return status, json.loads(raw)


def _two_days_of_free_slots(app_env, n: int) -> tuple[list[tuple[int, int, str]], list[tuple[int, int, str]]]:
    """`n` free future slots on one day and `n` on another."""
    by_day: dict[str, list[tuple[int, int, str]]] = {}
    for slot in free_future_slots(app_env, limit=100_000):
        by_day.setdefault(slot[2], []).append(slot)
    days = [d for d, slots in by_day.items() if len(slots) >= n]
    assert len(days) >= 2, f"fewer than two days with {n} free slots"
    return by_day[days[0]][:n], by_day[days[1]][:n]


def _check_round(b: KeepAlive, old: tuple[int, int, str], new: tuple[int, int, str], appointment: int,
                 stale: list[str]) -> None:
    """B's view after the reschedule: old slot free, new slot taken, both lists right."""
    for path in _paths(old[1], old[2])[:2]:
        _, h, body = b.get_json(path)
        if old[0] not in {s["slotId"] for s in body["slots"]}:
            stale.append(f"old slot {old[0]} not free on B ({h['x-cache']}) {path}")
    for path in _paths(new[1], new[2])[:2]:
        _, h, body = b.get_json(path)
        if new[0] in {s["slotId"] for s in body["slots"]}:
            stale.append(f"new slot {new[0]} still free on B ({h['x-cache']}) {path}")
    _, h, body = b.get_json(_paths(old[1], old[2])[2])
    assert body["nextCursor"] is None, "setup: a day's list fits one page"
    if appointment in {a["id"] for a in body["appointments"]}:
        stale.append(f"appointment {appointment} still listed on its old day by B ({h['x-cache']})")
    _, h, body = b.get_json(_paths(new[1], new[2])[2])
    listed = {a["id"]: a["slotId"] for a in body["appointments"]}
    if listed.get(appointment) != new[0]:
        stale.append(f"appointment {appointment} not listed in slot {new[0]} by B ({h['x-cache']})")


def test_reschedules_on_one_process_are_seen_by_the_other(pair, app_env):
    a, b = pair
    olds, news = _two_days_of_free_slots(app_env, ROUNDS)
    patients = new_patients(app_env.sql, count=ROUNDS)
    stale: list[str] = []
    b_l1_before = 0
    for old, new, patient in zip(olds, news, patients):
        status, booked = _post(a, "/api/appointments", {"clientId": 1, "slotId": old[0], "patientId": patient})
        assert status == 201, booked
        appointment = booked["appointment"]["id"]
        for path in _paths(old[1], old[2]) + _paths(new[1], new[2]):
            a.warm(path)
            b_l1_before += b.warm(path) == "L1"

        status, moved = _post(a, f"/api/appointments/{appointment}/reschedule", {"clientId": 1, "slotId": new[0]})
        assert status == 200, moved
        assert moved["appointment"]["slotId"] == new[0]
        _check_round(b, old, new, appointment, stale)
        _check_round(a, old, new, appointment, stale)
    assert stale == [], f"{len(stale)} stale reads: {stale[:5]}"
    # B held the answers in L1 before the writes: the test measured L1 invalidation.
    assert b_l1_before >= ROUNDS * 6 * 0.9, b_l1_before


def test_status_changes_on_one_process_are_seen_in_the_others_lists(pair, app_env):
    a, b = pair
    slots = _two_days_of_free_slots(app_env, ROUNDS)[0]
    patients = new_patients(app_env.sql, count=ROUNDS)
    stale: list[str] = []
    b_l1_before = 0
    for (slot, doctor, day), patient in zip(slots, patients):
        status, booked = _post(a, "/api/appointments", {"clientId": 1, "slotId": slot, "patientId": patient})
        assert status == 201, booked
        appointment = booked["appointment"]["id"]
        lists = (_paths(doctor, day)[2], f"/api/appointments/list?clientId=1&date={day}&doctorId={doctor}&limit=200")
        for new_status in ("checked_in", "completed"):
            for path in lists:
                a.warm(path)
                b_l1_before += b.warm(path) == "L1"
            status, changed = _post(a, f"/api/appointments/{appointment}/status",
                                    {"clientId": 1, "status": new_status})
            assert status == 200, changed
            for path in lists:
                _, h, body = b.get_json(path)
                seen = {x["id"]: x["status"] for x in body["appointments"]}.get(appointment)
                if seen != new_status:
                    stale.append(f"appointment {appointment} {seen} on B, not {new_status} ({h['x-cache']})")
    assert stale == [], f"{len(stale)} stale reads: {stale[:5]}"
    assert b_l1_before >= ROUNDS * 4 * 0.9, b_l1_before


def test_ten_reschedules_into_one_slot_from_two_processes(servers, app_env):
    slots = free_future_slots(app_env, limit=11)
    assert len(slots) == 11
    (target, _, _), sources = slots[-1], [s for s, _, _ in slots[:-1]]
    patients = new_patients(app_env.sql, count=len(sources))
    headers = app_env.headers(role="staff")
    setup = KeepAlive(servers[0].port, headers)
    try:
        appointments = []
        for slot, patient in zip(sources, patients):
            status, booked = _post(setup, "/api/appointments", {"clientId": 1, "slotId": slot, "patientId": patient})
            assert status == 201, booked
            appointments.append(booked["appointment"]["id"])
    finally:
        setup.close()

    barrier = threading.Barrier(len(appointments))
    results: dict[int, tuple[int, dict]] = {}

    def move(i: int, appointment: int) -> None:
        conn = KeepAlive(servers[i % 2].port, headers)
        try:
            barrier.wait(timeout=30)
            results[appointment] = _post(conn, f"/api/appointments/{appointment}/reschedule",
                                         {"clientId": 1, "slotId": target})
        finally:
            conn.close()

    threads = [threading.Thread(target=move, args=(i, a)) for i, a in enumerate(appointments)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    statuses = sorted(status for status, _ in results.values())
    assert statuses == [200] + [409] * 9, statuses
    assert {body["error"]["code"] for status, body in results.values() if status == 409} == {"slot_taken"}
    assert app_env.sql("SELECT count(*) FROM appointment WHERE tenant_id = 1 AND slot_id = :s"
                       " AND status <> 'cancelled'", s=target) == [[1]]
    for appointment, source in zip(appointments, sources):
        status = results[appointment][0]
        slot = app_env.sql("SELECT slot_id FROM appointment WHERE tenant_id = 1 AND id = :a", a=appointment)[0][0]
        assert slot == (target if status == 200 else source), (appointment, status, slot)
