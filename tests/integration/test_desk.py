"""The booking desk's day (issue 12), against the real database and Redis: reschedules,
status transitions, a patient's overlapping bookings and the future-bookings cap.

Every test makes the data it needs with SQL (new patients, an appointment that has
started) or finds it (free slots of one doctor's day), so none depends on the weekday, the
time of day or the seed's luck."""
from __future__ import annotations

import json
import threading
import uuid
from typing import Any, Callable, Optional

import pytest
from pg8000.exceptions import DatabaseError

from chalicelib.booking.errors import BookingError
from chalicelib.http import ApiError, domain_status
from tests.data_finders import new_patient, new_patients, started_appointment
from tests.helpers_servers import free_future_slots

JSON = {"Content-Type": "application/json"}
STATUSES = ("booked", "checked_in", "completed", "cancelled", "no_show")


# --- helpers ---------------------------------------------------------------------------

def _post(client, app_env, path: str, body: Any, role: str = "staff", patient: Optional[int] = None,
          key: Optional[str] = None):
    headers = {**app_env.headers(1, role, patient), **JSON}
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.http.post(path, headers=headers, body=json.dumps(body))


def _book(client, app_env, slot: int, patient: int, role: str = "staff", key: Optional[str] = None):
    return _post(client, app_env, "/api/appointments", {"clientId": 1, "slotId": slot, "patientId": patient},
                 role, patient if role == "patient" else None, key)


def _booked(client, app_env, slot: int, patient: int) -> int:
    response = _book(client, app_env, slot, patient)
    assert response.status_code == 201, response.body
    return response.json_body["appointment"]["id"]


def _reschedule(client, app_env, appointment: Any, slot: Any, role: str = "staff",
                patient: Optional[int] = None, key: Optional[str] = None, reason: Optional[str] = None):
    body: dict[str, Any] = {"clientId": 1, "slotId": slot}
    if reason is not None:
        body["reason"] = reason
    return _post(client, app_env, f"/api/appointments/{appointment}/reschedule", body, role, patient, key)


def _status(client, app_env, appointment: Any, status: Any, role: str = "staff", patient: Optional[int] = None):
    return _post(client, app_env, f"/api/appointments/{appointment}/status", {"clientId": 1, "status": status},
                 role, patient)


def _error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.body
    assert response.json_body["error"]["code"] == code, response.body


def _same_doctor_slots(app_env, n: int) -> list[int]:
    """`n` free future slots of one doctor's day: they never overlap each other."""
    group = free_future_slots(app_env, limit=100_000, min_per_group=n)
    assert len(group) >= n, f"no doctor's day with {n} free slots"
    doctor, day = group[0][1], group[0][2]
    return [slot for slot, d, dd in group if (d, dd) == (doctor, day)][:n]


def _slots_on_two_days(app_env) -> tuple[tuple[int, int, str], tuple[int, int, str]]:
    """A free future slot on one day and one on another day."""
    slots = free_future_slots(app_env, limit=100_000)
    first = slots[0]
    second = next(s for s in slots if s[2] != first[2])
    return first, second


def _overlapping_free_slots(app_env) -> tuple[int, int]:
    """Two free future slots of different doctors that overlap in time."""
    rows = app_env.sql("""
        SELECT a.id, b.id FROM slot a
        JOIN slot b ON b.tenant_id = a.tenant_id AND b.doctor_id <> a.doctor_id
                   AND b.starts_at < a.ends_at AND a.starts_at < b.ends_at
        WHERE a.tenant_id = 1 AND a.starts_at > now() + interval '3 hours'
          AND NOT EXISTS (SELECT 1 FROM appointment x WHERE x.tenant_id = 1 AND x.slot_id IN (a.id, b.id)
                          AND x.status <> 'cancelled')
        ORDER BY a.starts_at, a.id, b.id LIMIT 1""")
    assert rows, "no two free slots of different doctors at one time"
    return rows[0][0], rows[0][1]


def _row(app_env, appointment: int) -> tuple[int, str]:
    """(slot id, status) of an appointment, from PostgreSQL."""
    slot, status = app_env.sql("SELECT slot_id, status FROM appointment WHERE tenant_id = 1 AND id = :a",
                               a=appointment)[0]
    return slot, status


def _free_slot_ids(client, app_env, slot: int) -> set[int]:
    """The free slots the API lists on `slot`'s day."""
    day = app_env.sql("SELECT day::text FROM slot WHERE tenant_id = 1 AND id = :s", s=slot)[0][0]
    response = client.http.get(f"/api/slots/available?clientId=1&date={day}", headers=app_env.headers(1, "staff"))
    assert response.status_code == 200, response.body
    return {s["slotId"] for s in response.json_body["slots"]}


def _listed(client, app_env, slot: int) -> dict[int, tuple[int, str]]:
    """{appointment id: (slot id, status)} of the API's appointment list of `slot`'s day."""
    day = app_env.sql("SELECT day::text FROM slot WHERE tenant_id = 1 AND id = :s", s=slot)[0][0]
    found: dict[int, tuple[int, str]] = {}
    cursor = ""
    while True:
        response = client.http.get(f"/api/appointments/list?clientId=1&date={day}&limit=200{cursor}",
                                   headers=app_env.headers(1, "staff"))
        assert response.status_code == 200, response.body
        found.update({a["id"]: (a["slotId"], a["status"]) for a in response.json_body["appointments"]})
        if response.json_body["nextCursor"] is None:
            return found
        cursor = f"&cursor={response.json_body['nextCursor']}"


def _race(*actions: Callable[[], int]) -> list[int]:
    """Run the actions at once in threads (behind a barrier); their HTTP statuses, in order."""
    barrier = threading.Barrier(len(actions))
    statuses: list[Optional[int]] = [None] * len(actions)
    errors: list[BaseException] = []

    def run(i: int, action: Callable[[], int]) -> None:
        try:
            barrier.wait(timeout=30)
            statuses[i] = action()
        except ApiError as exc:
            statuses[i] = exc.status
        except BookingError as exc:
            statuses[i] = domain_status(exc)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(actions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return [s for s in statuses if s is not None]


def _principal(app_env, role: str = "staff", patient: Optional[int] = None):
    from chalicelib.auth import verify_token

    return verify_token(app_env.token(1, role, patient), app_env.env["AUTH_SECRET"])


# --- reschedule ------------------------------------------------------------------------

def test_reschedule_frees_the_old_slot_and_takes_the_new_one(client, app_env):
    (old, _, _), (new, _, _) = _slots_on_two_days(app_env)
    appointment = _booked(client, app_env, old, new_patient(app_env.sql))
    # Both days are read (and cached) before the move.
    assert old not in _free_slot_ids(client, app_env, old) and new in _free_slot_ids(client, app_env, new)
    assert appointment in _listed(client, app_env, old) and appointment not in _listed(client, app_env, new)

    moved = _reschedule(client, app_env, appointment, new, reason="Moved at the patient's request")
    assert moved.status_code == 200, moved.body
    body = moved.json_body["appointment"]
    assert (body["id"], body["slotId"], body["status"]) == (appointment, new, "booked")
    assert body["reason"] == "Moved at the patient's request"
    starts, ends = app_env.sql("SELECT to_json(starts_at)::text, to_json(ends_at)::text FROM slot"
                               " WHERE tenant_id = 1 AND id = :s", s=new)[0]
    assert (json.dumps(body["startsAt"]), json.dumps(body["endsAt"])) == (starts, ends)
    assert _row(app_env, appointment) == (new, "booked")
    assert old in _free_slot_ids(client, app_env, old) and new not in _free_slot_ids(client, app_env, new)
    assert appointment not in _listed(client, app_env, old)
    assert _listed(client, app_env, new)[appointment] == (new, "booked")
    # The new slot is taken for everyone else; the old one can be booked again.
    _error(_book(client, app_env, new, new_patient(app_env.sql)), 409, "slot_taken")
    assert _book(client, app_env, old, new_patient(app_env.sql)).status_code == 201


def test_reschedule_into_a_taken_or_unknown_slot(client, app_env):
    first, second, third = _same_doctor_slots(app_env, 3)
    mine = _booked(client, app_env, first, new_patient(app_env.sql))
    _booked(client, app_env, second, new_patient(app_env.sql))
    _error(_reschedule(client, app_env, mine, second), 409, "slot_taken")
    _error(_reschedule(client, app_env, mine, 8_888_888_888), 404, "not_found")
    _error(_reschedule(client, app_env, 9_000_000_000, third), 404, "not_found")
    # A slot that has started cannot be booked by a reschedule either.
    started_slot = _row(app_env, started_appointment(app_env.sql))[0]
    _error(_reschedule(client, app_env, mine, started_slot), 409, "slot_taken")
    assert _row(app_env, mine) == (first, "booked")
    # Into the slot it already holds: nothing changes.
    same = _reschedule(client, app_env, mine, first)
    assert same.status_code == 200 and same.json_body["appointment"]["slotId"] == first, same.body


def test_only_a_booked_future_appointment_can_be_rescheduled(client, app_env):
    slots = _same_doctor_slots(app_env, 3)
    target = slots[2]
    cancelled = _booked(client, app_env, slots[0], new_patient(app_env.sql))
    assert _post(client, app_env, f"/api/appointments/{cancelled}/cancel", {"clientId": 1}).status_code == 200
    checked_in = _booked(client, app_env, slots[1], new_patient(app_env.sql))
    assert _status(client, app_env, checked_in, "checked_in").status_code == 200
    started = started_appointment(app_env.sql)
    for appointment in (cancelled, checked_in, started):
        before = _row(app_env, appointment)
        _error(_reschedule(client, app_env, appointment, target), 409, "not_reschedulable")
        assert _row(app_env, appointment) == before
    assert target in _free_slot_ids(client, app_env, target)


def test_a_patient_reschedules_only_their_own(client, app_env):
    first, second = _same_doctor_slots(app_env, 2)
    owner, other = new_patients(app_env.sql, count=2)
    appointment = _booked(client, app_env, first, owner)
    _error(_reschedule(client, app_env, appointment, second, role="patient", patient=other), 404, "not_found")
    assert _row(app_env, appointment) == (first, "booked")
    own = _reschedule(client, app_env, appointment, second, role="patient", patient=owner)
    assert own.status_code == 200, own.body
    assert _row(app_env, appointment) == (second, "booked")


def test_reschedule_with_an_idempotency_key(client, app_env):
    first, second, third, fourth = _same_doctor_slots(app_env, 4)
    patient = new_patient(app_env.sql)
    appointment = _booked(client, app_env, first, patient)
    key = f"move-{uuid.uuid4()}"
    moved = _reschedule(client, app_env, appointment, second, key=key)
    assert moved.status_code == 200, moved.body
    # A retry repeats the answer and changes nothing, even after the appointment moved on.
    assert _reschedule(client, app_env, appointment, third).status_code == 200
    again = _reschedule(client, app_env, appointment, second, key=key)
    assert (again.status_code, again.json_body) == (200, moved.json_body)
    assert _row(app_env, appointment) == (third, "booked")
    # The same key with another slot, or for another appointment, is another request.
    _error(_reschedule(client, app_env, appointment, fourth, key=key), 422, "idempotency_key_reused")
    other = _booked(client, app_env, fourth, new_patient(app_env.sql))
    _error(_reschedule(client, app_env, other, second, key=key), 422, "idempotency_key_reused")
    assert _row(app_env, appointment) == (third, "booked") and _row(app_env, other) == (fourth, "booked")


def test_an_idempotency_key_answers_one_operation_only(client, app_env):
    first, second = _same_doctor_slots(app_env, 2)
    key = f"one-op-{uuid.uuid4()}"
    booked = _book(client, app_env, first, new_patient(app_env.sql), key=key)
    assert booked.status_code == 201, booked.body
    appointment = booked.json_body["appointment"]["id"]
    _error(_reschedule(client, app_env, appointment, second, key=key), 422, "idempotency_key_reused")
    assert _row(app_env, appointment) == (first, "booked")
    assert app_env.sql("SELECT operation FROM idempotency_key WHERE key = :k", k=key) == [["book"]]


def test_a_keyed_reschedule_that_lost_stays_lost(client, app_env):
    first, second = _same_doctor_slots(app_env, 2)
    mine = _booked(client, app_env, first, new_patient(app_env.sql))
    holder = _booked(client, app_env, second, new_patient(app_env.sql))
    key = f"lost-move-{uuid.uuid4()}"
    _error(_reschedule(client, app_env, mine, second, key=key), 409, "slot_taken")
    assert _post(client, app_env, f"/api/appointments/{holder}/cancel", {"clientId": 1}).status_code == 200
    # The slot is free now, but the key's answer was the 409.
    _error(_reschedule(client, app_env, mine, second, key=key), 409, "slot_taken")
    assert _row(app_env, mine) == (first, "booked")


def test_two_appointments_swapping_slots_at_once_leave_both_in_place(client, app_env):
    """A swap cannot happen by two moves at once (each needs the other's slot free), so both
    are refused, and never with a 500 (when both rows are updated before either checks the
    other's slot, PostgreSQL breaks the deadlock and the victim's move runs once more)."""
    from chalicelib.booking import service

    staff = _principal(app_env)
    slots = [slot for slot, _, _ in free_future_slots(app_env, limit=20)]
    for first, second in zip(slots[0::2], slots[1::2]):
        one = _booked(client, app_env, first, new_patient(app_env.sql))
        two = _booked(client, app_env, second, new_patient(app_env.sql))
        statuses = _race(
            lambda: service.reschedule(staff, str(one), {"clientId": 1, "slotId": second}, None).status,
            lambda: service.reschedule(staff, str(two), {"clientId": 1, "slotId": first}, None).status)
        assert statuses == [409, 409], statuses
        assert (_row(app_env, one), _row(app_env, two)) == ((first, "booked"), (second, "booked"))


@pytest.mark.parametrize("path_id", ["abc", "0", "-3", "1.5", "9" * 20, "%20"])
def test_bad_ids_are_400(client, app_env, path_id):
    _error(_reschedule(client, app_env, path_id, 1), 400, "validation_error")
    _error(_status(client, app_env, path_id, "checked_in"), 400, "validation_error")


@pytest.mark.parametrize("body", [{"clientId": 1}, {"clientId": 1, "slotId": "5"}, {"clientId": 1, "slotId": 0},
                                  {"clientId": 1, "slotId": 5, "patientId": 2}, {"slotId": 5},
                                  {"clientId": 1, "slotId": 5, "reason": "x" * 501}])
def test_bad_reschedule_bodies_are_400(client, app_env, body):
    response = _post(client, app_env, "/api/appointments/1/reschedule", body)
    _error(response, 400, "validation_error")


# --- status transitions ----------------------------------------------------------------

# Where an appointment starts from: its status, and whether its slot has started.
SOURCES = ("booked", "booked_started", "checked_in", "completed", "cancelled", "no_show")
ALLOWED = {("booked", "checked_in"), ("booked_started", "checked_in"), ("booked_started", "no_show"),
           ("checked_in", "completed")}


def _appointment_in(client, app_env, source: str) -> int:
    """A new appointment in `source` (see SOURCES), reached through the API where it can be."""
    if source in ("booked_started", "no_show"):
        appointment = started_appointment(app_env.sql)
        if source == "no_show":
            assert _status(client, app_env, appointment, "no_show").status_code == 200
        return appointment
    appointment = _booked(client, app_env, _same_doctor_slots(app_env, 1)[0], new_patient(app_env.sql))
    if source == "cancelled":
        assert _post(client, app_env, f"/api/appointments/{appointment}/cancel", {"clientId": 1}).status_code == 200
    if source in ("checked_in", "completed"):
        assert _status(client, app_env, appointment, "checked_in").status_code == 200
    if source == "completed":
        assert _status(client, app_env, appointment, "completed").status_code == 200
    return appointment


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("target", STATUSES)
def test_every_transition(client, app_env, source, target):
    appointment = _appointment_in(client, app_env, source)
    before = _row(app_env, appointment)
    response = _status(client, app_env, appointment, target)
    if (source, target) in ALLOWED:
        assert response.status_code == 200, response.body
        assert response.json_body["appointment"]["status"] == target
        assert response.json_body["appointment"]["id"] == appointment
        assert _row(app_env, appointment) == (before[0], target)
    else:
        _error(response, 409, "invalid_transition")
        assert _row(app_env, appointment) == before


@pytest.mark.parametrize("status", ["arrived", "", "CHECKED_IN", 5, None, ["checked_in"]])
def test_bad_statuses_are_400(client, app_env, status):
    _error(_status(client, app_env, 1, status), 400, "validation_error")


def test_status_needs_staff_and_a_known_appointment(client, app_env):
    appointment = _appointment_in(client, app_env, "booked")
    patient = app_env.sql("SELECT patient_id FROM appointment WHERE id = :a", a=appointment)[0][0]
    _error(_status(client, app_env, appointment, "checked_in", role="patient", patient=patient), 403, "forbidden")
    _error(_status(client, app_env, 9_000_000_000, "checked_in"), 404, "not_found")
    missing = _post(client, app_env, f"/api/appointments/{appointment}/status", {"clientId": 1})
    _error(missing, 400, "validation_error")
    assert _row(app_env, appointment)[1] == "booked"


def test_a_status_change_shows_in_the_lists_at_once(client, app_env):
    slot = _same_doctor_slots(app_env, 1)[0]
    appointment = _booked(client, app_env, slot, new_patient(app_env.sql))
    assert _listed(client, app_env, slot)[appointment] == (slot, "booked")
    assert _listed(client, app_env, slot)[appointment] == (slot, "booked")  # now from the cache
    for status in ("checked_in", "completed"):
        assert _status(client, app_env, appointment, status).status_code == 200
        assert _listed(client, app_env, slot)[appointment] == (slot, status)
    # A status change takes or frees no slot.
    assert slot not in _free_slot_ids(client, app_env, slot)


def test_a_concurrent_cancel_and_check_in_have_one_winner(client, app_env):
    from chalicelib.booking import service

    staff = _principal(app_env)
    slots = _same_doctor_slots(app_env, 8)
    patients = new_patients(app_env.sql, count=len(slots))
    winners = set()
    for slot, patient in zip(slots, patients):
        appointment = _booked(client, app_env, slot, patient)
        ident = str(appointment)
        cancel_status, check_in_status = _race(
            lambda: service.cancel(staff, ident, {"clientId": 1}).status,
            lambda: service.set_status(staff, ident, {"clientId": 1, "status": "checked_in"}).status)
        assert sorted((cancel_status, check_in_status)) == [200, 409], (cancel_status, check_in_status)
        final = _row(app_env, appointment)[1]
        assert final == ("cancelled" if cancel_status == 200 else "checked_in")
        winners.add(final)
    assert winners <= {"cancelled", "checked_in"}


# --- one patient, one place at a time --------------------------------------------------

def test_a_patients_overlapping_booking_is_refused(client, app_env):
    here, there = _overlapping_free_slots(app_env)
    patient = new_patient(app_env.sql)
    first = _booked(client, app_env, here, patient)
    _error(_book(client, app_env, there, patient), 409, "patient_busy")
    _error(_book(client, app_env, there, patient, role="patient"), 409, "patient_busy")
    key = f"busy-{uuid.uuid4()}"
    _error(_book(client, app_env, there, patient, key=key), 409, "patient_busy")
    _error(_book(client, app_env, there, patient, key=key), 409, "patient_busy")  # the stored answer
    assert there in _free_slot_ids(client, app_env, there)
    # Someone else may take that slot; once the first is cancelled, so may the patient.
    assert _post(client, app_env, f"/api/appointments/{first}/cancel", {"clientId": 1}).status_code == 200
    assert _book(client, app_env, there, patient).status_code == 201


def test_the_database_itself_refuses_a_patients_overlap(client, app_env):
    here, there = _overlapping_free_slots(app_env)
    patient = new_patient(app_env.sql)
    _booked(client, app_env, here, patient)
    insert = """INSERT INTO appointment (tenant_id, slot_id, patient_id, doctor_id, department_id, day,
                                         starts_at, ends_at, status, cancelled_at)
                SELECT tenant_id, id, :p, doctor_id, department_id, day, starts_at, ends_at, :st,
                       CASE WHEN :st = 'cancelled' THEN now() END
                FROM slot WHERE tenant_id = 1 AND id = :s"""
    with pytest.raises(DatabaseError) as refused:
        app_env.sql(insert, p=patient, s=there, st="booked")
    assert refused.value.args[0]["C"] == "23P01"
    assert refused.value.args[0]["n"] == "appointment_no_patient_overlap"
    # Cancelled appointments may overlap anything.
    app_env.sql(insert, p=patient, s=there, st="cancelled")


def test_a_reschedule_onto_the_patients_other_appointment_is_refused(client, app_env):
    here, there = _overlapping_free_slots(app_env)
    elsewhere = _same_doctor_slots(app_env, 1)[0]
    patient = new_patient(app_env.sql)
    _booked(client, app_env, here, patient)
    movable = _booked(client, app_env, elsewhere, patient)
    _error(_reschedule(client, app_env, movable, there), 409, "patient_busy")
    assert _row(app_env, movable) == (elsewhere, "booked")
    assert there in _free_slot_ids(client, app_env, there)


# --- the patient's cap on future bookings ----------------------------------------------

def test_a_patient_token_holds_at_most_the_cap(client, app_env):
    from chalicelib.settings import get_settings

    cap = get_settings().patient_max_future_bookings
    slots = _same_doctor_slots(app_env, cap + 2)
    patient = new_patient(app_env.sql)
    booked = []
    for slot in slots[:cap]:
        response = _book(client, app_env, slot, patient, role="patient")
        assert response.status_code == 201, response.body
        booked.append(response.json_body["appointment"]["id"])
    _error(_book(client, app_env, slots[cap], patient, role="patient"), 409, "booking_limit")
    assert slots[cap] in _free_slot_ids(client, app_env, slots[cap])
    # Staff are not capped; a cancel makes room again.
    assert _book(client, app_env, slots[cap], patient).status_code == 201
    for appointment in booked[:2]:
        cancelled = _post(client, app_env, f"/api/appointments/{appointment}/cancel", {"clientId": 1},
                          role="patient", patient=patient)
        assert cancelled.status_code == 200, cancelled.body
    assert _book(client, app_env, slots[cap + 1], patient, role="patient").status_code == 201


def test_concurrent_patient_bookings_cannot_pass_the_cap(client, app_env):
    from chalicelib.booking import service
    from chalicelib.settings import get_settings

    cap = get_settings().patient_max_future_bookings
    slots = _same_doctor_slots(app_env, cap + 5)
    patient = new_patient(app_env.sql)
    for slot in slots[:cap - 1]:
        _booked(client, app_env, slot, patient)
    me = _principal(app_env, "patient", patient)
    statuses = _race(*[
        (lambda s=slot: service.book(me, {"clientId": 1, "slotId": s, "patientId": patient}, None).status)
        for slot in slots[cap - 1:]])
    assert sorted(statuses) == [201] + [409] * 5, statuses
    assert app_env.sql("SELECT count(*) FROM appointment WHERE tenant_id = 1 AND patient_id = :p"
                       " AND status <> 'cancelled' AND starts_at > now()", p=patient) == [[cap]]
