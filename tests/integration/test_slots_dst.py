"""Slots of a working day across daylight-saving changes, generated for explicit date
ranges (never today's): Europe/Berlin spring forward 2027-03-28 and fall back 2027-10-31,
Australia/Adelaide (a 30-minute offset: +10:30 in summer, +09:30 in winter) on 2027-04-04
and 2027-10-03. Each day still starts at 08:00 local, every slot exactly once, and an
absence removes its slots only."""
from __future__ import annotations

import datetime as dt
from typing import Iterator

import pg8000.native
import pytest

from chalicelib.booking.slot_plan import extend_slots
from tests.conftest import database_connection

ZONES = {1: "Europe/Berlin", 2: "Australia/Adelaide"}


@pytest.fixture()
def conn(fresh_db: str) -> Iterator[pg8000.native.Connection]:
    """Tenant 1 in Berlin, tenant 2 in Adelaide; one doctor each, 08:00-12:00 every day in
    30-minute slots."""
    c = database_connection(fresh_db)
    c.run("INSERT INTO tenant (id, name, time_zone) VALUES (1, 'Berlin', 'Europe/Berlin'),"
          " (2, 'Adelaide', 'Australia/Adelaide')")
    c.run("INSERT INTO department (tenant_id, id, name) VALUES (1, 1, 'General'), (2, 2, 'General')")
    c.run("INSERT INTO doctor (tenant_id, id, department_id, name, specialty) VALUES"
          " (1, 1, 1, 'Dr. A', 'GP'), (2, 2, 2, 'Dr. B', 'GP')")
    c.run("INSERT INTO working_hours (tenant_id, doctor_id, weekday, starts, ends, slot_minutes)"
          " SELECT t, t, wd, '08:00', '12:00', 30 FROM generate_series(1, 7) wd, generate_series(1, 2) t")
    try:
        yield c
    finally:
        c.close()


def _local_starts(conn: pg8000.native.Connection, tenant: int, day: dt.date) -> list[str]:
    return [r[0] for r in conn.run(
        "SELECT to_char(starts_at AT TIME ZONE CAST(:z AS text), 'HH24:MI') FROM slot"
        " WHERE tenant_id = :t AND day = :d ORDER BY starts_at", z=ZONES[tenant], t=tenant, d=day)]


def _utc_offsets(conn: pg8000.native.Connection, tenant: int, day: dt.date) -> set[str]:
    return {r[0] for r in conn.run(
        "SELECT to_char(starts_at AT TIME ZONE 'UTC', 'HH24:MI') FROM slot"
        " WHERE tenant_id = :t AND day = :d ORDER BY starts_at LIMIT 1", t=tenant, d=day)}


WORKING_DAY = ["08:00", "08:30", "09:00", "09:30", "10:00", "10:30", "11:00", "11:30"]


@pytest.mark.parametrize(("tenant", "change", "utc_before", "utc_after"), [
    (1, dt.date(2027, 3, 28), "07:00", "06:00"),     # Berlin spring forward: +01:00 -> +02:00
    (1, dt.date(2027, 10, 31), "06:00", "07:00"),    # Berlin fall back: +02:00 -> +01:00
    (2, dt.date(2027, 4, 4), "21:30", "22:30"),      # Adelaide autumn: +10:30 -> +09:30
    (2, dt.date(2027, 10, 3), "22:30", "21:30"),     # Adelaide spring: +09:30 -> +10:30
])
def test_a_working_day_starts_at_the_local_hour_across_a_dst_change(conn, tenant, change, utc_before, utc_after):
    before, after = change - dt.timedelta(days=1), change + dt.timedelta(days=1)
    inserted = extend_slots(conn, start_day=before, end_day=after, tenant_id=tenant)
    assert inserted == 3 * len(WORKING_DAY)
    for day in (before, change, after):
        assert _local_starts(conn, tenant, day) == WORKING_DAY, day
    assert _utc_offsets(conn, tenant, before) == {utc_before}
    assert _utc_offsets(conn, tenant, after) == {utc_after}
    assert extend_slots(conn, start_day=before, end_day=after, tenant_id=tenant) == 0  # never twice


def test_a_night_across_spring_forward_has_each_instant_once(conn):
    conn.run("UPDATE working_hours SET starts = '01:00', ends = '04:00' WHERE tenant_id = 1")
    day = dt.date(2027, 3, 28)
    extend_slots(conn, start_day=day, end_day=day, tenant_id=1)
    # 02:00-03:00 does not exist that night: 01:00, 01:30, then 03:00, 03:30, no duplicate.
    assert _local_starts(conn, 1, day) == ["01:00", "01:30", "03:00", "03:30"]


def test_an_absence_removes_only_its_slots(conn):
    day = dt.date(2027, 10, 31)
    conn.run("INSERT INTO absence (tenant_id, doctor_id, starts_at, ends_at, reason)"
             " VALUES (1, 1, timestamptz '2027-10-31 09:15+01', timestamptz '2027-10-31 10:00+01', 'Away')")
    extend_slots(conn, start_day=day, end_day=day, tenant_id=1)
    assert _local_starts(conn, 1, day) == ["08:00", "08:30", "10:00", "10:30", "11:00", "11:30"]
