"""Slot generation from weekly working hours."""
from __future__ import annotations

import datetime

import pg8000.native

# One set-based statement: for every tenant, its local days from the start day through
# today + horizon; for each active doctor's working hours on that ISO weekday, the slot
# starts stepping slot_minutes that fit entirely before `ends`. Local wall-clock times
# become instants through the tenant's IANA zone, so a DST change shifts the UTC times,
# never the local schedule (a local time that does not exist maps as PostgreSQL maps it;
# a duplicate instant is skipped by ON CONFLICT). Existing slots are filtered out first,
# so a rerun neither draws sequence values nor probes the unique index row by row; ON
# CONFLICT covers a concurrent run. Sorted so that nextval() follows (tenant, doctor,
# starts_at) and ids are deterministic.
_EXTEND_SQL = """
WITH tenant_day AS (
    SELECT t.id AS tenant_id, t.time_zone, d::date AS day
    FROM tenant t
    CROSS JOIN LATERAL (SELECT (now() AT TIME ZONE t.time_zone)::date AS today) l
    CROSS JOIN LATERAL generate_series(
        coalesce(CAST(:start_day AS date), l.today)::timestamp,
        (l.today + CAST(:horizon_days AS integer))::timestamp,
        interval '1 day') AS d
    WHERE CAST(:tenant_id AS integer) IS NULL OR t.id = CAST(:tenant_id AS integer)
),
local_start AS (
    SELECT td.tenant_id, td.time_zone, td.day, w.doctor_id, doc.department_id,
           make_interval(mins => w.slot_minutes) AS length, ls AS local_starts
    FROM tenant_day td
    JOIN working_hours w
      ON w.tenant_id = td.tenant_id AND w.weekday = extract(isodow FROM td.day)
    JOIN doctor doc
      ON doc.tenant_id = w.tenant_id AND doc.id = w.doctor_id AND doc.active
    CROSS JOIN LATERAL generate_series(
        td.day + w.starts,
        td.day + w.ends - make_interval(mins => w.slot_minutes),
        make_interval(mins => w.slot_minutes)) AS ls
)
INSERT INTO slot (tenant_id, doctor_id, department_id, day, starts_at, ends_at)
SELECT tenant_id, doctor_id, department_id, day,
       local_starts AT TIME ZONE time_zone,
       (local_starts AT TIME ZONE time_zone) + length
FROM local_start l
WHERE NOT EXISTS (SELECT 1 FROM slot s
                  WHERE s.tenant_id = l.tenant_id AND s.doctor_id = l.doctor_id
                    AND s.starts_at = l.local_starts AT TIME ZONE l.time_zone)
ORDER BY tenant_id, doctor_id, local_starts AT TIME ZONE time_zone
ON CONFLICT (tenant_id, doctor_id, starts_at) DO NOTHING
"""


def extend_slots(
    conn: pg8000.native.Connection,
    horizon_days: int = 30,
    start_day: datetime.date | None = None,
    tenant_id: int | None = None,
) -> int:
    """Create the missing slots from start_day (default: local today) to today + horizon_days.

    Covers every tenant, or only `tenant_id`; only active doctors. Idempotent: existing
    slots are kept, so a second run inserts nothing. Returns the number of slots inserted.
    """
    conn.run(_EXTEND_SQL, start_day=start_day, horizon_days=horizon_days, tenant_id=tenant_id)
    return conn.row_count


def run_scheduled_extension() -> dict[str, int]:
    """What the daily schedule does: create the missing slots up to the horizon, every
    tenant, and delete Idempotency-Key answers past their 24 hours."""
    from chalicelib.booking.idempotency import PURGE_IDEMPOTENCY_SQL
    from chalicelib.db.connection import connect
    from chalicelib.settings import get_settings

    conn = connect(statement_timeout_ms=get_settings().refresh_timeout_ms)
    try:
        inserted = extend_slots(conn, get_settings().slot_horizon_days)
        conn.run(PURGE_IDEMPOTENCY_SQL)
        return {"inserted": inserted, "idempotencyKeysPurged": conn.row_count}
    finally:
        conn.close()
