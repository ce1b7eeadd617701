"""Demo data: sensible small data set, deterministic per seed, refuses to overwrite."""
from __future__ import annotations

from typing import Iterator

import pg8000.native
import pytest

from chalicelib.db.seed import PLANS, SeedRefused, seed
from tests.conftest import create_database, database_connection, drop_database
from tests.data_finders import wait_clear_of_local_midnight

# Each seeded table with its key, for row-by-row comparison.
TABLE_KEYS = {
    "tenant": "id", "department": "tenant_id, id", "doctor": "tenant_id, id",
    "working_hours": "tenant_id, doctor_id, weekday, starts", "slot": "tenant_id, id",
    "patient": "tenant_id, id", "appointment": "tenant_id, id",
}
STATUSES = {"booked", "checked_in", "completed", "cancelled", "no_show"}
SMALL_ZONES = tuple(sorted({zone for _, zone, _ in PLANS["small"].tenants}))


@pytest.fixture()
def conn(fresh_db: str) -> Iterator[pg8000.native.Connection]:
    c = database_connection(fresh_db)
    try:
        yield c
    finally:
        c.close()


def table_digests(conn: pg8000.native.Connection) -> dict[str, str]:
    """md5 over each table's rows in key order."""
    return {
        table: conn.run(f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY {key}), '')) FROM {table} t")[0][0]
        for table, key in TABLE_KEYS.items()
    }


def schema_snapshot(conn: pg8000.native.Connection) -> list[list[str]]:
    return conn.run(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE connamespace = 'public'::regnamespace"
        " UNION ALL SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
        " ORDER BY 1, 2, 3")


def test_small_seed_is_sensible(conn: pg8000.native.Connection) -> None:
    wait_clear_of_local_midnight(conn.run, SMALL_ZONES)  # the checks below use the seed's "today"
    lines: list[str] = []
    counts = seed(conn, "small", progress=lines.append)
    assert lines and lines[-1].startswith("committed")
    for table, n in counts.items():
        assert conn.run(f"SELECT count(*) FROM {table}")[0][0] == n
    assert counts["tenant"] == 3 and counts["department"] == 12 and counts["patient"] == 600
    assert conn.run("SELECT count(DISTINCT time_zone) FROM tenant")[0][0] == 3

    per_tenant = conn.run("""
        SELECT t.id,
               count(DISTINCT s.day) FILTER (WHERE s.day >= l.today),
               max(s.day) - l.today,
               min(s.day) - l.today,
               count(*) FILTER (WHERE s.day > l.today),
               count(*) FILTER (WHERE s.day > l.today AND EXISTS (
                   SELECT 1 FROM appointment a
                   WHERE a.tenant_id = s.tenant_id AND a.slot_id = s.id AND a.status <> 'cancelled'))
        FROM tenant t
        CROSS JOIN LATERAL (SELECT (now() AT TIME ZONE t.time_zone)::date AS today) l
        JOIN slot s ON s.tenant_id = t.id
        GROUP BY t.id, l.today ORDER BY t.id""")
    for _, days_ahead, last, first, future, future_taken in per_tenant:
        assert days_ahead >= 14 and 28 <= last <= 30 and -7 <= first <= -6  # no slots on Sundays
        assert 0.1 * future < future_taken < 0.5 * future  # most future slots are free

    # Checked in only happens today between 12:00 and 14:00 local, and a weekend day has no
    # slots then: it is there exactly when some tenant's today has slots in that band.
    statuses = {r[0] for r in conn.run("SELECT DISTINCT status FROM appointment")}
    now_band = conn.run("""
        SELECT count(*) FROM slot s JOIN tenant t ON t.id = s.tenant_id
        WHERE s.day = (now() AT TIME ZONE t.time_zone)::date
          AND (s.starts_at AT TIME ZONE t.time_zone)::time >= time '12:00'
          AND (s.starts_at AT TIME ZONE t.time_zone)::time < time '14:00'""")[0][0]
    assert statuses == STATUSES - ({"checked_in"} if now_band == 0 else set()), (statuses, now_band)
    assert conn.run("""
        SELECT count(*) FROM appointment a JOIN tenant t ON t.id = a.tenant_id
        WHERE a.status = 'checked_in' AND NOT (a.day = (now() AT TIME ZONE t.time_zone)::date
              AND (a.starts_at AT TIME ZONE t.time_zone)::time BETWEEN time '12:00' AND time '14:00')""")[0][0] == 0
    # Appointments copy their slot; every appointment was created before now.
    assert conn.run("""
        SELECT count(*) FROM appointment a JOIN slot s ON s.tenant_id = a.tenant_id AND s.id = a.slot_id
        WHERE (a.doctor_id, a.department_id, a.day, a.starts_at, a.ends_at)
              IS DISTINCT FROM (s.doctor_id, s.department_id, s.day, s.starts_at, s.ends_at)
           OR a.created_at > now() OR a.cancelled_at > now() OR a.cancelled_at < a.created_at""")[0][0] == 0
    assert conn.run("SELECT count(*) FROM patient WHERE record_number !~ '^MRN-[0-9]{6}$'")[0][0] == 0
    # Sequences continue past the loaded ids.
    assert conn.run("SELECT nextval('slot_id_seq') > max(id) FROM slot")[0][0]
    assert conn.run("SELECT nextval('appointment_id_seq') > max(id) FROM appointment")[0][0]
    assert conn.run("SELECT count(*) FROM dashboard_daily")[0][0] > 0


def test_seed_keeps_schema_identical(conn: pg8000.native.Connection) -> None:
    before = schema_snapshot(conn)
    seed(conn, "small")
    assert schema_snapshot(conn) == before


def test_same_seed_same_rows_other_seed_other_rows(conn: pg8000.native.Connection) -> None:
    wait_clear_of_local_midnight(conn.run, SMALL_ZONES)  # equal rows need the same local "today"
    seed(conn, "small", seed=7)
    other_name = create_database()
    try:
        other = database_connection(other_name)
        try:
            seed(other, "small", seed=7)
            assert table_digests(other) == table_digests(conn)
            seed(other, "small", seed=8, force=True)
            changed = {t for t, d in table_digests(other).items() if d != table_digests(conn)[t]}
        finally:
            other.close()
    finally:
        drop_database(other_name)
    assert {"doctor", "working_hours", "slot", "patient", "appointment"} <= changed


def test_refuses_non_empty_database_unless_forced(conn: pg8000.native.Connection) -> None:
    wait_clear_of_local_midnight(conn.run, SMALL_ZONES)  # equal rows need the same local "today"
    seed(conn, "small")
    conn.run("INSERT INTO idempotency_key (tenant_id, subject, key, operation, request_hash, status_code, body)"
             " VALUES (1, 'staff-1', 'k', 'book', 'h', 201, '{}')")
    digests = table_digests(conn)
    with pytest.raises(SeedRefused):
        seed(conn, "small", seed=2)
    assert table_digests(conn) == digests
    assert conn.run("SELECT count(*) FROM idempotency_key")[0][0] == 1

    seed(conn, "small", force=True)
    assert table_digests(conn) == digests
    assert conn.run("SELECT count(*) FROM idempotency_key")[0][0] == 0
