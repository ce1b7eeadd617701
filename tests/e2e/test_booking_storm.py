"""Booking storms through two real `serve` processes while two busy loops keep the cores busy:
contenders released together by a barrier, half through each server, each on its own
keep-alive connection, with DB_POOL_SIZE 4 (20 requests a process queue for 4 connections).

Every answer is 201/200 or a 409 in the error shape, exactly one booking wins each slot, no
answer waits anywhere near the statement timeout, the database ends with its invariants
held and the servers log no ERROR. Patterns (each at least 10 rounds): one slot and one
patient; one slot and 40 patients; 20 patients each on two simultaneous slots of different
doctors (patient_busy competes with slot_taken); and, smaller, one patient's token on 40
slots (the booking_limit cap), a reschedule storm and a cancel storm. Odd rounds book with
patient tokens (the capped path), even rounds with a staff token (the one-statement path).
"""
from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Iterator, Optional

import pytest

from tests.data_finders import new_doctor_slots, new_patients
from tests.helpers_servers import KeepAlive, busy_loops, running_servers

ROUNDS = 10
SMALL_ROUNDS = 5
CONTENDERS = 40
CAP = 3
# Far below the 5 s statement timeout, and above the 2 s pool wait (a request that waited
# that long for a connection would have answered 503).
SLOWEST_ANSWER_S = 2.5
SERVER_ENV = {"DB_POOL_SIZE": "4", "DB_POOL_WAIT_MS": "2000", "PATIENT_MAX_FUTURE_BOOKINGS": str(CAP)}


@dataclass(frozen=True)
class Request:
    """One POST of a storm, with the token it is sent with."""

    path: str
    body: dict
    token: str


@dataclass(frozen=True)
class Answer:
    """What one request got: status, error code (if any), the appointment (if any), seconds."""

    request: Request
    status: int
    code: Optional[str]
    appointment: Optional[dict]
    seconds: float


@pytest.fixture(scope="module")
def storm(app_env) -> Iterator[tuple[list, list[KeepAlive]]]:
    """Two servers, CONTENDERS keep-alive connections alternating between them, two busy loops."""
    with running_servers({**app_env.env, **SERVER_ENV}, 2) as servers, busy_loops(2):
        conns = [KeepAlive(servers[i % 2].port, {}) for i in range(CONTENDERS)]
        for conn in conns:
            assert conn.request("GET", "/api/health")[0] == 200
        try:
            yield servers, conns
        finally:
            for conn in conns:
                conn.close()


def _fire(conns: list[KeepAlive], requests: list[Request]) -> list[Answer]:
    """Send every request on its own connection, all released together by a barrier."""
    barrier = threading.Barrier(len(requests))
    answers: list[Answer] = []
    lock = threading.Lock()

    def send(conn: KeepAlive, request: Request) -> None:
        barrier.wait(timeout=30)
        started = time.monotonic()
        status, _, raw = conn.request("POST", request.path, body=request.body,
                                      extra={"Authorization": f"Bearer {request.token}"})
        seconds = time.monotonic() - started
        body = json.loads(raw)
        answer = Answer(request, status, body.get("error", {}).get("code"), body.get("appointment"), seconds)
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=send, args=(conn, request)) for conn, request in zip(conns, requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == len(requests), "a contender got no answer"
    return answers


def _log_errors(servers: list) -> list[str]:
    """Every ERROR line the servers logged so far."""
    lines: list[str] = []
    for server in servers:
        with open(server.log_path, "rb") as log:
            lines += [line.decode(errors="replace") for line in log if b"ERROR" in line]
    return lines


def _booking(app_env, slot: int, patient: int, staff: bool) -> Request:
    token = app_env.token(1, "staff") if staff else app_env.token(1, "patient", patient_id=patient)
    return Request("/api/appointments", {"clientId": 1, "slotId": slot, "patientId": patient}, token)


def _winners(answers: list[Answer], status: int = 201) -> Counter:
    """Successful answers per slot."""
    return Counter(a.appointment["slotId"] for a in answers if a.status == status)


def _live_per_slot(app_env, slots: list[int]) -> dict[int, int]:
    rows = app_env.sql("""SELECT s, (SELECT count(*) FROM appointment a WHERE a.tenant_id = 1 AND a.slot_id = s
                                    AND a.status <> 'cancelled')
                          FROM unnest(CAST(:s AS bigint[])) AS s""", s=slots)
    return {int(r[0]): int(r[1]) for r in rows}


def _assert_invariants(app_env) -> None:
    """One live appointment per slot, and no patient in two live appointments at an instant."""
    assert app_env.sql("""SELECT count(*) FROM (SELECT 1 FROM appointment WHERE status <> 'cancelled'
                          GROUP BY tenant_id, slot_id HAVING count(*) > 1) d""")[0][0] == 0
    assert app_env.sql("""SELECT count(*) FROM appointment a JOIN appointment b
                          ON b.tenant_id = a.tenant_id AND b.patient_id = a.patient_id AND b.id > a.id
                          WHERE a.status <> 'cancelled' AND b.status <> 'cancelled'
                            AND tstzrange(a.starts_at, a.ends_at) && tstzrange(b.starts_at, b.ends_at)""")[0][0] == 0


def _assert_clean(answers: list[Answer], allowed: dict[int, set[Optional[str]]]) -> None:
    """Only the allowed statuses and codes, and no answer slow enough to have queued near a timeout."""
    unexpected = Counter((a.status, a.code) for a in answers if a.code not in allowed.get(a.status, set()))
    assert not unexpected, f"unexpected answers: {dict(unexpected)}"
    slowest = max(a.seconds for a in answers)
    assert slowest < SLOWEST_ANSWER_S, f"slowest answer {slowest:.2f} s"


BOOKING_ANSWERS = {201: {None}, 409: {"slot_taken", "patient_busy"}}


def _one_slot_rounds(app_env, slots: list[int], patients_of_round) -> list[tuple[list[Request], list[int]]]:
    """Rounds on one slot each: (requests, contested slots)."""
    rounds = []
    for number, slot in enumerate(slots):
        requests = [_booking(app_env, slot, patient, staff=number % 2 == 0) for patient in patients_of_round(number)]
        rounds.append((requests, [slot]))
    return rounds


def test_booking_storms_have_one_winner_per_slot_and_no_5xx(storm, app_env):
    servers, conns = storm
    grid = new_doctor_slots(app_env.sql, doctors=2, instants=3 * ROUNDS)
    one_patient = new_patients(app_env.sql, count=ROUNDS)
    many = new_patients(app_env.sql, count=ROUNDS * CONTENDERS)
    pairs = new_patients(app_env.sql, count=ROUNDS * CONTENDERS // 2)
    rounds = _one_slot_rounds(app_env, [row[0] for row in grid[:ROUNDS]],
                              lambda n: [one_patient[n]] * CONTENDERS)
    rounds += _one_slot_rounds(app_env, [row[0] for row in grid[ROUNDS:2 * ROUNDS]],
                               lambda n: many[n * CONTENDERS:(n + 1) * CONTENDERS])
    for number, (first, second) in enumerate(grid[2 * ROUNDS:]):
        patients = pairs[number * CONTENDERS // 2:(number + 1) * CONTENDERS // 2]
        rounds.append(([_booking(app_env, slot, patient, staff=number % 2 == 0)
                        for patient in patients for slot in (first, second)], [first, second]))

    failed_rounds: list[str] = []
    answers: list[Answer] = []
    for number, (requests, slots) in enumerate(rounds):
        got = _fire(conns, requests)
        answers += got
        winners, live = _winners(got), _live_per_slot(app_env, slots)
        if winners != Counter(dict.fromkeys(slots, 1)) or set(live.values()) != {1} or \
                any(a.status >= 500 for a in got):
            failed_rounds.append(f"round {number}: {dict(Counter(a.status for a in got))}, live {live}")
    assert not failed_rounds, failed_rounds
    _assert_clean(answers, BOOKING_ANSWERS)
    # Two simultaneous slots never went to one patient.
    for requests, slots in rounds[2 * ROUNDS:]:
        owners = app_env.sql("SELECT patient_id FROM appointment WHERE tenant_id = 1 AND status <> 'cancelled'"
                             " AND slot_id = ANY(CAST(:s AS bigint[]))", s=slots)
        assert len({r[0] for r in owners}) == 2
    _assert_invariants(app_env)
    assert _log_errors(servers) == []


def test_patient_cap_storm_books_exactly_the_cap(storm, app_env):
    servers, conns = storm
    grid = new_doctor_slots(app_env.sql, doctors=2, instants=CONTENDERS // 2)
    slots = [slot for row in grid for slot in row]
    answers: list[Answer] = []
    for patient in new_patients(app_env.sql, count=3):
        got = _fire(conns, [_booking(app_env, slot, patient, staff=False) for slot in slots])
        answers += got
        assert sum(a.status == 201 for a in got) == CAP
        assert Counter(a.code for a in got if a.status == 409)["booking_limit"] >= CONTENDERS - 2 * CAP
        held = app_env.sql("SELECT count(*) FROM appointment WHERE tenant_id = 1 AND patient_id = :p"
                           " AND status <> 'cancelled' AND starts_at > now()", p=patient)[0][0]
        assert held == CAP
        app_env.sql("UPDATE appointment SET status = 'cancelled', cancelled_at = now()"
                    " WHERE tenant_id = 1 AND patient_id = :p", p=patient)
    _assert_clean(answers, {201: {None}, 409: {"slot_taken", "patient_busy", "booking_limit"}})
    _assert_invariants(app_env)
    assert _log_errors(servers) == []


def _booked(app_env, slots: list[int], patients: list[int]) -> list[int]:
    """Appointment ids booked now in SQL, slots[i] for patients[i]."""
    rows = app_env.sql("""INSERT INTO appointment (tenant_id, slot_id, patient_id, doctor_id, department_id, day,
                                                   starts_at, ends_at, status)
                          SELECT s.tenant_id, s.id, p.patient, s.doctor_id, s.department_id, s.day, s.starts_at,
                                 s.ends_at, 'booked'
                          FROM unnest(CAST(:s AS bigint[]), CAST(:p AS integer[])) AS p(slot, patient)
                          JOIN slot s ON s.tenant_id = 1 AND s.id = p.slot
                          RETURNING id, slot_id""", s=slots, p=patients)
    by_slot = {r[1]: r[0] for r in rows}
    return [by_slot[s] for s in slots]


def _reschedule(appointment: int, slot: int, token: str) -> Request:
    return Request(f"/api/appointments/{appointment}/reschedule", {"clientId": 1, "slotId": slot}, token)


def test_reschedule_storm_queues_swaps_and_one_target(storm, app_env):
    """Ten appointments each move to one common slot and into their neighbour's slot (a cycle
    of swaps, the classic deadlock of two updates), all at once."""
    servers, conns = storm
    staff = app_env.token(1, "staff")
    answers: list[Answer] = []
    grid = new_doctor_slots(app_env.sql, doctors=1, instants=11 * SMALL_ROUNDS)
    for number in range(SMALL_ROUNDS):
        slots = [row[0] for row in grid[number * 11:(number + 1) * 11]]
        held, target = slots[:10], slots[10]
        appointments = _booked(app_env, held, new_patients(app_env.sql, count=10))
        requests = [_reschedule(a, target, staff) for a in appointments]
        requests += [_reschedule(a, held[(i + 1) % 10], staff) for i, a in enumerate(appointments)]
        got = _fire(conns, requests)
        answers += got
        to_target = [a for a in got if a.request.body["slotId"] == target]
        assert sum(a.status == 200 for a in to_target) == 1
        assert _live_per_slot(app_env, [target])[target] == 1
        live = app_env.sql("SELECT count(*) FROM appointment WHERE id = ANY(CAST(:a AS bigint[]))"
                           " AND status = 'booked'", a=appointments)[0][0]
        assert live == 10
    _assert_clean(answers, {200: {None}, 409: {"slot_taken"}})
    _assert_invariants(app_env)
    assert _log_errors(servers) == []


def test_cancel_storm_frees_the_slot_once(storm, app_env):
    """Ten cancels of one appointment and ten bookings of its slot, all at once."""
    servers, conns = storm
    staff = app_env.token(1, "staff")
    answers: list[Answer] = []
    slots = [row[0] for row in new_doctor_slots(app_env.sql, doctors=1, instants=SMALL_ROUNDS)]
    for slot in slots:
        appointment = _booked(app_env, [slot], new_patients(app_env.sql))[0]
        cancel = Request(f"/api/appointments/{appointment}/cancel", {"clientId": 1}, staff)
        bookings = [_booking(app_env, slot, patient, staff=True) for patient in new_patients(app_env.sql, count=10)]
        got = _fire(conns, [cancel] * 10 + bookings)
        answers += got
        cancels = [a for a in got if a.request is cancel]
        booked = [a for a in got if a.request is not cancel]
        assert [a.status for a in cancels].count(200) == 1
        winners = sum(a.status == 201 for a in booked)
        assert winners <= 1
        assert _live_per_slot(app_env, [slot])[slot] == winners
    _assert_clean(answers, {200: {None}, 201: {None}, 409: {"slot_taken", "not_cancellable"}})
    _assert_invariants(app_env)
    assert _log_errors(servers) == []
