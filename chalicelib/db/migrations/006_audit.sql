-- Audit trail (docs/audit.md): who did what to which appointment or patient, and when.
-- Append-only by design: the app inserts and reads; migration 007 revokes UPDATE and
-- DELETE from the application role. No foreign keys: an event outlives nothing it names
-- and costs the audited write no extra lookups.
CREATE TABLE audit_event (
    id              bigserial PRIMARY KEY,
    tenant_id       integer NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    actor_sub       text NOT NULL,
    actor_role      text NOT NULL,
    actor_issuer    text NOT NULL,
    action          text NOT NULL,
    appointment_id  bigint,
    patient_id      integer,
    request_id      text,
    details         jsonb NOT NULL DEFAULT '{}'::jsonb
);
-- GET /api/audit pages newest first per tenant, optionally narrowed to one appointment,
-- patient or actor (an action filter rides on the tenant's index).
CREATE INDEX audit_event_newest ON audit_event (tenant_id, at DESC, id DESC);
CREATE INDEX audit_event_by_appointment ON audit_event (tenant_id, appointment_id, at DESC, id DESC)
    WHERE appointment_id IS NOT NULL;
CREATE INDEX audit_event_by_patient ON audit_event (tenant_id, patient_id, at DESC, id DESC)
    WHERE patient_id IS NOT NULL;
CREATE INDEX audit_event_by_actor ON audit_event (tenant_id, actor_sub, at DESC, id DESC);
