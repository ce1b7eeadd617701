"""Service functions behind the routes: guard, validate, read through the cache or write
and invalidate. Reads return a ReadPlan (served through the cache by `read`), writes a Chalice Response."""
from __future__ import annotations

import datetime as dt
import time
from typing import Callable, Mapping, Optional

from chalice import Response

from chalicelib.auth import Principal, require_role, require_tenant
from chalicelib.booking import commands, queries, transitions
from chalicelib.booking.idempotency import IdempotencyKey
from chalicelib.booking.models import (AppointmentListQuery, BookingBody, CancelBody, DoctorsQuery,
                                       PatientsQuery, RescheduleBody, SlotsQuery, StatusBody, TenantQuery,
                                       normalize_search, parse, parse_path_id)
from chalicelib.booking.caching import get_cache
from chalicelib.booking.invalidation import after_write
from chalicelib.booking.outcome import WriteResult
from chalicelib.cache import keys as scopes
from chalicelib.cache.keys import CacheKey
from chalicelib.cache.policies import Policy
from chalicelib.cache.tiered import CacheResult, TieredCache
from chalicelib.http import ApiError, json_response
from chalicelib.settings import get_settings

STAFF = ("staff", "admin")
_NO_TENANT = "No hospital with this clientId exists."


class ReadPlan:
    """A validated, authorized cached read: what to look up, how, and until when the
    caller's token allows it. Built once per (route, token, query) and reused."""

    __slots__ = ("expires_at", "key", "policy", "loader")

    def __init__(self, principal: Principal, key: CacheKey, loader: Callable[[], Optional[str]]) -> None:
        self.expires_at = principal.expires_at
        self.key = key
        self.policy: Policy = get_cache().policy(key.resource)
        self.loader = loader


def cached_response(result: CacheResult, if_none_match: Optional[str]) -> Response:
    """200 with the cached body, or 304 when the client's ETag matches; API.md headers."""
    entry = result.entry
    timing = f'cache;desc="{result.source}";dur={result.elapsed_s * 1000:.3f}'
    if result.db_s:
        timing += f", db;dur={result.db_s * 1000:.3f}"
    max_age = int(entry.fresh_until - time.time())
    headers = {"Content-Type": "application/json", "X-Cache": result.source, "Server-Timing": timing,
               "ETag": entry.etag, "Cache-Control": f"private, max-age={max_age if max_age > 0 else 0}"}
    if if_none_match and entry.etag in (t.strip() for t in if_none_match.split(",")):
        del headers["Content-Type"]
        return Response(body="", status_code=304, headers=headers)
    return Response(body=entry.body, status_code=200, headers=headers)


def read(current: TieredCache, plan: ReadPlan, if_none_match: Optional[str]) -> Response:
    """Serve a plan through the cache (404 when the loader finds no such tenant)."""
    result = current.get_or_load(plan.key, plan.loader, plan.policy)
    if result is None:
        raise ApiError(404, _NO_TENANT)
    return cached_response(result, if_none_match)


# -- cache keys: one builder per cached read, shared by the routes and the pre-warm job
# (chalicelib.jobs.prewarm), so a pre-warmed entry has byte-identical body and version keys.
def departments_key(tenant: int) -> CacheKey:
    """GET /api/departments."""
    return get_cache().keys.key(tenant, "departments", "all", (scopes.CATALOG,))


def doctors_key(tenant: int, department_id: Optional[int] = None) -> CacheKey:
    """GET /api/doctors (all active doctors when department_id is None)."""
    return get_cache().keys.key(tenant, "doctors", f"dep={department_id or ''}", (scopes.CATALOG,))


def patients_key(tenant: int, q: str, limit: int) -> CacheKey:
    """GET /api/patients."""
    return get_cache().keys.key(tenant, "patients", f"q={normalize_search(q)}:n={limit}", (scopes.PATIENTS,))


def slots_key(tenant: int, day: dt.date, department_id: Optional[int] = None,
              doctor_id: Optional[int] = None) -> CacheKey:
    """GET /api/slots/available for one local day (no filters when both ids are None)."""
    return get_cache().keys.key(tenant, "slots", f"{day}:dep={department_id or ''}:doc={doctor_id or ''}",
                                (scopes.slots_scope(day, doctor_id),))


def appointments_key(q: AppointmentListQuery) -> CacheKey:
    """GET /api/appointments/list (after the patient restriction is applied)."""
    deps = (scopes.appointments_day_scope(q.date),) if q.date is not None else (scopes.ALL_APPOINTMENTS,)
    params_key = ":".join(f"{k}={v}" for k, v in sorted(q.model_dump(exclude_none=True).items()))
    return get_cache().keys.key(q.clientId, "appointments", params_key, deps)


def dashboard_key(tenant: int) -> CacheKey:
    """GET /api/dashboard/stats."""
    return get_cache().keys.key(tenant, "dashboard", "stats", (scopes.DASHBOARD,))


def _tenant_guard(principal: Principal, client_id: int, *roles: str) -> None:
    require_tenant(principal, client_id)
    if roles:
        require_role(principal, *roles)


def departments(principal: Principal, params: Mapping[str, str]) -> ReadPlan:
    """GET /api/departments."""
    q = parse(TenantQuery, params)
    _tenant_guard(principal, q.clientId)
    return ReadPlan(principal, departments_key(q.clientId), lambda: queries.departments(q.clientId))


def doctors(principal: Principal, params: Mapping[str, str]) -> ReadPlan:
    """GET /api/doctors."""
    q = parse(DoctorsQuery, params)
    _tenant_guard(principal, q.clientId)
    return ReadPlan(principal, doctors_key(q.clientId, q.departmentId), lambda: queries.doctors(q))


def patients(principal: Principal, params: Mapping[str, str]) -> ReadPlan:
    """GET /api/patients (staff and admin only)."""
    q = parse(PatientsQuery, params)
    _tenant_guard(principal, q.clientId, *STAFF)
    return ReadPlan(principal, patients_key(q.clientId, q.q, q.limit), lambda: queries.patients(q))


def free_slots(principal: Principal, params: Mapping[str, str]) -> ReadPlan:
    """GET /api/slots/available."""
    q = parse(SlotsQuery, params)
    _tenant_guard(principal, q.clientId)
    return ReadPlan(principal, slots_key(q.clientId, q.date, q.departmentId, q.doctorId),
                    lambda: queries.free_slots(q))


def appointment_list(principal: Principal, params: Mapping[str, str]) -> ReadPlan:
    """GET /api/appointments/list (staff, admin; a patient sees only their own)."""
    q = parse(AppointmentListQuery, params)
    _tenant_guard(principal, q.clientId)
    q.check_range()
    if principal.is_patient:
        if q.patientId is not None and q.patientId != principal.patient_id:
            raise ApiError(403, "A patient may list only their own appointments.")
        q = q.model_copy(update={"patientId": principal.patient_id})
    return ReadPlan(principal, appointments_key(q), lambda: queries.appointment_list(q))


def dashboard(principal: Principal, params: Mapping[str, str]) -> ReadPlan:
    """GET /api/dashboard/stats (staff and admin)."""
    q = parse(TenantQuery, params)
    _tenant_guard(principal, q.clientId, *STAFF)
    return ReadPlan(principal, dashboard_key(q.clientId), lambda: queries.dashboard(q.clientId))


# The cached GET routes, by name: each builds a ReadPlan from the caller and the query.
PLANNERS: dict[str, Callable[[Principal, Mapping[str, str]], ReadPlan]] = {
    "departments": departments, "doctors": doctors, "patients": patients, "slots": free_slots,
    "appointments": appointment_list, "dashboard": dashboard,
}


def _answer(result: WriteResult) -> Response:
    """Invalidate what a committed write touched, then answer with its status and body."""
    if result.touched is not None:
        after_write(get_cache(), result.touched)
    return json_response(result.body, status=result.status)


def book(principal: Principal, body: Mapping[str, object], idempotency_key: Optional[str]) -> Response:
    """POST /api/appointments (a patient token: for themselves, within the future-bookings cap)."""
    b = parse(BookingBody, body)
    require_tenant(principal, b.clientId)
    if principal.is_patient and b.patientId != principal.patient_id:
        raise ApiError(403, "A patient may book only for themselves.")
    cap = get_settings().patient_max_future_bookings if principal.is_patient else None
    return _answer(commands.book(b, _idempotency(principal, idempotency_key), patient_cap=cap))


def _idempotency(principal: Principal, header: Optional[str]) -> Optional[IdempotencyKey]:
    """The caller's Idempotency-Key, scoped to their tenant and subject; 400 when malformed."""
    if header is None:
        return None
    if not (1 <= len(header) <= 200 and header.isascii() and header.isprintable()):
        raise ApiError(400, "Idempotency-Key must be 1 to 200 printable ASCII characters.")
    return IdempotencyKey(principal.tenant, principal.sub, header)


def _own_appointments(principal: Principal, client_id: int) -> Optional[int]:
    """Staff and admin act on any appointment of the tenant (None); a patient only on their
    own (their patientId: others' answer 404)."""
    require_tenant(principal, client_id)
    if not principal.is_patient:
        require_role(principal, *STAFF)
    return principal.patient_id


def cancel(principal: Principal, appointment_id: str, body: Mapping[str, object]) -> Response:
    """POST /api/appointments/{id}/cancel."""
    ident = parse_path_id(appointment_id)
    b = parse(CancelBody, body)
    return _answer(commands.cancel(ident, b, _own_appointments(principal, b.clientId)))


def reschedule(principal: Principal, appointment_id: str, body: Mapping[str, object],
               idempotency_key: Optional[str]) -> Response:
    """POST /api/appointments/{id}/reschedule."""
    ident = parse_path_id(appointment_id)
    b = parse(RescheduleBody, body)
    owner = _own_appointments(principal, b.clientId)
    return _answer(commands.reschedule(ident, b, owner, _idempotency(principal, idempotency_key)))


def set_status(principal: Principal, appointment_id: str, body: Mapping[str, object]) -> Response:
    """POST /api/appointments/{id}/status (staff and admin)."""
    ident = parse_path_id(appointment_id)
    b = parse(StatusBody, body)
    _tenant_guard(principal, b.clientId, *STAFF)
    return _answer(transitions.set_status(ident, b))
