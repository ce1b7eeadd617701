"""The one lock order of every write that takes, moves, frees or changes a live appointment:
slot rows (ascending id), then the patient row, then the appointment row, all taken before
the statement inserts or updates anything.

Why: PostgreSQL checks the partial unique index (one live appointment per slot) and the
exclusion constraints (per doctor, per patient at any instant) after a row's index entries
are in place, and a check that meets another transaction's uncommitted entry waits for it.
Two concurrent inserts for one slot or one patient could each wait on the other's entries
(deadlock, SQLSTATE 40P01) or in long chains (statement timeout). Holding the slot's (and
the patient's) row lock first makes contenders queue: the next one starts its insert only
after the previous holder committed, so its checks see a committed row (`ON CONFLICT DO
NOTHING`, or a 23505/23P01 that answers 409) and never wait on an uncommitted one.

The locks are `FOR NO KEY UPDATE`: they queue writers among themselves but not the foreign
key checks (`FOR KEY SHARE`) of other inserts. Each fragment is a list of CTEs for a
`WITH` clause; a later lock's CTE refers to the earlier one, so one statement takes them in
order (the sort runs below the row locks, so slots lock in id order).
"""
from __future__ import annotations

# A slot that may be booked: offered by the schedule (not withdrawn) and of an active doctor
# (a deactivated doctor takes no new bookings: their slot answers 404 like an unknown one).
BOOKABLE_SLOT = """slot.withdrawn_at IS NULL
    AND EXISTS (SELECT 1 FROM doctor d WHERE d.tenant_id = slot.tenant_id AND d.id = slot.doctor_id AND d.active)"""

# `s`: the slot (:slot), locked; `pt`: the patient (:patient), locked once the slot is.
BOOKING_LOCKS = f"""
s AS MATERIALIZED (SELECT * FROM slot WHERE tenant_id = :t AND id = :slot AND {BOOKABLE_SLOT} FOR NO KEY UPDATE),
pt AS MATERIALIZED (SELECT id FROM patient WHERE tenant_id = :t AND id = :patient
                    AND (SELECT count(*) FROM s) >= 0 FOR NO KEY UPDATE)"""


def appointment_locks(owner: str, new_slot: bool) -> str:
    """CTEs for a write to appointment :id: its slot (and with `new_slot`, slot :slot too) in
    id order, then its patient, then `target`, the appointment row as last committed.
    `owner` is an extra condition on the appointment (a patient's own)."""
    slots = "ARRAY[(SELECT slot_id FROM cur), CAST(:slot AS bigint)]" if new_slot else \
        "ARRAY[(SELECT slot_id FROM cur)]"
    return f"""
cur AS MATERIALIZED (SELECT slot_id, patient_id FROM appointment WHERE tenant_id = :t AND id = :id {owner}),
held AS MATERIALIZED (SELECT id FROM slot WHERE tenant_id = :t AND id = ANY({slots})
                      ORDER BY id FOR NO KEY UPDATE),
who AS MATERIALIZED (SELECT id FROM patient WHERE tenant_id = :t AND id = (SELECT patient_id FROM cur)
                     AND (SELECT count(*) FROM held) >= 0 FOR NO KEY UPDATE),
target AS (SELECT * FROM appointment WHERE tenant_id = :t AND id = :id {owner}
           AND (SELECT count(*) FROM who) >= 0 FOR UPDATE)"""
