"""No double booking, ever: concurrent bookings of one slot from threads and processes,
the database constraints themselves, and Idempotency-Key retries."""
from __future__ import annotations

import json
import multiprocessing
import os
import threading
import uuid

import pytest
from pg8000.exceptions import DatabaseError

from tests.data_finders import days_with_free_slots, new_patient, new_patients

ATTEMPTS = 50
# 50 spawned interpreters each importing the app cost minutes of CPU on a small shared host,
# so by default 5 processes make 10 attempts each (all 50 race across processes; within a
# process the 10 are sequential). HB_BOOKING_PROCESSES=50 runs one attempt per process.
PROCESSES = int(os.environ.get("HB_BOOKING_PROCESSES", "5"))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JSON = {"Content-Type": "application/json"}
_used_slots: set[int] = set()


def _free_slots(client, app_env, day: str) -> list[dict]:
    """The API's free slots of tenant 1 on `day` that never had an appointment nor were taken here."""
    response = client.http.get(f"/api/slots/available?clientId=1&date={day}", headers=app_env.headers(1, "staff"))
    assert response.status_code == 200, response.body
    # Skip slots that ever had an appointment (the seed cancelled some), so row counts start at 0.
    history = {r[0] for r in app_env.sql("SELECT slot_id FROM appointment WHERE tenant_id = 1"
                                         " AND day = CAST(:d AS date)", d=day)}
    return [s for s in response.json_body["slots"] if s["slotId"] not in _used_slots | history]


def _take_slot(client, app_env) -> dict:
    for day in days_with_free_slots(app_env.sql, 1):
        slots = _free_slots(client, app_env, day)
        if slots:
            _used_slots.add(slots[0]["slotId"])
            return slots[0]
    raise AssertionError("no free slot left")


def _live_rows(app_env, slot_id: int) -> int:
    return app_env.sql("SELECT count(*) FROM appointment WHERE tenant_id = 1 AND slot_id = :s"
                       " AND status <> 'cancelled'", s=slot_id)[0][0]


def _all_rows(app_env, slot_id: int) -> int:
    return app_env.sql("SELECT count(*) FROM appointment WHERE tenant_id = 1 AND slot_id = :s", s=slot_id)[0][0]


def _assert_outcome(results: list[tuple[int, dict]], app_env, slot_id: int) -> None:
    statuses = sorted(status for status, _ in results)
    assert len(results) == ATTEMPTS
    assert statuses.count(201) == 1, statuses
    assert statuses.count(409) == ATTEMPTS - 1, statuses
    for status, body in results:
        if status == 409:
            assert body["error"]["code"] == "slot_taken", body
        else:
            assert body["appointment"]["slotId"] == slot_id
    assert _live_rows(app_env, slot_id) == 1
    assert _all_rows(app_env, slot_id) == 1


# --- threads ---------------------------------------------------------------------------

def test_concurrent_bookings_from_threads(client, app_env):
    from chalicelib.auth import verify_token
    from chalicelib.booking import service

    slot = _take_slot(client, app_env)
    principal = verify_token(app_env.token(1, "staff"), app_env.env["AUTH_SECRET"])
    barrier = threading.Barrier(ATTEMPTS)
    results: list[tuple[int, dict]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def attempt(patient_id: int) -> None:
        try:
            barrier.wait(timeout=30)
            response = service.book(principal, {"clientId": 1, "slotId": slot["slotId"], "patientId": patient_id},
                                    None)
            with lock:
                results.append((response.status, json.loads(response.body)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=attempt, args=(p,)) for p in new_patients(app_env.sql, count=ATTEMPTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    _assert_outcome(results, app_env, slot["slotId"])
    # the winner's slot is gone from the free list
    assert slot["slotId"] not in [s["slotId"] for s in _free_slots(client, app_env, _slot_day(app_env, slot))]


def _slot_day(app_env, slot: dict) -> str:
    """The slot's local day (ISO date)."""
    return app_env.sql("SELECT day::text FROM slot WHERE tenant_id = 1 AND id = :s", s=slot["slotId"])[0][0]


# --- processes -------------------------------------------------------------------------

def _process_attempt(env: dict, token: str, slot_id: int, patient_ids: list[int], barrier, queue) -> None:
    """Runs in a spawned process: its own app, settings, DB connection and cache."""
    os.environ.update(env)
    import sys

    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from chalice.test import Client

    import app as app_module

    try:
        with Client(app_module.app, stage_name="dev", project_dir=ROOT) as client:
            barrier.wait(timeout=120)
            for patient_id in patient_ids:
                response = client.http.post(
                    "/api/appointments", headers={"Authorization": f"Bearer {token}", **JSON},
                    body=json.dumps({"clientId": 1, "slotId": slot_id, "patientId": patient_id}))
                queue.put((response.status_code, response.json_body))
    except BaseException as exc:  # noqa: BLE001 - the parent asserts on it
        queue.put((-1, {"exception": repr(exc)}))


def test_concurrent_bookings_from_processes(client, app_env):
    slot = _take_slot(client, app_env)
    ctx = multiprocessing.get_context("spawn")
    assert ATTEMPTS % PROCESSES == 0
    per_process = ATTEMPTS // PROCESSES
    barrier = ctx.Barrier(PROCESSES)
    queue = ctx.Queue()
    token = app_env.token(1, "staff")
    patients = new_patients(app_env.sql, count=ATTEMPTS)
    processes = [ctx.Process(target=_process_attempt,
                             args=(dict(app_env.env), token, slot["slotId"],
                                   patients[i * per_process:(i + 1) * per_process], barrier, queue))
                 for i in range(PROCESSES)]
    for process in processes:
        process.start()
    try:
        results = []
        while len(results) < ATTEMPTS:
            results.append(queue.get(timeout=180))
            if results[-1][0] == -1:
                break
    finally:
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.terminate()
    assert all(status != -1 for status, _ in results), results
    _assert_outcome(results, app_env, slot["slotId"])


# --- the database constraints themselves ----------------------------------------------

def _sqlstate(exc: DatabaseError) -> str:
    return exc.args[0]["C"]


def _two_free_slots_of_one_doctor(client, app_env) -> tuple[dict, dict]:
    for day in days_with_free_slots(app_env.sql, 1, min_free=2):
        by_doctor: dict[int, list[dict]] = {}
        for slot in _free_slots(client, app_env, day):
            by_doctor.setdefault(slot["doctorId"], []).append(slot)
        for slots in by_doctor.values():
            if len(slots) >= 2:
                _used_slots.update({slots[0]["slotId"], slots[1]["slotId"]})
                return slots[0], slots[1]
    raise AssertionError("no doctor with two free slots")


_INSERT = """
INSERT INTO appointment (tenant_id, slot_id, patient_id, doctor_id, department_id, day, starts_at, ends_at,
                         status)
SELECT 1, :slot, :patient, s.doctor_id, s.department_id, s.day, t.starts_at, t.ends_at, 'booked'
FROM slot s, slot t WHERE s.tenant_id = 1 AND s.id = :slot AND t.tenant_id = 1 AND t.id = :times
"""


def test_database_refuses_doctor_overlap_and_second_live_appointment(client, app_env):
    first, second = _two_free_slots_of_one_doctor(client, app_env)
    # Each row of another patient, so only the doctor's and the slot's constraints can refuse it.
    patients = iter(new_patients(app_env.sql, count=4))
    booked = client.http.post("/api/appointments", headers={**app_env.headers(1, "staff"), **JSON},
                              body=json.dumps({"clientId": 1, "slotId": first["slotId"],
                                               "patientId": next(patients)}))
    assert booked.status_code == 201, booked.body

    # Another slot of the same doctor, but at the booked appointment's time: exclusion constraint.
    with pytest.raises(DatabaseError) as overlap:
        app_env.sql(_INSERT, slot=second["slotId"], times=first["slotId"], patient=next(patients))
    assert _sqlstate(overlap.value) == "23P01", overlap.value

    # The same slot again (at a time that overlaps nothing): the one-live-per-slot index.
    with pytest.raises(DatabaseError) as duplicate:
        app_env.sql(_INSERT, slot=first["slotId"], times=second["slotId"], patient=next(patients))
    assert _sqlstate(duplicate.value) == "23505", duplicate.value

    # Once the first is cancelled the overlap is allowed (the constraints only cover live rows).
    cancelled = client.http.post(f"/api/appointments/{booked.json_body['appointment']['id']}/cancel",
                                 headers={**app_env.headers(1, "staff"), **JSON}, body='{"clientId":1}')
    assert cancelled.status_code == 200, cancelled.body
    app_env.sql(_INSERT, slot=first["slotId"], times=first["slotId"], patient=next(patients))
    assert _live_rows(app_env, first["slotId"]) == 1
    assert _live_rows(app_env, second["slotId"]) == 0


# --- Idempotency-Key -------------------------------------------------------------------

def _book(client, app_env, body: dict, key: str | None):
    headers = {**app_env.headers(1, "staff"), **JSON}
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.http.post("/api/appointments", headers=headers, body=json.dumps(body))


def test_idempotent_retry_returns_first_answer(client, app_env):
    slot = _take_slot(client, app_env)
    key = f"retry-{uuid.uuid4()}"
    body = {"clientId": 1, "slotId": slot["slotId"], "patientId": new_patient(app_env.sql), "reason": "retry"}
    first = _book(client, app_env, body, key)
    assert first.status_code == 201, first.body
    for _ in range(3):
        again = _book(client, app_env, body, key)
        assert again.status_code == 201, again.body
        assert again.json_body == first.json_body
    assert _all_rows(app_env, slot["slotId"]) == 1
    # Without the key, the same request is a new attempt on a taken slot.
    assert _book(client, app_env, body, None).status_code == 409


def test_idempotency_key_with_different_body_is_422(client, app_env):
    slot = _take_slot(client, app_env)
    other = _take_slot(client, app_env)
    key = f"diff-{uuid.uuid4()}"
    patient = new_patient(app_env.sql)
    first = _book(client, app_env, {"clientId": 1, "slotId": slot["slotId"], "patientId": patient}, key)
    assert first.status_code == 201, first.body
    changed = _book(client, app_env, {"clientId": 1, "slotId": other["slotId"], "patientId": patient}, key)
    assert changed.status_code == 422, changed.body
    assert changed.json_body["error"]["code"] == "idempotency_key_reused"
    assert _all_rows(app_env, other["slotId"]) == 0
    assert _all_rows(app_env, slot["slotId"]) == 1


def test_idempotent_retry_of_409_stays_409(client, app_env):
    slot = _take_slot(client, app_env)
    winner = _book(client, app_env, {"clientId": 1, "slotId": slot["slotId"], "patientId": new_patient(app_env.sql)},
                   None)
    assert winner.status_code == 201, winner.body
    key = f"lost-{uuid.uuid4()}"
    body = {"clientId": 1, "slotId": slot["slotId"], "patientId": new_patient(app_env.sql)}
    lost = _book(client, app_env, body, key)
    assert lost.status_code == 409 and lost.json_body["error"]["code"] == "slot_taken", lost.body
    # Even once the slot is free again, a retry with that key repeats the stored 409.
    cancel = client.http.post(f"/api/appointments/{winner.json_body['appointment']['id']}/cancel",
                              headers={**app_env.headers(1, "staff"), **JSON}, body='{"clientId":1}')
    assert cancel.status_code == 200, cancel.body
    retry = _book(client, app_env, body, key)
    assert retry.status_code == 409, retry.body
    assert retry.json_body == lost.json_body
    assert _live_rows(app_env, slot["slotId"]) == 0


def test_concurrent_retries_with_one_key_create_one_row(client, app_env):
    from chalicelib.auth import verify_token
    from chalicelib.booking import service

    slot = _take_slot(client, app_env)
    principal = verify_token(app_env.token(1, "staff"), app_env.env["AUTH_SECRET"])
    key = f"race-{uuid.uuid4()}"
    body = {"clientId": 1, "slotId": slot["slotId"], "patientId": new_patient(app_env.sql)}
    barrier = threading.Barrier(10)
    answers: list[tuple[int, str]] = []

    def attempt() -> None:
        barrier.wait(timeout=30)
        response = service.book(principal, body, key)
        answers.append((response.status, response.body))

    threads = [threading.Thread(target=attempt) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 10
    assert {status for status, _ in answers} == {201}
    assert len({json.loads(text)["appointment"]["id"] for _, text in answers}) == 1
    assert _all_rows(app_env, slot["slotId"]) == 1
