"""Audited writes: the CTE that records a write in the audit trail inside the write's own
statement (same transaction, no extra round trip), and its parameters.

A write whose statement changes no row (refused: 404, 409) records nothing; one rolled back
by PostgreSQL takes its event with it.
"""
from __future__ import annotations

from typing import Literal, Optional

from chalicelib.audit.actor import Actor

WriteAction = Literal["book", "cancel", "reschedule", "status"]


def audited(written: str, before: Optional[str] = None) -> str:
    """The CTE `audited`: one audit_event per appointment row of CTE `written` (its
    RETURNING rows), with the from/to slot and status in `details`; `before` names the CTE
    holding the same rows as they were (None: a new row, nothing before it)."""
    if before is None:
        source, from_slot, from_status = f"{written} n", "NULL::bigint", "NULL::text"
    else:
        source, from_slot, from_status = f"{written} n JOIN {before} o ON o.id = n.id", "o.slot_id", "o.status"
    return f"""audited AS (
        INSERT INTO audit_event (tenant_id, actor_sub, actor_role, actor_issuer, action,
                                 appointment_id, patient_id, request_id, details)
        SELECT n.tenant_id, CAST(:audit_sub AS text), CAST(:audit_role AS text), CAST(:audit_issuer AS text),
               CAST(:audit_action AS text), n.id, n.patient_id, CAST(:audit_request AS text),
               jsonb_build_object('fromSlotId', {from_slot}, 'toSlotId', n.slot_id,
                                  'fromStatus', {from_status}, 'toStatus', n.status)
        FROM {source})"""


def audit_params(actor: Actor, action: WriteAction) -> dict[str, object]:
    """The named parameters of `audited` for `actor` doing `action`."""
    return {"audit_sub": actor.sub, "audit_role": actor.role, "audit_issuer": actor.issuer,
            "audit_request": actor.request_id, "audit_action": action}
