"""Slot generation from weekly working hours and absences: what the schedule plans, and
the statements that offer it (the daily extension, a doctor's regeneration, the seeder)."""
from __future__ import annotations

import datetime

import pg8000.native

# The slots the schedule offers, as CTEs for a WITH clause: for every tenant (or only
# :tenant_id), its local days from :start_day (default: local today) through :end_day
# (default: today + :horizon_days); for each active doctor's (or only :doctor_id's) working
# hours on that ISO weekday, the slot starts stepping slot_minutes that fit entirely before
# `ends`, except those that overlap one of the doctor's absences. Local wall-clock times
# become instants through the tenant's IANA zone, so a DST change shifts the UTC times,
# never the local schedule: a day still starts at its local hour. A local time that does
# not exist (spring forward) maps as PostgreSQL maps it, one hour on, onto an instant the
# same hours already produce; DISTINCT ON keeps each instant once, so no slot is doubled.
PLANNED_SLOTS = """
tenant_day AS (
    SELECT t.id AS tenant_id, t.time_zone, d::date AS day
    FROM tenant t
    CROSS JOIN LATERAL (SELECT (now() AT TIME ZONE t.time_zone)::date AS today) l
    CROSS JOIN LATERAL generate_series(
        coalesce(CAST(:start_day AS date), l.today)::timestamp,
        coalesce(CAST(:end_day AS date), l.today + CAST(:horizon_days AS integer))::timestamp,
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
    WHERE CAST(:doctor_id AS integer) IS NULL OR w.doctor_id = CAST(:doctor_id AS integer)
),
planned AS (
    SELECT DISTINCT ON (l.tenant_id, l.doctor_id, l.local_starts AT TIME ZONE l.time_zone)
           l.tenant_id, l.doctor_id, l.department_id, l.day,
           l.local_starts AT TIME ZONE l.time_zone AS starts_at,
           (l.local_starts AT TIME ZONE l.time_zone) + l.length AS ends_at
    FROM local_start l
    WHERE NOT EXISTS (SELECT 1 FROM absence a
                      WHERE a.tenant_id = l.tenant_id AND a.doctor_id = l.doctor_id
                        AND a.starts_at < (l.local_starts AT TIME ZONE l.time_zone) + l.length
                        AND a.ends_at > l.local_starts AT TIME ZONE l.time_zone)
    ORDER BY l.tenant_id, l.doctor_id, l.local_starts AT TIME ZONE l.time_zone
)"""

# Inserts the planned slots that overlap no offered (not withdrawn) slot of the doctor,
# in (tenant, doctor, starts_at) order so that ids are deterministic. Existing slots are
# filtered out first (through the (tenant, doctor, starts_at) index: slots last at most
# 240 minutes), so a rerun neither draws sequence values nor probes the unique index row by
# row. `{on_conflict}` decides what a withdrawn slot at the same instant becomes (and what
# the statement returns).
_OFFER_SQL = """
WITH {planned}
INSERT INTO slot (tenant_id, doctor_id, department_id, day, starts_at, ends_at)
SELECT p.tenant_id, p.doctor_id, p.department_id, p.day, p.starts_at, p.ends_at
FROM planned p
WHERE (NOT CAST(:future_only AS boolean) OR p.starts_at > now())
  AND NOT EXISTS (SELECT 1 FROM slot s
                  WHERE s.tenant_id = p.tenant_id AND s.doctor_id = p.doctor_id AND s.withdrawn_at IS NULL
                    AND s.starts_at > p.starts_at - interval '240 minutes' AND s.starts_at < p.ends_at
                    AND s.ends_at > p.starts_at)
ORDER BY p.tenant_id, p.doctor_id, p.starts_at
ON CONFLICT (tenant_id, doctor_id, starts_at) {on_conflict}
"""
# The daily extension keeps a withdrawn slot withdrawn (a concurrent run: nothing twice).
_EXTEND_SQL = _OFFER_SQL.format(planned=PLANNED_SLOTS, on_conflict="DO NOTHING")
# A regeneration offers a withdrawn slot again when the schedule plans it once more.
OFFER_AGAIN_SQL = _OFFER_SQL.format(planned=PLANNED_SLOTS, on_conflict="""DO UPDATE
SET department_id = EXCLUDED.department_id, day = EXCLUDED.day, ends_at = EXCLUDED.ends_at, withdrawn_at = NULL
WHERE slot.withdrawn_at IS NOT NULL
RETURNING day""")


def extend_slots(
    conn: pg8000.native.Connection,
    horizon_days: int = 30,
    start_day: datetime.date | None = None,
    tenant_id: int | None = None,
    end_day: datetime.date | None = None,
) -> int:
    """Create the missing slots from start_day (default: local today) to end_day (default:
    today + horizon_days).

    Covers every tenant, or only `tenant_id`; only active doctors, outside their absences.
    Idempotent: existing slots are kept, so a second run inserts nothing. Returns the
    number of slots inserted.
    """
    conn.run(_EXTEND_SQL, start_day=start_day, end_day=end_day, horizon_days=horizon_days,
             tenant_id=tenant_id, doctor_id=None, future_only=False)
    return conn.row_count

