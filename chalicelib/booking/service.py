"""The appointment writes every interface calls: guard, validate, commit, invalidate what
the commit touched and return the result (the JSON API answers it as it is, FHIR renders
it; refusals are the domain's errors, chalicelib/booking/errors.py). Cached reads are
declared in chalicelib/booking/resources.py."""
from __future__ import annotations

from typing import Mapping, Optional

from chalicelib.audit.actor import Actor
from chalicelib.auth import STAFF, Principal, require_role, require_tenant
from chalicelib.booking import commands, transitions
from chalicelib.booking.caching import get_cache
from chalicelib.booking.errors import InvalidRequest, NotAllowed
from chalicelib.booking.idempotency import IdempotencyKey, max_live_keys
from chalicelib.booking.invalidation import after_write
from chalicelib.booking.models import BookingBody, CancelBody, RescheduleBody, StatusBody, parse, parse_path_id
from chalicelib.booking.outcome import WriteResult
from chalicelib.settings import get_settings


def invalidated(result: WriteResult) -> WriteResult:
    """The result of a committed write, once what it touched is invalidated."""
    if result.touched is not None:
        after_write(get_cache(), result.touched, result.position)
    return result


def book(principal: Principal, body: Mapping[str, object], idempotency_key: Optional[str]) -> WriteResult:
    """POST /api/appointments (a patient token: for themselves, within the future-bookings cap)."""
    b = parse(BookingBody, body)
    require_tenant(principal, b.clientId)
    if principal.is_patient and b.patientId != principal.patient_id:
        raise NotAllowed("A patient may book only for themselves.")
    cap = get_settings().patient_max_future_bookings if principal.is_patient else None
    key = idempotency_of(principal, idempotency_key)
    return invalidated(commands.book(b, Actor.in_request(principal), key, patient_cap=cap))


def idempotency_of(principal: Principal, header: Optional[str]) -> Optional[IdempotencyKey]:
    """The caller's Idempotency-Key, scoped to their tenant and identity; 400 when malformed."""
    if header is None:
        return None
    if not (1 <= len(header) <= 200 and header.isascii() and header.isprintable()):
        raise InvalidRequest("Idempotency-Key must be 1 to 200 printable ASCII characters.")
    return IdempotencyKey(principal.tenant, principal.identity, header, max_live_keys(principal.role))


def _own_appointments(principal: Principal, client_id: int) -> Optional[int]:
    """Staff and admin act on any appointment of the tenant (None); a patient only on their
    own (their patientId: others' answer 404)."""
    require_tenant(principal, client_id)
    if not principal.is_patient:
        require_role(principal, *STAFF)
    return principal.patient_id


def cancel(principal: Principal, appointment_id: str, body: Mapping[str, object]) -> WriteResult:
    """POST /api/appointments/{id}/cancel."""
    ident = parse_path_id(appointment_id)
    b = parse(CancelBody, body)
    owner = _own_appointments(principal, b.clientId)
    return invalidated(commands.cancel(ident, b, Actor.in_request(principal), owner))


def reschedule(principal: Principal, appointment_id: str, body: Mapping[str, object],
               idempotency_key: Optional[str]) -> WriteResult:
    """POST /api/appointments/{id}/reschedule."""
    ident = parse_path_id(appointment_id)
    b = parse(RescheduleBody, body)
    owner = _own_appointments(principal, b.clientId)
    key = idempotency_of(principal, idempotency_key)
    return invalidated(commands.reschedule(ident, b, Actor.in_request(principal), owner, key))


def set_status(principal: Principal, appointment_id: str, body: Mapping[str, object]) -> WriteResult:
    """POST /api/appointments/{id}/status (staff and admin)."""
    ident = parse_path_id(appointment_id)
    b = parse(StatusBody, body)
    require_tenant(principal, b.clientId)
    require_role(principal, *STAFF)
    return invalidated(transitions.set_status(ident, b, Actor.in_request(principal)))
