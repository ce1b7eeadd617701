"""GET /api/audit: a tenant's audit events, newest first, a page at a time (admins only;
read from the primary, never cached)."""
from __future__ import annotations

from typing import Any, Mapping, Optional

from chalice import Response

from chalicelib.auth import Principal, require_role, require_tenant
from chalicelib.booking import cursor
from chalicelib.booking.models import AuditQuery, parse
from chalicelib.db import connection as db
from chalicelib.http import json_response
from chalicelib.settings import get_settings

_COLUMNS = "id, at, actor_sub, actor_role, action, appointment_id, patient_id, request_id, details"
NOT_STORED = {"Cache-Control": "no-store"}


def audit_page(principal: Principal, params: Mapping[str, str]) -> Response:
    """One page of the tenant's audit events for an admin of that tenant (403 otherwise)."""
    query = parse(AuditQuery, params)
    require_tenant(principal, query.clientId)
    require_role(principal, "admin")
    query.check_range()
    rows = _newest_first(query)
    events = [_event(row) for row in rows[:query.limit]]
    next_cursor = _next_cursor(query, rows)
    return json_response({"clientId": query.clientId, "events": events, "nextCursor": next_cursor},
                         headers=NOT_STORED)


def _newest_first(query: AuditQuery) -> list[list[Any]]:
    """Up to limit + 1 matching rows (the extra one says whether a next page exists)."""
    filters = [("appointment_id = :appointment", "appointment", query.appointmentId),
               ("patient_id = :patient", "patient", query.patientId), ("actor_sub = :actor", "actor", query.actor),
               ("action = :action", "action", query.action), ("at >= :from_at", "from_at", query.from_),
               ("at < :to_at", "to_at", query.to)]
    where, params = ["tenant_id = :t"], dict[str, object](t=query.clientId, lim=query.limit + 1)
    for condition, name, value in filters:
        if value is not None:
            where.append(condition)
            params[name] = value
    position = query.position()
    if position is not None:
        where.append("(at, id) < (:c_at, :c_id)")
        params.update(c_at=position.starts_at, c_id=position.id)
    return db.run(f"SELECT {_COLUMNS} FROM audit_event WHERE {' AND '.join(where)}"
                  " ORDER BY at DESC, id DESC LIMIT :lim", **params)


def _event(row: list[Any]) -> dict[str, Any]:
    """One event as API.md shapes it (appointmentId and patientId only when set)."""
    ident, at, sub, role, action, appointment_id, patient_id, request_id, details = row
    event: dict[str, Any] = {"id": ident, "at": at.isoformat(), "actor": {"sub": sub, "role": role},
                             "action": action}
    if appointment_id is not None:
        event["appointmentId"] = appointment_id
    if patient_id is not None:
        event["patientId"] = patient_id
    event["requestId"] = request_id
    event["details"] = details
    return event


def _next_cursor(query: AuditQuery, rows: list[list[Any]]) -> Optional[str]:
    """The signed position after this page's last event, when more events follow."""
    if len(rows) <= query.limit:
        return None
    last = rows[query.limit - 1]
    return cursor.sign(get_settings().auth_secret, query.clientId, cursor.Position(last[1], last[0]))
