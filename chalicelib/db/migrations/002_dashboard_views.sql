-- Per tenant, department and local day: appointments by status and bookable slots,
-- for the days the dashboard shows (yesterday .. today + 8 in each tenant's time zone,
-- so a view refreshed just before midnight still covers the new "today").
-- REFRESH MATERIALIZED VIEW CONCURRENTLY needs the unique index below.
CREATE MATERIALIZED VIEW dashboard_daily AS
WITH window_days AS (
    SELECT t.id AS tenant_id,
           (now() AT TIME ZONE t.time_zone)::date - 1 AS first_day,
           (now() AT TIME ZONE t.time_zone)::date + 8 AS last_day
    FROM tenant t
),
slot_counts AS (
    SELECT s.tenant_id, s.department_id, s.day, count(*) AS slots
    FROM slot s JOIN window_days w ON w.tenant_id = s.tenant_id
    WHERE s.day BETWEEN w.first_day AND w.last_day
    GROUP BY 1, 2, 3
),
appointment_counts AS (
    SELECT a.tenant_id, a.department_id, a.day,
           count(*) AS total,
           count(*) FILTER (WHERE a.status = 'booked') AS booked,
           count(*) FILTER (WHERE a.status = 'checked_in') AS checked_in,
           count(*) FILTER (WHERE a.status = 'completed') AS completed,
           count(*) FILTER (WHERE a.status = 'cancelled') AS cancelled,
           count(*) FILTER (WHERE a.status = 'no_show') AS no_show
    FROM appointment a JOIN window_days w ON w.tenant_id = a.tenant_id
    WHERE a.day BETWEEN w.first_day AND w.last_day
    GROUP BY 1, 2, 3
)
SELECT coalesce(s.tenant_id, a.tenant_id) AS tenant_id,
       coalesce(s.department_id, a.department_id) AS department_id,
       coalesce(s.day, a.day) AS day,
       coalesce(s.slots, 0) AS slots,
       coalesce(a.total, 0) AS total,
       coalesce(a.booked, 0) AS booked,
       coalesce(a.checked_in, 0) AS checked_in,
       coalesce(a.completed, 0) AS completed,
       coalesce(a.cancelled, 0) AS cancelled,
       coalesce(a.no_show, 0) AS no_show,
       now() AS refreshed_at
FROM slot_counts s
FULL JOIN appointment_counts a
  ON a.tenant_id = s.tenant_id AND a.department_id = s.department_id AND a.day = s.day;

CREATE UNIQUE INDEX dashboard_daily_key ON dashboard_daily (tenant_id, department_id, day);
