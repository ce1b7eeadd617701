"""Audited writes: the CTE that records a write in the audit trail inside the write's own
statement (same transaction, no extra round trip), and its parameters.

A write whose statement changes no row (refused: 404, 409) records nothing; one rolled back
by PostgreSQL takes its event with it.
"""
from __future__ import annotations

from typing import Any, Literal, Mapping, Optional

import orjson

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
    return _event_params(actor, action)


def _event_params(actor: Actor, action: str) -> dict[str, object]:
    return {"audit_sub": actor.sub, "audit_role": actor.role, "audit_issuer": actor.issuer,
            "audit_request": actor.request_id, "audit_action": action}


_RECORD_SQL = """
INSERT INTO audit_event (tenant_id, actor_sub, actor_role, actor_issuer, action, patient_id, request_id, details)
VALUES (:t, :audit_sub, :audit_role, :audit_issuer, :audit_action, :patient, :audit_request, CAST(:details AS jsonb))"""

# What an admin write's event keeps of its answer: ids and counts, never names or record numbers.
_KEPT = ("id", "doctorId", "departmentId", "active", "slotsAdded", "slotsRemoved", "created", "updated")


def answer_summary(answer: str) -> dict[str, Any]:
    """Ids and counts of a schedule-management answer (JSON text), and the ids of the
    appointments it cancelled."""
    document = orjson.loads(answer)
    summary: dict[str, Any] = {k: document[k] for k in _KEPT if k in document}
    for name in ("department", "doctor", "absence", "patient"):
        if isinstance(document.get(name), dict) and "id" in document[name]:
            summary[f"{name}Id"] = document[name]["id"]
    if isinstance(document.get("publication"), dict):
        summary["public"] = document["publication"]["public"]
    if document.get("cancelled"):
        summary["cancelledAppointmentIds"] = [a["id"] for a in document["cancelled"]]
    return summary


def record(conn: Any, actor: Actor, action: str, details: Mapping[str, Any]) -> None:
    """One audit event for an admin write, in the write's own transaction (`conn`)."""
    patient = details.get("patientId")
    conn.run(_RECORD_SQL, t=actor.tenant, patient=patient, details=orjson.dumps(dict(details)).decode(),
             **_event_params(actor, action))
