-- The application's database role, `hb_app`: a NOLOGIN group role holding only what the API
-- and its scheduled jobs do. The Lambda functions log in as a LOGIN role that is a member
-- (`hb_app_login`, created by the operator with the password of its own secret: see
-- docs/deployment.md); `migrate` keeps running as the owner of the schema (the master user).
--
-- A role is cluster-wide, so it is created once and the CREATE is skipped in every other
-- database of the server (tests create many); a concurrent first creation is tolerated.
-- Everything below is per database and safe to repeat.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'hb_app') THEN
        CREATE ROLE hb_app NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- another database's migration created it at the same moment
END $$;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO hb_app', current_database());
END $$;

-- No DDL: the schema can be used, never created in (PostgreSQL 15 already withholds CREATE
-- from PUBLIC on new clusters; a cluster upgraded from an older version may still grant it).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO hb_app;

-- Reference data and the dashboard view: read only.
GRANT SELECT ON tenant, department, doctor, working_hours, dashboard_daily TO hb_app;
-- Bookings, cancellations, reschedules and status changes. No DELETE: a cancelled
-- appointment stays as a row.
GRANT SELECT, INSERT, UPDATE ON appointment TO hb_app;
-- The daily slot extension inserts slots. Writes lock slot and patient rows with
-- FOR NO KEY UPDATE, which PostgreSQL allows only with UPDATE on at least one column: the
-- app gets it on `id` alone and never changes it (chalicelib/booking/locking.py).
GRANT SELECT, INSERT ON slot TO hb_app;
GRANT SELECT ON patient TO hb_app;
GRANT UPDATE (id) ON slot, patient TO hb_app;
-- Idempotency-Key answers (stored, replaced on a retried key, purged after 24 hours) and
-- the invalidation outbox (written after a failed Redis bump, deleted when replayed).
GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_key TO hb_app;
GRANT SELECT, INSERT, DELETE ON cache_invalidation_outbox TO hb_app;
-- The refresh job records each refresh (insert, or update of the view's row).
GRANT SELECT, INSERT, UPDATE ON view_refresh TO hb_app;
-- nextval() of the id sequences (slot, appointment, outbox and any later table's).
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO hb_app;

-- The audit trail (migration 006) is append-only for the app: read and insert, never
-- update, delete or truncate. Written so that it holds whether or not the table exists.
DO $$
BEGIN
    IF to_regclass('public.audit_event') IS NOT NULL THEN
        REVOKE ALL ON public.audit_event FROM hb_app;
        GRANT SELECT, INSERT ON public.audit_event TO hb_app;
    END IF;
END $$;

-- REFRESH MATERIALIZED VIEW needs the view's owner. Rather than make the app a member of
-- the owner (which could then ALTER or DROP the views), this function, owned by the owner
-- of the schema, refreshes one materialized view of schema public CONCURRENTLY and can do
-- nothing else. The search path is pinned so that no object of the caller is picked up.
CREATE FUNCTION refresh_materialized_view(view_name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_matviews WHERE schemaname = 'public' AND matviewname = view_name) THEN
        RAISE EXCEPTION 'no materialized view public.% to refresh', view_name
            USING ERRCODE = 'undefined_table';
    END IF;
    EXECUTE format('REFRESH MATERIALIZED VIEW CONCURRENTLY public.%I', view_name);
END $$;
REVOKE ALL ON FUNCTION refresh_materialized_view(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION refresh_materialized_view(text) TO hb_app;

-- Objects that later migrations create (as this same owner): tables readable by the app
-- but never writable until that migration grants the writes it needs; sequences usable;
-- functions not executable by anyone until granted.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO hb_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE ON SEQUENCES TO hb_app;
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
