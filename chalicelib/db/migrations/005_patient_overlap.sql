-- No patient is in two live (not cancelled) appointments at once, whatever any cache or
-- client says. Like the doctor constraint of 001, without btree_gist: the scalar columns
-- become one-point ranges so that GiST can compare them with =. Writes name this
-- constraint when they turn its violation (SQLSTATE 23P01) into 409 `patient_busy`
-- (chalicelib/booking/outcome.py).
--
-- Data written before this rule may hold such overlaps (the old demo seed did). Going by
-- creation order (created_at, id), every live appointment that overlaps one of the same
-- patient created earlier and still live is cancelled, with a cancel_reason saying why, so
-- the earliest booking of each double booking stays and the constraint can be added.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT a.tenant_id, a.id FROM appointment a
        WHERE a.status <> 'cancelled' AND EXISTS (
            SELECT 1 FROM appointment b
            WHERE b.tenant_id = a.tenant_id AND b.patient_id = a.patient_id AND b.status <> 'cancelled'
              AND (b.created_at, b.id) < (a.created_at, a.id)
              AND tstzrange(b.starts_at, b.ends_at, '[)') && tstzrange(a.starts_at, a.ends_at, '[)'))
        ORDER BY a.created_at, a.id
    LOOP
        UPDATE appointment a
        SET status = 'cancelled', cancelled_at = greatest(now(), a.created_at),
            cancel_reason = 'Overlapped an earlier appointment of the same patient (migration 005)'
        WHERE a.tenant_id = r.tenant_id AND a.id = r.id AND EXISTS (
            SELECT 1 FROM appointment b
            WHERE b.tenant_id = a.tenant_id AND b.patient_id = a.patient_id AND b.status <> 'cancelled'
              AND (b.created_at, b.id) < (a.created_at, a.id)
              AND tstzrange(b.starts_at, b.ends_at, '[)') && tstzrange(a.starts_at, a.ends_at, '[)'));
    END LOOP;
END $$;

ALTER TABLE appointment ADD CONSTRAINT appointment_no_patient_overlap EXCLUDE USING gist (
    int4range(tenant_id, tenant_id, '[]') WITH =,
    int4range(patient_id, patient_id, '[]') WITH =,
    tstzrange(starts_at, ends_at, '[)') WITH &&
) WHERE (status <> 'cancelled');

-- An Idempotency-Key answer records the operation it answered (`book`, `reschedule`), so
-- the same key sent to another operation is 422 `idempotency_key_reused` however its
-- body hashes. Every row before this migration answered a booking.
ALTER TABLE idempotency_key ADD COLUMN operation text NOT NULL DEFAULT 'book';
ALTER TABLE idempotency_key ALTER COLUMN operation DROP DEFAULT;
