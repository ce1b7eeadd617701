-- Idempotency keys belong to the caller: scoped to the tenant and the token's subject, so
-- another user of the same hospital who happens to send the same key gets no one else's
-- answer. Rows older than 24 hours are ignored and purged (IDEMPOTENCY_RETENTION in
-- chalicelib/booking/idempotency.py). Rows from before this migration have no subject and so
-- can never match again.
ALTER TABLE idempotency_key ADD COLUMN subject text NOT NULL DEFAULT '';
ALTER TABLE idempotency_key ALTER COLUMN subject DROP DEFAULT;
ALTER TABLE idempotency_key DROP CONSTRAINT idempotency_key_pkey;
ALTER TABLE idempotency_key ADD PRIMARY KEY (tenant_id, subject, key);
CREATE INDEX idempotency_key_created_at ON idempotency_key (created_at);

-- Patient search matches record numbers without regard to case (one normalization for the
-- cache key and the query: lower-cased).
CREATE INDEX patient_record_number_lower ON patient (tenant_id, lower(record_number));
