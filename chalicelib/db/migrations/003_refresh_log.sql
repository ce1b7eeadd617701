-- The last refresh of each materialized view, for the monitor page and operators.
CREATE TABLE view_refresh (
    view_name       text PRIMARY KEY,
    refreshed_at    timestamptz NOT NULL,
    duration_ms     double precision NOT NULL,
    keys_prewarmed  integer NOT NULL DEFAULT 0,
    status          text NOT NULL CHECK (status IN ('ok', 'failed', 'skipped')),
    detail          text
);
