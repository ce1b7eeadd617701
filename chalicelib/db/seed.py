"""Deterministic demo data.

The catalog goes in as a hospital's administrator puts it in: departments, doctors and
their weekly working hours through the schedule-management functions of the admin API
(chalicelib/booking/schedules.py: the same validation, the same slot regeneration), the
rest of the slots through the domain's slot generation (chalicelib/booking/slot_plan.py).
Patients and the appointment history are generated inside PostgreSQL with set-based
statements (tens of thousands of rows; a history cannot be booked in the past).

Every pseudo-random choice is a hash of (seed, entity key, purpose), never random(), so
the same seed loaded on the same day gives identical rows whatever the query plan.
Dates and times are relative to "today" in each tenant's time zone.
"""
from __future__ import annotations

import contextlib
import datetime
import time
from dataclasses import dataclass
from typing import Callable

import orjson
import pg8000.native

from chalicelib.booking import schedules
from chalicelib.booking.admin_models import DepartmentBody, DoctorBody, DoctorChange, WorkingHoursBody, WorkingPeriod
from chalicelib.booking.slot_plan import extend_slots


class SeedRefused(Exception):
    """The database already holds data and `force` was not given."""


@dataclass(frozen=True)
class _Plan:
    """How much to generate; `weight` scales a tenant's doctors and patients."""

    tenants: tuple[tuple[str, str, int], ...]  # (name, IANA time zone, weight)
    departments: int  # per tenant
    doctors_per_weight: int  # per department: weight * this + 0..1
    patients_per_weight: int
    past_days: int
    future_days: int
    past_fill: float  # share of past slots that get an appointment
    now_fill: float  # share of today's around-noon slots
    future_fill: float
    rebook_rate: float  # share of cancelled appointments whose slot was booked again


_CITIES = (
    ("Berlin", "Europe/Berlin"), ("New York", "America/New_York"), ("Tokyo", "Asia/Tokyo"),
    ("London", "Europe/London"), ("Los Angeles", "America/Los_Angeles"), ("Sydney", "Australia/Sydney"),
    ("Sao Paulo", "America/Sao_Paulo"), ("Mumbai", "Asia/Kolkata"), ("Madrid", "Europe/Madrid"),
    ("Chicago", "America/Chicago"), ("Johannesburg", "Africa/Johannesburg"), ("Singapore", "Asia/Singapore"),
    ("Auckland", "Pacific/Auckland"), ("Paris", "Europe/Paris"), ("Denver", "America/Denver"),
    ("Dubai", "Asia/Dubai"), ("Helsinki", "Europe/Helsinki"), ("Toronto", "America/Toronto"),
    ("Kathmandu", "Asia/Kathmandu"), ("Dublin", "Europe/Dublin"),
)

PLANS: dict[str, _Plan] = {
    "small": _Plan(
        tenants=tuple((f"{city} General Hospital", tz, 1) for city, tz in _CITIES[:3]),
        departments=4, doctors_per_weight=2, patients_per_weight=200, past_days=7, future_days=30,
        past_fill=0.8, now_fill=0.8, future_fill=0.28, rebook_rate=0.3,
    ),
    # Tenant 1 has weight 19 of 76 (25%); ~2M slots over 91 days, ~1.1M appointments.
    "large": _Plan(
        tenants=tuple((f"{city} General Hospital", tz, 19 if i == 0 else 3) for i, (city, tz) in enumerate(_CITIES)),
        departments=10, doctors_per_weight=2, patients_per_weight=650, past_days=60, future_days=30,
        past_fill=0.72, now_fill=0.8, future_fill=0.3, rebook_rate=0.3,
    ),
}

_DEPARTMENTS = (
    ("Cardiology", "Cardiologist"), ("Dermatology", "Dermatologist"), ("Endocrinology", "Endocrinologist"),
    ("Gastroenterology", "Gastroenterologist"), ("General Medicine", "General practitioner"),
    ("Neurology", "Neurologist"), ("Obstetrics and Gynecology", "Gynecologist"),
    ("Ophthalmology", "Ophthalmologist"), ("Orthopedics", "Orthopedic surgeon"),
    ("Otolaryngology", "ENT specialist"), ("Pediatrics", "Pediatrician"), ("Psychiatry", "Psychiatrist"),
)
_FIRST_NAMES = (
    "Anna", "Ben", "Chloe", "David", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Keiko", "Liam",
    "Maria", "Noah", "Olga", "Pedro", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera", "Wei", "Yuki",
)
_LAST_NAMES = (
    "Adams", "Becker", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Hoffmann", "Ito", "Jensen",
    "Kim", "Lopez", "Meyer", "Nakamura", "Okafor", "Patel", "Rossi", "Schmidt", "Tanaka", "Usman",
    "Virtanen", "Weber", "Xu", "Young",
)
_REASONS = (
    "Routine check-up", "Follow-up visit", "New symptoms", "Prescription renewal", "Test results review",
    "Chronic pain", "Vaccination", "Pre-operative assessment", "Second opinion", "Persistent cough",
)
_CANCEL_REASONS = ("Patient request", "Doctor unavailable", "Rescheduled", "Feeling better", "Scheduling conflict")

# Truncated (with their sequences) before loading.
DATA_TABLES = (
    "tenant", "department", "doctor", "working_hours", "absence", "slot", "patient", "appointment",
    "idempotency_key", "cache_invalidation_outbox",
)
_COUNTED = ("tenant", "department", "doctor", "working_hours", "slot", "patient", "appointment")
# Secondary indexes and FK/exclusion constraints of these are rebuilt after the bulk load.
_BULK_TABLES = ("slot", "appointment")

# seed_u: uniform [0, 1) from (seed, key). seed_status: appointment status for a time band
# ('past', 'now', 'future') and a uniform draw; cancelled is always the top band, so a
# draw below 0.85 never cancels (used for rebooked slots).
_FUNCTIONS_SQL = (
    """
    CREATE OR REPLACE FUNCTION pg_temp.seed_u(seed integer, key text) RETURNS double precision
    LANGUAGE sql IMMUTABLE AS
    $$ SELECT (hashtextextended(key, seed) & 4294967295)::double precision / 4294967296.0 $$
    """,
    """
    CREATE OR REPLACE FUNCTION pg_temp.seed_status(band text, u double precision) RETURNS text
    LANGUAGE sql IMMUTABLE AS
    $$ SELECT CASE band
         WHEN 'past' THEN CASE WHEN u < 0.75 THEN 'completed' WHEN u < 0.85 THEN 'no_show' ELSE 'cancelled' END
         WHEN 'now' THEN CASE WHEN u < 0.55 THEN 'checked_in' WHEN u < 0.85 THEN 'booked' ELSE 'cancelled' END
         ELSE CASE WHEN u < 0.9 THEN 'booked' ELSE 'cancelled' END
       END $$
    """,
)

_SEED_TENANT_SQL = """
CREATE TEMP TABLE seed_tenant AS
SELECT t.ord::integer AS tenant_id, t.name, t.zone AS time_zone, t.weight,
       (now() AT TIME ZONE t.zone)::date AS today,
       ((now() AT TIME ZONE t.zone)::date)::timestamp AT TIME ZONE t.zone AS today_start,
       ((sum(t.weight) OVER (ORDER BY t.ord) - t.weight) * CAST(:ppw AS integer) + 1)::integer AS patient_first_id,
       t.weight * CAST(:ppw AS integer) AS patient_count
FROM unnest(CAST(:names AS text[]), CAST(:zones AS text[]), CAST(:weights AS integer[]))
     WITH ORDINALITY AS t(name, zone, weight, ord)
"""

_TENANT_SQL = """
INSERT INTO tenant (id, name, time_zone, created_at)
SELECT tenant_id, name, time_zone, (today - 730)::timestamp AT TIME ZONE time_zone
FROM seed_tenant
"""

# Department k of tenant t is catalog entry ((t - 1) * 3 + k - 1) mod n, so tenants differ.
_DEPARTMENT_PLAN_SQL = """
SELECT st.tenant_id,
       (CAST(:names AS text[]))[((st.tenant_id - 1) * 3 + k - 1) % cardinality(CAST(:names AS text[])) + 1]
FROM seed_tenant st CROSS JOIN generate_series(1, CAST(:per_tenant AS integer)) AS k
ORDER BY st.tenant_id, k
"""

# Doctors of each department (in creation order), their specialty, and whether active.
_DOCTOR_PLAN_SQL = """
SELECT d.tenant_id, d.id,
       'Dr. ' || (CAST(:first AS text[]))[1 + floor(pg_temp.seed_u(:seed, d.id || ':' || k || ':first')
                                                    * cardinality(CAST(:first AS text[])))::integer]
       || ' ' || (CAST(:last AS text[]))[1 + floor(pg_temp.seed_u(:seed, d.id || ':' || k || ':last')
                                                   * cardinality(CAST(:last AS text[])))::integer],
       c.specialty,
       pg_temp.seed_u(:seed, d.id || ':' || k || ':active') >= 0.04
FROM department d
JOIN seed_tenant st ON st.tenant_id = d.tenant_id
JOIN unnest(CAST(:dept_names AS text[]), CAST(:specialties AS text[])) AS c(name, specialty) ON c.name = d.name
CROSS JOIN LATERAL generate_series(
    1, st.weight * CAST(:per_weight AS integer) + floor(pg_temp.seed_u(:seed, d.id || ':doctors') * 2)::integer) AS k
ORDER BY d.tenant_id, d.id, k
"""

# Mon-Fri 08-12 and 13-17 in 20- or 30-minute slots; some doctors take one weekday off,
# some also work Saturday 09-12. One row per (doctor, period), by doctor.
_WORKING_HOURS_PLAN_SQL = """
SELECT doc.tenant_id, doc.id, wd, b.starts, b.ends, p.slot_minutes
FROM doctor doc
CROSS JOIN LATERAL (
    SELECT CASE WHEN pg_temp.seed_u(:seed, doc.id || ':slot') < 0.5 THEN 20 ELSE 30 END AS slot_minutes,
           CASE WHEN pg_temp.seed_u(:seed, doc.id || ':day-off') < 0.2
                THEN 1 + floor(pg_temp.seed_u(:seed, doc.id || ':which-day-off') * 5)::integer ELSE 0 END AS day_off,
           pg_temp.seed_u(:seed, doc.id || ':saturday') < 0.25 AS saturday
) p
CROSS JOIN generate_series(1, 6) AS wd
CROSS JOIN (VALUES (time '08:00', time '12:00', false), (time '13:00', time '17:00', false),
                   (time '09:00', time '12:00', true)) AS b(starts, ends, sat)
WHERE wd <> p.day_off AND ((wd <= 5 AND NOT b.sat) OR (wd = 6 AND b.sat AND p.saturday))
ORDER BY doc.tenant_id, doc.id, wd, b.starts
"""

_PATIENT_SQL = """
INSERT INTO patient (tenant_id, id, record_number, name, birth_date)
SELECT st.tenant_id, p.id, 'MRN-' || lpad(n::text, 6, '0'),
       (CAST(:first AS text[]))[1 + floor(pg_temp.seed_u(:seed, p.id || ':first')
                                          * cardinality(CAST(:first AS text[])))::integer]
       || ' ' || (CAST(:last AS text[]))[1 + floor(pg_temp.seed_u(:seed, p.id || ':last')
                                                   * cardinality(CAST(:last AS text[])))::integer],
       st.today - 365 - floor(pg_temp.seed_u(:seed, p.id || ':born') * 365 * 89)::integer
FROM seed_tenant st
CROSS JOIN LATERAL generate_series(1, st.patient_count) AS n
CROSS JOIN LATERAL (SELECT st.patient_first_id + n - 1 AS id) p
"""

# Bands: days before today and today before 12:00 local are 'past', today 12:00-14:00 is
# 'now' (checked in or waiting), the rest 'future'. A slot gets a first appointment with
# the band's fill rate; some cancelled slots were booked again (attempt 2, never cancelled).
# Times of creation and cancellation lie before min(starts_at, local midnight today).
# Patients: no patient may be in two live appointments at once (appointment_no_patient_overlap).
# Every seeded slot lies within one local clock hour (blocks start on the hour, slots are 20
# or 30 minutes), so appointments of different local hours never overlap; within an hour the
# k-th appointment gets patient (offset + k * stride) mod count, all distinct, with a
# pseudo-random offset per (tenant, hour) and a stride coprime with the tenant's patient count.
_APPOINTMENT_SQL = """
INSERT INTO appointment (tenant_id, id, slot_id, patient_id, doctor_id, department_id, day,
                         starts_at, ends_at, status, reason, created_at, cancelled_at, cancel_reason)
WITH booked AS (
    SELECT s.tenant_id, s.id AS slot_id, s.doctor_id, s.department_id, s.day, s.starts_at, s.ends_at,
           b.band, least(s.starts_at, st.today_start) AS horizon, st.patient_first_id, st.patient_count,
           date_trunc('hour', s.starts_at AT TIME ZONE st.time_zone) AS local_hour
    FROM slot s
    JOIN seed_tenant st ON st.tenant_id = s.tenant_id
    CROSS JOIN LATERAL (
        SELECT CASE WHEN s.day < st.today THEN 'past'
                    WHEN s.day > st.today THEN 'future'
                    WHEN (s.starts_at AT TIME ZONE st.time_zone)::time < time '12:00' THEN 'past'
                    WHEN (s.starts_at AT TIME ZONE st.time_zone)::time < time '14:00' THEN 'now'
                    ELSE 'future' END AS band
    ) b
    WHERE pg_temp.seed_u(:seed, s.id || ':book') < CASE b.band WHEN 'past' THEN CAST(:past_fill AS float8)
                                                             WHEN 'now' THEN CAST(:now_fill AS float8)
                                                             ELSE CAST(:future_fill AS float8) END
),
first_try AS (
    SELECT bk.*, pg_temp.seed_status(bk.band, pg_temp.seed_u(:seed, bk.slot_id || ':status')) AS status,
           date_trunc('second', bk.horizon - make_interval(
               days => floor(pg_temp.seed_u(:seed, bk.slot_id || ':lead-days') * 21)::integer,
               mins => 30 + floor(pg_temp.seed_u(:seed, bk.slot_id || ':lead-mins') * 600)::integer)) AS created_at
    FROM booked bk
),
first_done AS (
    SELECT f.*, 1 AS attempt,
           CASE WHEN f.status = 'cancelled' THEN date_trunc('second', f.created_at
                + (f.horizon - f.created_at) * pg_temp.seed_u(:seed, f.slot_id || ':cancelled')) END AS cancelled_at
    FROM first_try f
),
all_tries AS (
    SELECT tenant_id, slot_id, doctor_id, department_id, day, starts_at, ends_at, patient_first_id,
           patient_count, local_hour, attempt, status, created_at, cancelled_at
    FROM first_done
    UNION ALL
    SELECT tenant_id, slot_id, doctor_id, department_id, day, starts_at, ends_at, patient_first_id,
           patient_count, local_hour, 2, pg_temp.seed_status(band, 0.85 * pg_temp.seed_u(:seed, slot_id || ':status2')),
           date_trunc('second', cancelled_at + (horizon - cancelled_at)
                                * pg_temp.seed_u(:seed, slot_id || ':rebooked')),
           NULL
    FROM first_done
    WHERE status = 'cancelled' AND pg_temp.seed_u(:seed, slot_id || ':rebook') < CAST(:rebook_rate AS float8)
),
in_hour AS (
    SELECT t.*,
           row_number() OVER (PARTITION BY t.tenant_id, t.local_hour
                              ORDER BY t.starts_at, t.doctor_id, t.attempt) - 1 AS k,
           floor(pg_temp.seed_u(:seed, t.tenant_id || ':' || t.local_hour || ':patients')
                 * t.patient_count)::bigint AS offset_in_hour,
           CASE WHEN gcd(7919, t.patient_count) = 1 THEN 7919 ELSE 1 END AS stride
    FROM all_tries t
)
SELECT a.tenant_id,
       row_number() OVER (ORDER BY a.tenant_id, a.starts_at, a.doctor_id, a.attempt),
       a.slot_id,
       a.patient_first_id + ((a.offset_in_hour + a.k * a.stride) % a.patient_count)::integer,
       a.doctor_id, a.department_id, a.day, a.starts_at, a.ends_at, a.status,
       CASE WHEN pg_temp.seed_u(:seed, a.slot_id || ':' || a.attempt || ':has-reason') >= 0.2
            THEN (CAST(:reasons AS text[]))[1 + floor(pg_temp.seed_u(:seed, a.slot_id || ':' || a.attempt || ':reason')
                                                      * cardinality(CAST(:reasons AS text[])))::integer] END,
       a.created_at,
       a.cancelled_at,
       CASE WHEN a.status = 'cancelled'
            THEN (CAST(:cancel_reasons AS text[]))[1 + floor(pg_temp.seed_u(:seed, a.slot_id || ':cancel-reason')
                                                             * cardinality(CAST(:cancel_reasons AS text[])))::integer]
       END
FROM in_hour a
"""

# DROP and re-CREATE statements for the secondary indexes and the foreign-key and
# exclusion constraints of the bulk tables (primary and unique keys stay).
_DETACH_SQL = """
SELECT format('ALTER TABLE %s DROP CONSTRAINT %I', c.conrelid::regclass, c.conname),
       format('ALTER TABLE %s ADD CONSTRAINT %I %s', c.conrelid::regclass, c.conname, pg_get_constraintdef(c.oid))
FROM pg_constraint c
WHERE c.conrelid = ANY (CAST(CAST(:tables AS text[]) AS regclass[])) AND c.contype IN ('f', 'x')
UNION ALL
SELECT format('DROP INDEX %s', i.indexrelid::regclass), pg_get_indexdef(i.indexrelid)
FROM pg_index i
WHERE i.indrelid = ANY (CAST(CAST(:tables AS text[]) AS regclass[]))
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c
                  WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid AND c.contype IN ('p', 'u', 'x'))
"""


def seed(
    conn: pg8000.native.Connection,
    size: str = "small",
    seed: int = 1,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Load demo data of `size` ('small' or 'large') in one transaction; returns rows per table.

    Raises SeedRefused when tenants exist, unless `force`, which truncates the data first.
    The connection must be in autocommit mode (no open transaction); it needs no statement
    timeout or socket timeout shorter than the load (about 2.5 minutes for 'large').
    """
    if size not in PLANS:
        raise ValueError(f"size must be one of {sorted(PLANS)}, not {size!r}")
    started = time.monotonic()

    def report(phase: str) -> None:
        if progress is not None:
            progress(f"{phase}: {time.monotonic() - started:.1f}s")

    conn.run("BEGIN")
    try:
        for setting in ("statement_timeout = 0", "synchronous_commit = off",
                        "work_mem = '128MB'", "maintenance_work_mem = '256MB'"):
            conn.run(f"SET LOCAL {setting}")
        if conn.run("SELECT EXISTS (SELECT 1 FROM tenant)")[0][0] and not force:
            raise SeedRefused("the database already has tenants; pass force=True to replace all data")
        conn.run(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE")
        # Bulk load without the secondary indexes and FK/exclusion checks, then rebuild them
        # from their catalog definitions, so the schema ends up identical.
        detached = conn.run(_DETACH_SQL, tables=list(_BULK_TABLES))
        for drop, _ in detached:
            conn.run(drop)
        _generate(conn, PLANS[size], seed, report)
        for _, create in detached:
            conn.run(create)
        report("indexes and constraints rebuilt")
        conn.run(f"ANALYZE {', '.join(DATA_TABLES)}")
        conn.run("REFRESH MATERIALIZED VIEW dashboard_daily")
        report("analyzed, dashboard_daily refreshed")
        counts = {table: conn.run(f"SELECT count(*) FROM {table}")[0][0] for table in _COUNTED}
        conn.run("COMMIT")
    except BaseException:
        with contextlib.suppress(Exception):
            conn.run("ROLLBACK")
        raise
    report("committed")
    return counts


def _generate(conn: pg8000.native.Connection, plan: _Plan, seed: int, report: Callable[[str], None]) -> None:
    """Insert all rows of `plan` and move the id sequences past them."""

    def step(name: str, sql: str, **params: object) -> None:
        conn.run(sql, **params)
        report(f"{name} ({conn.row_count} rows)")

    for sql in _FUNCTIONS_SQL:
        conn.run(sql)
    conn.run(_SEED_TENANT_SQL, names=[t[0] for t in plan.tenants], zones=[t[1] for t in plan.tenants],
             weights=[t[2] for t in plan.tenants], ppw=plan.patients_per_weight)
    step("tenant", _TENANT_SQL)
    _catalog(conn, plan, seed, report)
    report(f"slot ({_load_slots(conn, plan)} rows)")
    step("patient", _PATIENT_SQL, seed=seed, first=list(_FIRST_NAMES), last=list(_LAST_NAMES))
    step("appointment", _APPOINTMENT_SQL, seed=seed, past_fill=plan.past_fill, now_fill=plan.now_fill,
         future_fill=plan.future_fill, rebook_rate=plan.rebook_rate, reasons=list(_REASONS),
         cancel_reasons=list(_CANCEL_REASONS))
    for table in ("patient", "appointment"):
        seq = f"{table}_id_seq"
        conn.run(f"SELECT setval('{seq}', (SELECT coalesce(max(id), 0) + 1 FROM {table}), false)")
    conn.run("DROP FUNCTION pg_temp.seed_u(integer, text), pg_temp.seed_status(text, double precision)")
    conn.run("DROP TABLE seed_tenant")


def _catalog(conn: pg8000.native.Connection, plan: _Plan, seed: int, report: Callable[[str], None]) -> None:
    """Departments, doctors and working hours through the admin API's functions, as an
    administrator would enter them (a doctor who is not active is deactivated before their
    hours go in, so none of their slots is ever offered). The hours' regeneration offers
    the slots of the horizon; `_load_slots` adds the past days."""
    for tenant, name in conn.run(_DEPARTMENT_PLAN_SQL, per_tenant=plan.departments,
                                 names=[d[0] for d in _DEPARTMENTS]):
        schedules.create_department(conn, DepartmentBody(clientId=tenant, name=name))
    report(f"department ({plan.departments} per tenant)")
    doctors = conn.run(_DOCTOR_PLAN_SQL, seed=seed, first=list(_FIRST_NAMES), last=list(_LAST_NAMES),
                       dept_names=[d[0] for d in _DEPARTMENTS], specialties=[d[1] for d in _DEPARTMENTS],
                       per_weight=plan.doctors_per_weight)
    for tenant, department, name, specialty, active in doctors:
        created = schedules.create_doctor(conn, DoctorBody(clientId=tenant, name=name, departmentId=department,
                                                           specialty=specialty))
        if not active:
            doctor = orjson.loads(created.body)["doctor"]["id"]
            schedules.change_doctor(conn, doctor, DoctorChange(clientId=tenant, active=False))
    report(f"doctor ({len(doctors)} rows)")
    hours: dict[tuple[int, int], list[WorkingPeriod]] = {}
    for tenant, doctor, weekday, starts, ends, minutes in conn.run(_WORKING_HOURS_PLAN_SQL, seed=seed):
        hours.setdefault((tenant, doctor), []).append(WorkingPeriod(
            weekday=weekday, start=starts.strftime("%H:%M"), end=ends.strftime("%H:%M"), slotMinutes=minutes))
    for (tenant, doctor), periods in hours.items():
        schedules.replace_working_hours(conn, doctor, WorkingHoursBody(clientId=tenant, hours=periods))
    report(f"working_hours ({sum(len(p) for p in hours.values())} rows), slots of the horizon")


# Slot ids in (tenant, doctor, start) order, whichever statement offered each slot (the
# regenerations offer only slots after now(), the extension the rest): the same seed on the
# same day gives the same ids at any time of day. Two steps, as ids must stay unique.
_RENUMBER_SLOTS_SQL = (
    """UPDATE slot s SET id = -r.n
       FROM (SELECT tenant_id, id, row_number() OVER (ORDER BY tenant_id, doctor_id, starts_at) AS n FROM slot) r
       WHERE s.tenant_id = r.tenant_id AND s.id = r.id""",
    "UPDATE slot SET id = -id",
    "SELECT setval('slot_id_seq', (SELECT coalesce(max(id), 0) + 1 FROM slot), false)",
)


def _load_slots(conn: pg8000.native.Connection, plan: _Plan) -> int:
    """Slots from past_days before each tenant's today through today + future_days (those
    the working hours' regeneration offered already stay), numbered in a fixed order."""
    tenants = conn.run("SELECT tenant_id, today FROM seed_tenant ORDER BY tenant_id")
    for tenant_id, today in tenants:
        extend_slots(conn, horizon_days=plan.future_days,
                     start_day=today - datetime.timedelta(days=plan.past_days), tenant_id=tenant_id)
    for sql in _RENUMBER_SLOTS_SQL:
        conn.run(sql)
    return int(conn.run("SELECT count(*) FROM slot")[0][0])
