"""extend_slots: idempotent, per tenant time zone, correct across DST changes."""
from __future__ import annotations

import datetime
from typing import Iterator
from zoneinfo import ZoneInfo

import pg8000.native
import pytest

from chalicelib.booking.slot_plan import extend_slots
from tests.conftest import database_connection
from tests.data_finders import wait_clear_of_local_midnight

UTC = datetime.timezone.utc
ZONES = ("Asia/Tokyo", "Europe/Berlin")


@pytest.fixture()
def conn(fresh_db: str) -> Iterator[pg8000.native.Connection]:
    """Tenant 1 in Asia/Tokyo (doctor 1 active, doctor 2 inactive), tenant 2 in Europe/Berlin."""
    c = database_connection(fresh_db)
    c.run("INSERT INTO tenant (id, name, time_zone) VALUES (1, 'Tokyo', 'Asia/Tokyo'), (2, 'Berlin', 'Europe/Berlin')")
    c.run("INSERT INTO department (tenant_id, id, name) VALUES (1, 1, 'General'), (2, 2, 'General')")
    c.run("INSERT INTO doctor (tenant_id, id, department_id, name, specialty, active) VALUES"
          " (1, 1, 1, 'Dr. A', 'GP', true), (1, 2, 1, 'Dr. B', 'GP', false), (2, 3, 2, 'Dr. C', 'GP', true)")
    # Tokyo: every day 08:00-10:00 in 20-minute slots; Berlin: 01:00-04:00 in 30-minute slots,
    # which straddles the DST changes at 02:00/03:00 local.
    c.run("INSERT INTO working_hours (tenant_id, doctor_id, weekday, starts, ends, slot_minutes)"
          " SELECT 1, doc, wd, '08:00', '10:00', 20 FROM generate_series(1, 7) wd, generate_series(1, 2) doc")
    c.run("INSERT INTO working_hours (tenant_id, doctor_id, weekday, starts, ends, slot_minutes)"
          " SELECT 2, 3, wd, '01:00', '04:00', 30 FROM generate_series(1, 7) wd")
    try:
        yield c
    finally:
        c.close()


def _local_today(conn: pg8000.native.Connection, zone: str) -> datetime.date:
    return conn.run("SELECT (now() AT TIME ZONE CAST(:z AS text))::date", z=zone)[0][0]


def test_second_run_inserts_nothing(conn: pg8000.native.Connection) -> None:
    wait_clear_of_local_midnight(conn.run, ZONES, margin_s=20)  # a new local day adds slots
    first = extend_slots(conn, horizon_days=10)
    assert first == conn.run("SELECT count(*) FROM slot")[0][0] > 0
    seq = conn.run("SELECT last_value FROM slot_id_seq")[0][0]
    assert extend_slots(conn, horizon_days=10) == 0
    assert conn.run("SELECT count(*) FROM slot")[0][0] == first
    assert conn.run("SELECT last_value FROM slot_id_seq")[0][0] == seq  # no ids burnt


def test_default_range_and_active_doctors_only(conn: pg8000.native.Connection) -> None:
    wait_clear_of_local_midnight(conn.run, ZONES, margin_s=20)  # "today" read after the run
    extend_slots(conn, horizon_days=10, tenant_id=1)
    today = _local_today(conn, "Asia/Tokyo")
    rows = conn.run("SELECT tenant_id, doctor_id, min(day), max(day), count(*) FROM slot GROUP BY 1, 2")
    assert rows == [[1, 1, today, today + datetime.timedelta(days=10), 11 * 6]]
    # Extending the horizon adds only the new days.
    assert extend_slots(conn, horizon_days=12, tenant_id=1) == 2 * 6


def test_slot_times_follow_tenant_time_zone(conn: pg8000.native.Connection) -> None:
    wait_clear_of_local_midnight(conn.run, ZONES, margin_s=20)  # "today" read after the run
    extend_slots(conn, horizon_days=3)
    today = _local_today(conn, "Asia/Tokyo")
    eight = datetime.datetime.combine(today, datetime.time(8, 0), ZoneInfo("Asia/Tokyo")).astimezone(UTC)
    rows = conn.run("SELECT day, starts_at, ends_at FROM slot WHERE tenant_id = 1 AND starts_at = :t", t=eight)
    assert rows == [[today, eight, eight + datetime.timedelta(minutes=20)]]
    # 08:00 in Tokyo is 23:00 UTC on the previous calendar day.
    assert (eight.hour, eight.date()) == (23, today - datetime.timedelta(days=1))


def _berlin_day(conn: pg8000.native.Connection, day: datetime.date) -> list[list[object]]:
    return conn.run(
        "SELECT to_char(starts_at AT TIME ZONE 'UTC', 'HH24:MI'), ends_at - starts_at"
        " FROM slot WHERE tenant_id = 2 AND day = :d ORDER BY starts_at", d=day)


def test_dst_changes(conn: pg8000.native.Connection) -> None:
    extend_slots(conn, horizon_days=0, start_day=datetime.date(2025, 3, 29), tenant_id=2)
    half_hour = datetime.timedelta(minutes=30)
    # Normal day in winter (UTC+1): 01:00..03:30 local.
    assert _berlin_day(conn, datetime.date(2025, 3, 29)) == [
        [t, half_hour] for t in ("00:00", "00:30", "01:00", "01:30", "02:00", "02:30")]
    # Spring forward: 02:00-03:00 local does not exist and maps onto 03:00-04:00 CEST,
    # which are slots anyway; duplicates are skipped, so four slots remain.
    assert _berlin_day(conn, datetime.date(2025, 3, 30)) == [
        [t, half_hour] for t in ("00:00", "00:30", "01:00", "01:30")]
    # Summer (UTC+2).
    assert _berlin_day(conn, datetime.date(2025, 3, 31))[0][0] == "23:00"
    # Fall back: 02:00-03:00 local happens twice; each local start maps to one instant.
    fall = _berlin_day(conn, datetime.date(2025, 10, 26))
    assert len(fall) == 6 and all(length == half_hour for _, length in fall)
    assert [r[0] for r in conn.run(
        "SELECT to_char(starts_at AT TIME ZONE 'Europe/Berlin', 'HH24:MI') FROM slot"
        " WHERE tenant_id = 2 AND day = '2025-10-26' ORDER BY starts_at")] == [
        "01:00", "01:30", "02:00", "02:30", "03:00", "03:30"]
    assert conn.run("SELECT count(*) FROM slot WHERE tenant_id = 1")[0][0] == 0
