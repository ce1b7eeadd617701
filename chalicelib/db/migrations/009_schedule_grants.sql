-- What the schedule-management writes (migration 008, chalicelib/booking/schedules.py,
-- regeneration.py, patient_records.py) need of the application role hb_app (007): the
-- catalog, working hours, absences and patients become writable; free future slots can be
-- regenerated (deleted, withdrawn, inserted). Still no DDL, and audit_event stays
-- read/insert only.
GRANT INSERT, UPDATE ON department, doctor, patient TO hb_app;
GRANT INSERT, UPDATE, DELETE ON working_hours TO hb_app;
GRANT INSERT, DELETE ON absence TO hb_app;
-- Withdrawing a slot, and offering a withdrawn one again (INSERT ... ON CONFLICT DO UPDATE).
GRANT UPDATE (withdrawn_at, department_id, day, ends_at), DELETE ON slot TO hb_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO hb_app;
