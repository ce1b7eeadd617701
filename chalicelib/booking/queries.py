"""Read queries. PostgreSQL builds each JSON body as text, so Python never decodes rows;
the returned string is the response body and the value the cache stores.

Every function returns None when the tenant does not exist. The cached reads' queries run
through `read_source` (the read replica when one is configured and has replayed what the
fill waits for, else the primary); `dashboard_live` and `tenant_today` read the primary.
"""
from __future__ import annotations

import datetime as dt
from typing import Optional

from chalicelib.booking import cursor
from chalicelib.booking import read_source as source
from chalicelib.booking.models import AppointmentListQuery, DoctorsQuery, PatientsQuery, SlotsQuery
from chalicelib.cache.tickets import Fill
from chalicelib.db import connection as db
from chalicelib.settings import get_settings

_APPOINTMENT_JSON = """json_build_object(
    'id', a.id, 'slotId', a.slot_id, 'patientId', a.patient_id, 'patientName', p.name,
    'doctorId', a.doctor_id, 'doctorName', d.name, 'departmentId', a.department_id,
    'departmentName', dep.name, 'startsAt', a.starts_at, 'endsAt', a.ends_at,
    'status', a.status, 'reason', a.reason)"""

APPOINTMENT_JOINS = """
    JOIN patient p ON p.tenant_id = a.tenant_id AND p.id = a.patient_id
    JOIN doctor d ON d.tenant_id = a.tenant_id AND d.id = a.doctor_id
    JOIN department dep ON dep.tenant_id = a.tenant_id AND dep.id = a.department_id"""


def appointment_json_sql() -> str:
    """The SQL expression that renders one appointment (aliases a, p, d, dep) as JSON."""
    return _APPOINTMENT_JSON


def departments(fill: Fill, client_id: int) -> Optional[str]:
    """GET /api/departments: active departments with their active doctor counts, by name."""
    return source.scalar(
        fill,
        """SELECT json_build_object('clientId', t.id, 'departments', coalesce((
               SELECT json_agg(json_build_object('id', dep.id, 'name', dep.name,
                        'doctorCount', (SELECT count(*) FROM doctor d WHERE d.tenant_id = dep.tenant_id
                                        AND d.department_id = dep.id AND d.active))
                      ORDER BY dep.name, dep.id)
               FROM department dep WHERE dep.tenant_id = t.id AND dep.active), '[]'::json))::text
           FROM tenant t WHERE t.id = :t""",
        t=client_id,
    )


def doctors(fill: Fill, query: DoctorsQuery) -> Optional[str]:
    """GET /api/doctors: active doctors, optionally of one department, by name."""
    department_filter = " AND d.department_id = :dep" if query.departmentId is not None else ""
    params = {"t": query.clientId}
    if query.departmentId is not None:
        params["dep"] = query.departmentId
    return source.scalar(
        fill,
        f"""SELECT json_build_object('clientId', t.id, 'doctors', coalesce((
                SELECT json_agg(json_build_object('id', d.id, 'name', d.name,
                         'departmentId', d.department_id, 'specialty', d.specialty) ORDER BY d.name, d.id)
                FROM doctor d WHERE d.tenant_id = t.id AND d.active{department_filter}), '[]'::json))::text
            FROM tenant t WHERE t.id = :t""",
        **params,
    )


def patients(fill: Fill, query: PatientsQuery) -> Optional[str]:
    """GET /api/patients: name-prefix or record-number matches, both without regard to case
    (`query.q` is already normalized: see `models.normalize_search`)."""
    prefix = query.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return source.scalar(
        fill,
        """SELECT json_build_object('clientId', t.id, 'patients', coalesce((
               SELECT json_agg(json_build_object('id', m.id, 'name', m.name, 'birthDate', m.birth_date)
                               ORDER BY m.name, m.id)
               FROM (SELECT p.id, p.name, p.birth_date FROM patient p
                     WHERE p.tenant_id = t.id
                       AND (lower(p.name) LIKE :prefix OR lower(p.record_number) = :exact)
                     ORDER BY p.name, p.id LIMIT :lim) m), '[]'::json))::text
           FROM tenant t WHERE t.id = :t""",
        t=query.clientId, prefix=prefix, exact=query.q, lim=query.limit,
    )


def free_slots(fill: Fill, query: SlotsQuery) -> Optional[str]:
    """GET /api/slots/available: slots of the local day not yet started and without a
    live appointment, in start order."""
    filters, params = "", {"t": query.clientId, "day": query.date}
    if query.departmentId is not None:
        filters += " AND s.department_id = :dep"
        params["dep"] = query.departmentId
    if query.doctorId is not None:
        filters += " AND s.doctor_id = :doc"
        params["doc"] = query.doctorId
    return source.scalar(
        fill,
        f"""SELECT json_build_object('clientId', t.id, 'date', :day::date, 'slots', coalesce((
                SELECT json_agg(json_build_object('slotId', s.id, 'doctorId', s.doctor_id,
                         'departmentId', s.department_id, 'startsAt', s.starts_at, 'endsAt', s.ends_at)
                       ORDER BY s.starts_at, s.id)
                FROM slot s
                WHERE s.tenant_id = t.id AND s.day = :day{filters} AND s.starts_at > now() AND s.withdrawn_at IS NULL
                  AND NOT EXISTS (SELECT 1 FROM appointment a WHERE a.tenant_id = s.tenant_id
                                  AND a.slot_id = s.id AND a.status <> 'cancelled')), '[]'::json))::text
            FROM tenant t WHERE t.id = :t""",
        **params,
    )


def appointment_list(fill: Fill, query: AppointmentListQuery) -> Optional[str]:
    """GET /api/appointments/list: one page in (startsAt, id) order plus the next cursor."""
    filters, params = "", dict[str, object](t=query.clientId, lim=query.limit)
    if query.date is not None:
        filters += " AND a.day = :day"
        params["day"] = query.date
    if query.from_ is not None:
        filters += " AND a.day >= :from_day"
        params["from_day"] = query.from_
    if query.to is not None:
        filters += " AND a.day <= :to_day"
        params["to_day"] = query.to
    for column, value in (("status", query.status), ("department_id", query.departmentId),
                          ("doctor_id", query.doctorId), ("patient_id", query.patientId)):
        if value is not None:
            filters += f" AND a.{column} = :{column}"
            params[column] = value
    position = query.position()
    if position is not None:
        filters += " AND (a.starts_at, a.id) > (:c_at, :c_id)"
        params["c_at"] = position.starts_at
        params["c_id"] = position.id
    rows = source.run(
        fill,
        f"""WITH page AS (
                SELECT a.*, row_number() OVER (ORDER BY a.starts_at, a.id) AS rn
                FROM (SELECT a.* FROM appointment a WHERE a.tenant_id = :t{filters}
                      ORDER BY a.starts_at, a.id LIMIT :lim + 1) a)
            SELECT (SELECT coalesce(json_agg({_APPOINTMENT_JSON} ORDER BY a.rn), '[]'::json)::text
                    FROM page a {APPOINTMENT_JOINS} WHERE a.rn <= :lim),
                   (SELECT a.starts_at FROM page a WHERE a.rn = :lim
                      AND EXISTS (SELECT 1 FROM page b WHERE b.rn > :lim)),
                   (SELECT a.id FROM page a WHERE a.rn = :lim
                      AND EXISTS (SELECT 1 FROM page b WHERE b.rn > :lim)),
                   EXISTS (SELECT 1 FROM tenant WHERE id = :t)""",
        **params,
    )
    items, next_at, next_id, tenant_exists = rows[0]
    if not tenant_exists:
        return None
    next_cursor = "null"
    if next_at is not None:
        signed = cursor.sign(get_settings().auth_secret, query.clientId, cursor.Position(next_at, next_id))
        next_cursor = '"' + signed + '"'
    return f'{{"clientId":{query.clientId},"appointments":{items},"nextCursor":{next_cursor}}}'


_DASHBOARD_SQL = """
WITH t AS (SELECT id, (now() AT TIME ZONE time_zone)::date AS today FROM tenant WHERE id = :t),
daily AS (SELECT v.* FROM ({source}) v, t WHERE v.tenant_id = t.id AND v.day BETWEEN t.today AND t.today + 7),
per_department AS (
    SELECT dep.id, dep.name,
           coalesce(sum(daily.total - daily.cancelled) FILTER (WHERE daily.day = t.today), 0) AS today,
           coalesce(sum(daily.total - daily.cancelled) FILTER (WHERE daily.day < t.today + 7), 0) AS live7,
           coalesce(sum(daily.slots) FILTER (WHERE daily.day < t.today + 7), 0) AS slots7
    FROM t JOIN department dep ON dep.tenant_id = t.id
    LEFT JOIN daily ON daily.department_id = dep.id
    GROUP BY dep.id, dep.name)
SELECT json_build_object(
    'clientId', t.id,
    'asOf', {as_of},
    'today', json_build_object(
        'total', coalesce(sum(daily.total) FILTER (WHERE daily.day = t.today), 0),
        'booked', coalesce(sum(daily.booked) FILTER (WHERE daily.day = t.today), 0),
        'checkedIn', coalesce(sum(daily.checked_in) FILTER (WHERE daily.day = t.today), 0),
        'completed', coalesce(sum(daily.completed) FILTER (WHERE daily.day = t.today), 0),
        'cancelled', coalesce(sum(daily.cancelled) FILTER (WHERE daily.day = t.today), 0),
        'noShow', coalesce(sum(daily.no_show) FILTER (WHERE daily.day = t.today), 0)),
    'upcoming7d', coalesce(sum(daily.booked + daily.checked_in) FILTER (WHERE daily.day > t.today), 0),
    'utilization', coalesce(round(sum(daily.total - daily.cancelled) FILTER (WHERE daily.day < t.today + 7)::numeric
                             / nullif(sum(daily.slots) FILTER (WHERE daily.day < t.today + 7), 0), 4), 0),
    'byDepartment', coalesce((SELECT json_agg(json_build_object('departmentId', pd.id, 'name', pd.name,
                                 'today', pd.today,
                                 'utilization', coalesce(round(pd.live7::numeric / nullif(pd.slots7, 0), 4), 0))
                              ORDER BY pd.name, pd.id) FROM per_department pd), '[]'::json)
)::text
FROM t LEFT JOIN daily ON true
GROUP BY t.id, t.today
"""

# The view's defining query (002_dashboard_views.sql) for one tenant, inlined: the live,
# uncached and unmaterialized variant, over the same days (yesterday .. today + 8).
_LIVE_DAILY = """
WITH w AS (SELECT id, (now() AT TIME ZONE time_zone)::date - 1 AS first_day,
                  (now() AT TIME ZONE time_zone)::date + 8 AS last_day FROM tenant WHERE id = :t)
SELECT a_or_s.tenant_id, a_or_s.department_id, a_or_s.day,
       sum(a_or_s.slots) AS slots, sum(a_or_s.total) AS total, sum(a_or_s.booked) AS booked,
       sum(a_or_s.checked_in) AS checked_in, sum(a_or_s.completed) AS completed,
       sum(a_or_s.cancelled) AS cancelled, sum(a_or_s.no_show) AS no_show, now() AS refreshed_at
FROM (
    SELECT s.tenant_id, s.department_id, s.day, 1 AS slots, 0 AS total, 0 AS booked, 0 AS checked_in,
           0 AS completed, 0 AS cancelled, 0 AS no_show
    FROM slot s JOIN w ON s.tenant_id = w.id WHERE s.day BETWEEN w.first_day AND w.last_day
    UNION ALL
    SELECT a.tenant_id, a.department_id, a.day, 0, 1, (a.status = 'booked')::int,
           (a.status = 'checked_in')::int, (a.status = 'completed')::int,
           (a.status = 'cancelled')::int, (a.status = 'no_show')::int
    FROM appointment a JOIN w ON a.tenant_id = w.id WHERE a.day BETWEEN w.first_day AND w.last_day
) a_or_s
GROUP BY 1, 2, 3
"""
_VIEW_AS_OF = "coalesce((SELECT max(refreshed_at) FROM dashboard_daily v WHERE v.tenant_id = t.id), now())"


def dashboard(fill: Fill, client_id: int) -> Optional[str]:
    """GET /api/dashboard/stats from the materialized view (as fresh as its last refresh)."""
    return source.scalar(fill, _DASHBOARD_SQL.format(source="SELECT * FROM dashboard_daily", as_of=_VIEW_AS_OF),
                         t=client_id)


def dashboard_live(client_id: int) -> Optional[str]:
    """The same document aggregated live over the base tables (for comparisons only)."""
    return db.scalar(_DASHBOARD_SQL.format(source=_LIVE_DAILY, as_of="now()"), t=client_id)


def tenant_today(client_id: int) -> Optional[dt.date]:
    """Today's date in the tenant's time zone."""
    return db.scalar("SELECT (now() AT TIME ZONE time_zone)::date FROM tenant WHERE id = :t", t=client_id)
