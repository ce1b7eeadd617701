"""Find data with a property in a seeded database, or create it with SQL.

Tests ask these for "a day with booked and free slots", "a free slot", ... instead of
building dates from the machine's clock, so no test depends on the weekday, the time of
day or the seed's luck. "Today" is always the tenant's local date (its IANA time zone), read
from PostgreSQL's clock, never `datetime.date.today()` of the test process.

Every finder takes `sql`: a callable `(query, **params) -> rows`, e.g. `app_env.sql` or a
pg8000 connection's `run`.
"""
from __future__ import annotations

import datetime as dt
import time
from typing import Protocol


class RunsSql(Protocol):
    """`app_env.sql` or `pg8000.native.Connection.run`."""

    def __call__(self, query: str, **params: object) -> list: ...


# Slots of the tenant on days after its local today, each with whether it holds a live
# (not cancelled) appointment. Every slot of such a day starts after the tenant's next local
# midnight, so none of them starts while a test runs, whatever the time of day.
_FUTURE_DAY_SLOTS = """
    SELECT s.id, s.day, s.starts_at,
           EXISTS (SELECT 1 FROM appointment a WHERE a.tenant_id = s.tenant_id AND a.slot_id = s.id
                   AND a.status <> 'cancelled') AS live
    FROM slot s JOIN tenant t ON t.id = s.tenant_id
    WHERE s.tenant_id = :t AND s.day > (now() AT TIME ZONE t.time_zone)::date
"""


def tenant_today(sql: RunsSql, tenant: int = 1) -> dt.date:
    """The tenant's local date now, by the database's clock."""
    return sql("SELECT (now() AT TIME ZONE time_zone)::date FROM tenant WHERE id = :t", t=tenant)[0][0]


def days_with_free_slots(sql: RunsSql, tenant: int = 1, min_free: int = 1, max_ahead: int | None = None
                         ) -> list[str]:
    """ISO dates after the tenant's today with at least `min_free` free slots, earliest first;
    only days up to today + `max_ahead` when given."""
    rows = sql(f"""SELECT f.day::text FROM ({_FUTURE_DAY_SLOTS}) f JOIN tenant t ON t.id = :t
                   WHERE CAST(:ahead AS integer) IS NULL
                      OR f.day <= (now() AT TIME ZONE t.time_zone)::date + CAST(:ahead AS integer)
                   GROUP BY f.day HAVING count(*) FILTER (WHERE NOT f.live) >= :n ORDER BY f.day""",
               t=tenant, n=min_free, ahead=max_ahead)
    assert rows, f"tenant {tenant} has no day after today with {min_free} free slots"
    return [r[0] for r in rows]


def day_with_booked_and_free_slots(sql: RunsSql, tenant: int = 1, min_booked: int = 1, min_free: int = 1) -> str:
    """An ISO date after the tenant's today with at least `min_booked` live appointments and
    `min_free` free slots. If the data has none, appointments are booked in SQL on the first
    future day with enough slots, before anything has read that day."""
    rows = sql(f"""SELECT f.day::text FROM ({_FUTURE_DAY_SLOTS}) f GROUP BY f.day
                   HAVING count(*) FILTER (WHERE f.live) >= :b AND count(*) FILTER (WHERE NOT f.live) >= :n
                   ORDER BY f.day LIMIT 1""", t=tenant, b=min_booked, n=min_free)
    if rows:
        return rows[0][0]
    day = sql(f"""SELECT f.day::text FROM ({_FUTURE_DAY_SLOTS}) f GROUP BY f.day
                  HAVING count(*) FILTER (WHERE NOT f.live) >= CAST(:b AS integer) + CAST(:n AS integer)
                  ORDER BY f.day LIMIT 1""", t=tenant, b=min_booked, n=min_free)[0][0]
    sql(f"""INSERT INTO appointment (tenant_id, slot_id, patient_id, doctor_id, department_id, day,
                                     starts_at, ends_at, status)
            SELECT s.tenant_id, s.id, (SELECT min(id) FROM patient WHERE tenant_id = :t), s.doctor_id,
                   s.department_id, s.day, s.starts_at, s.ends_at, 'booked'
            FROM slot s WHERE s.id IN (SELECT f.id FROM ({_FUTURE_DAY_SLOTS}) f
                                       WHERE f.day = CAST(:d AS date) AND NOT f.live
                                       ORDER BY f.starts_at, f.id LIMIT :b)
              AND s.tenant_id = :t""", t=tenant, d=day, b=min_booked)
    return day


def latest_free_slot(sql: RunsSql, tenant: int = 1) -> int:
    """The id of the tenant's last free slot (latest start): bookable, and far from starting."""
    rows = sql(f"SELECT f.id FROM ({_FUTURE_DAY_SLOTS}) f WHERE NOT f.live ORDER BY f.starts_at DESC, f.id LIMIT 1",
               t=tenant)
    assert rows, f"tenant {tenant} has no free slot after today"
    return rows[0][0]


def free_slot_in_upcoming_week(sql: RunsSql, tenant: int = 1) -> tuple[int, str]:
    """(slot id, ISO date) of a free slot on one of the 6 days after the tenant's today (inside
    the dashboard's `upcoming7d`). If none is free, a live appointment on the first such day
    with slots is cancelled in SQL to free one, so call this before reading the dashboard."""
    rows = sql(f"""SELECT f.id, f.day::text FROM ({_FUTURE_DAY_SLOTS}) f JOIN tenant t ON t.id = :t
                   WHERE NOT f.live AND f.day <= (now() AT TIME ZONE t.time_zone)::date + 6
                   ORDER BY f.starts_at, f.id LIMIT 1""", t=tenant)
    if rows:
        return rows[0][0], rows[0][1]
    slot, day = sql(f"""SELECT f.id, f.day::text FROM ({_FUTURE_DAY_SLOTS}) f JOIN tenant t ON t.id = :t
                        WHERE f.day <= (now() AT TIME ZONE t.time_zone)::date + 6
                        ORDER BY f.starts_at, f.id LIMIT 1""", t=tenant)[0]
    sql("UPDATE appointment SET status = 'cancelled', cancelled_at = now()"
        " WHERE tenant_id = :t AND slot_id = :s AND status <> 'cancelled'", t=tenant, s=slot)
    return slot, day


def appointment_window(sql: RunsSql, tenant: int = 1, span_days: int = 3, min_count: int = 1) -> tuple[str, str]:
    """(first, last) ISO dates of the earliest `span_days` consecutive days after the
    tenant's today that hold at least `min_count` appointments (any status) together."""
    rows = sql("""SELECT w.first::text, (w.first + CAST(:span AS integer) - 1)::text
                  FROM tenant t
                  CROSS JOIN LATERAL generate_series((now() AT TIME ZONE t.time_zone)::date + 1,
                                                     (now() AT TIME ZONE t.time_zone)::date + 60,
                                                     interval '1 day') AS g(first)
                  CROSS JOIN LATERAL (SELECT g.first::date AS first) w
                  WHERE t.id = :t AND (SELECT count(*) FROM appointment a WHERE a.tenant_id = t.id
                                       AND a.day BETWEEN w.first AND w.first + CAST(:span AS integer) - 1) >= :n
                  ORDER BY w.first LIMIT 1""", t=tenant, span=span_days, n=min_count)
    assert rows, f"tenant {tenant} has no {span_days} days after today with {min_count} appointments"
    return rows[0][0], rows[0][1]


def day_with_appointments(sql: RunsSql, tenant: int = 1, min_count: int = 1) -> str:
    """The first ISO date after the tenant's today with at least `min_count` appointments."""
    rows = sql("""SELECT a.day::text FROM appointment a JOIN tenant t ON t.id = a.tenant_id
                  WHERE a.tenant_id = :t AND a.day > (now() AT TIME ZONE t.time_zone)::date
                  GROUP BY a.day HAVING count(*) >= :n ORDER BY a.day LIMIT 1""", t=tenant, n=min_count)
    assert rows, f"tenant {tenant} has no day after today with {min_count} appointments"
    return rows[0][0]


def seconds_to_local_midnight(sql: RunsSql, zones: tuple[str, ...] = ()) -> float:
    """Seconds until the next local midnight in the nearest of `zones` (default: every
    tenant's zone), by the database's clock."""
    rows = sql("""SELECT min(extract(epoch FROM date_trunc('day', now() AT TIME ZONE z) + interval '1 day'
                                                 - (now() AT TIME ZONE z)))::float8
                  FROM unnest(CASE WHEN cardinality(CAST(:zones AS text[])) > 0 THEN CAST(:zones AS text[])
                                   ELSE ARRAY(SELECT DISTINCT time_zone FROM tenant) END) AS z""",
               zones=list(zones))
    return float(rows[0][0]) if rows and rows[0][0] is not None else float("inf")


def wait_clear_of_local_midnight(sql: RunsSql, zones: tuple[str, ...] = (), margin_s: float = 60.0) -> float:
    """For a test that compares "today" taken at two moments a few seconds apart: if a
    tenant's local midnight is less than `margin_s` away, sleep until just past it. Returns
    the seconds slept (0 almost always)."""
    left = seconds_to_local_midnight(sql, zones)
    if left >= margin_s:
        return 0.0
    time.sleep(left + 1.0)
    return left + 1.0


def new_patients(sql: RunsSql, tenant: int = 1, count: int = 1) -> list[int]:
    """Ids of `count` patients created now in SQL, without any appointment: free at every
    time and far from the future-bookings cap, whatever the seed gave other patients."""
    rows = sql("""INSERT INTO patient (tenant_id, id, record_number, name, birth_date)
                  SELECT :t, i, 'TEST-' || i, 'Test Patient ' || i, date '1980-01-01'
                  FROM (SELECT nextval('patient_id_seq') AS i FROM generate_series(1, :n)) m
                  RETURNING id""", t=tenant, n=count)
    return sorted(r[0] for r in rows)


def new_patient(sql: RunsSql, tenant: int = 1) -> int:
    """The id of one patient created now in SQL, without any appointment."""
    return new_patients(sql, tenant, 1)[0]


def started_appointment(sql: RunsSql, tenant: int = 1) -> int:
    """The id of a booked appointment created now in SQL whose slot started 30 minutes ago
    (for what may happen only once a slot has started, e.g. a no-show). It has a doctor and
    a patient of its own, so it overlaps nobody's appointment."""
    doctor = sql("""INSERT INTO doctor (tenant_id, department_id, name, specialty)
                    SELECT :t, min(id), 'Dr. Test', 'Tester'
                    FROM department WHERE tenant_id = :t RETURNING id""", t=tenant)[0][0]
    patient = new_patient(sql, tenant)
    return sql("""WITH s AS (
                      INSERT INTO slot (tenant_id, doctor_id, department_id, day, starts_at, ends_at)
                      SELECT d.tenant_id, d.id, d.department_id,
                             ((now() - interval '30 minutes') AT TIME ZONE t.time_zone)::date,
                             now() - interval '30 minutes', now() - interval '10 minutes'
                      FROM doctor d JOIN tenant t ON t.id = d.tenant_id WHERE d.tenant_id = :t AND d.id = :d
                      RETURNING *)
                  INSERT INTO appointment (tenant_id, slot_id, patient_id, doctor_id, department_id, day,
                                           starts_at, ends_at, status)
                  SELECT s.tenant_id, s.id, :p, s.doctor_id, s.department_id, s.day, s.starts_at, s.ends_at, 'booked'
                  FROM s RETURNING id""", t=tenant, d=doctor, p=patient)[0][0]


def new_doctor_slots(sql: RunsSql, tenant: int = 1, doctors: int = 2, instants: int = 1) -> list[list[int]]:
    """Slots created now in SQL for `doctors` new doctors, all at the same `instants` start
    times (30 minutes long, an hour apart, from 10 days ahead): row i lists the slot ids of
    instant i, one per doctor in creation order. No appointment or other test touches them."""
    created = sql("""INSERT INTO doctor (tenant_id, id, department_id, name, specialty)
                     SELECT :t, m.i, d.dep, 'Dr. Test ' || m.i, 'Tester'
                     FROM (SELECT nextval('doctor_id_seq') AS i FROM generate_series(1, :n)) m,
                          (SELECT min(id) AS dep FROM department WHERE tenant_id = :t) d
                     RETURNING id""", t=tenant, n=doctors)
    doctor_ids = sorted(r[0] for r in created)
    rows = sql("""INSERT INTO slot (tenant_id, doctor_id, department_id, day, starts_at, ends_at)
                  SELECT d.tenant_id, d.id, d.department_id, (g.at AT TIME ZONE t.time_zone)::date,
                         g.at, g.at + interval '30 minutes'
                  FROM doctor d JOIN tenant t ON t.id = d.tenant_id,
                       LATERAL (SELECT date_trunc('hour', now()) + interval '10 days' + i * interval '1 hour' AS at
                                FROM generate_series(0, CAST(:k AS integer) - 1) AS i) g
                  WHERE d.tenant_id = :t AND d.id = ANY(CAST(:ids AS integer[]))
                  RETURNING id, doctor_id, starts_at""", t=tenant, k=instants, ids=doctor_ids)
    by_instant: dict[object, dict[int, int]] = {}
    for slot_id, doctor_id, starts_at in rows:
        by_instant.setdefault(starts_at, {})[doctor_id] = slot_id
    return [[slots[d] for d in doctor_ids] for _, slots in sorted(by_instant.items())]
