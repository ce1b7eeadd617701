"""The interleaving that deadlocked concurrent bookings, replayed step by step on real
connections with the booking statement the app sends.

A third transaction holds an uncommitted live appointment that overlaps both bookings (the
same doctor at that instant, or the same patient). Booking A starts and waits on it; then
booking B starts. When the third transaction rolls back: before the lock order, A and B had
both inserted their index entries and each then waited on the other's (40P01 after the
deadlock timeout, or the statement timeout); now B queues on A's slot (or patient) row lock
without inserting anything, and finds A's committed row: A books, B is the 409 it should be.
"""
from __future__ import annotations

import threading
import time

import pg8000.native
import pytest
from pg8000.exceptions import DatabaseError

from chalicelib.audit.actor import Actor
from chalicelib.audit.writes import audit_params
from chalicelib.booking.commands import BOOK_SQL
from tests.conftest import database_connection
from tests.data_finders import new_doctor_slots, new_patients

_OVERLAPPING_INSERT = """
INSERT INTO appointment (tenant_id, slot_id, patient_id, doctor_id, department_id, day, starts_at, ends_at, status)
SELECT 1, s.id, :patient, s.doctor_id, s.department_id, s.day, t.starts_at, t.ends_at, 'booked'
FROM slot s, slot t WHERE s.tenant_id = 1 AND s.id = :slot AND t.tenant_id = 1 AND t.id = :times
"""


def _wait_until_blocked(watcher: pg8000.native.Connection, pid: int) -> None:
    """Return once backend `pid` waits on a lock (fails after 10 s)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if watcher.run("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :p", p=pid) == [[True]]:
            return
        time.sleep(0.01)
    raise AssertionError(f"backend {pid} never waited on a lock")


class Booking(threading.Thread):
    """One booking statement on its own connection; `outcome` is "created", "no row", or
    the SQLSTATE and constraint of the error that refused it."""

    def __init__(self, conn: pg8000.native.Connection, slot: int, patient: int) -> None:
        super().__init__(daemon=True)
        self.conn, self.slot, self.patient = conn, slot, patient
        self.pid = conn.run("SELECT pg_backend_pid()")[0][0]
        self.outcome = "not finished"

    def run(self) -> None:
        try:
            rows = self.conn.run(BOOK_SQL, t=1, slot=self.slot, patient=self.patient, reason=None,
                                 **audit_params(Actor("test", "staff", "test", 1), "book"))
            self.outcome = "created" if rows[0][-1] is not None else "no row"
        except DatabaseError as exc:
            self.outcome = f"{exc.args[0].get('C')} {exc.args[0].get('n')}"


def _scenario(app_env, shared: str) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int, int], str]:
    """(slot, patient) of A and of B, the blocker's (slot, times of slot, patient), and B's
    expected outcome, for bookings that share a slot (so a doctor) or a patient."""
    (a_slot, b_slot, _), (later_slot, _, later_other) = new_doctor_slots(
        app_env.sql, doctors=3, instants=2)
    first, second, third = new_patients(app_env.sql, count=3)
    if shared == "slot":
        # The blocker: A's doctor at A's instant, in another slot of that doctor.
        return (a_slot, first), (a_slot, second), (later_slot, a_slot, third), "no row"
    # The blocker: the same patient at that instant, with a third doctor.
    return ((a_slot, first), (b_slot, first), (later_other, a_slot, first),
            "23P01 appointment_no_patient_overlap")


@pytest.mark.parametrize("shared", ["slot", "patient"])
def test_bookings_held_up_together_queue_instead_of_deadlocking(app_env, shared):
    a, b, blocker, b_expected = _scenario(app_env, shared)
    holder, watcher, *contenders = [database_connection(app_env.db_name) for _ in range(4)]
    try:
        for conn in contenders:
            conn.run("SET statement_timeout = '5s'")
        holder.run("BEGIN")
        holder.run(_OVERLAPPING_INSERT, slot=blocker[0], times=blocker[1], patient=blocker[2])
        first = Booking(contenders[0], *a)
        first.start()
        _wait_until_blocked(watcher, first.pid)
        second = Booking(contenders[1], *b)
        second.start()
        _wait_until_blocked(watcher, second.pid)
        holder.run("ROLLBACK")
        for booking in (first, second):
            booking.join(15)
        assert (first.outcome, second.outcome) == ("created", b_expected)
    finally:
        for conn in (holder, watcher, *contenders):
            conn.close()
    live = app_env.sql("SELECT count(*) FROM appointment WHERE tenant_id = 1 AND status <> 'cancelled'"
                       " AND slot_id = ANY(CAST(:s AS bigint[]))", s=[a[0], b[0]])[0][0]
    assert live == 1
