"""The FHIR cached reads, declared with the native CachedResource (same cache, key space,
policies and headers): each parses its own FHIR parameters into a `search.Query` whose
tenant is the token's, and depends on the same invalidation scopes as the native read of
the same rows, so a write through either interface invalidates both."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Mapping, Optional

from chalicelib.auth import OPERATOR, STAFF, Principal, require_role
from chalicelib.booking import scopes
from chalicelib.booking.reads import ReadPlan
from chalicelib.booking.resources import CachedResource, search_digest
from chalicelib.cache.policies import Freshness
from chalicelib.cache.tickets import Fill
from chalicelib.fhir import search
from chalicelib.fhir.search import Params, Query
from chalicelib.http import ApiError
from chalicelib.lazy import lazy_module

if TYPE_CHECKING:
    from chalicelib.cache.tiered import TieredCache
    from chalicelib.fhir import queries
else:
    queries = lazy_module("chalicelib.fhir.queries", globals())

Parser = Callable[[Principal, Params], Query]
_SEARCH_PAGE = ("_count", "_offset")
_HIDDEN_TERMS = ("name", "identifier")  # key names carry a digest of these, never the text


@dataclass(frozen=True)
class FhirResource(CachedResource):
    """A cached FHIR read or search: `parser` turns the request's parameters (every value of
    each: FHIR repeats names) into the Query of the caller's tenant."""

    parser: Optional[Parser] = None

    def plan(self, cache: TieredCache, principal: Principal, params: Mapping[str, str]) -> ReadPlan:
        if principal.role == OPERATOR:
            raise ApiError(403, "The operator role reads no tenant's data.")
        if self.roles:
            require_role(principal, *self.roles)
        multi = {name: params.getlist(name) for name in params}  # type: ignore[attr-defined]
        query = self.parser(principal, multi)  # type: ignore[misc]
        return ReadPlan(principal, self.key(cache.keys, query), cache.policy(self.name), self.loader(query))


def _key_params(q: Query) -> str:
    filters = [(n, search_digest(v) if n in _HIDDEN_TERMS else v) for n, v in q.filters]
    days = ",".join(d.isoformat() for d in q.days)
    return f"id={q.id or ''}:{filters}:days={days}:n={q.count}:o={q.offset}"


def _by_id(resource_type: str, wide: bool = False) -> Parser:
    """A read: the id from the path (merged into the parameters as `_id`), nothing else."""

    def parse(principal: Principal, params: Params) -> Query:
        search.refuse_unknown(params, ("_id",))
        ident = search.resource_id(search.single(params, "_id") or "", resource_type, wide)
        return Query(clientId=principal.tenant, id=ident, filters=(("_id", str(ident)),))

    return parse


def _searching(references: Mapping[str, str], terms: tuple[str, ...] = (), extra: tuple[str, ...] = (),
               max_count: int = 200) -> Callable[[Principal, Params], Query]:
    """A search parser: `references` maps a parameter to the resource type it names (its id
    becomes the filter), `terms` are string searches, `extra` parameters the caller's
    `finish` step reads; `_count` (1..max_count) and `_offset` page."""

    def parse(principal: Principal, params: Params) -> Query:
        search.refuse_unknown(params, (*references, *terms, *extra, *_SEARCH_PAGE))
        filters = []
        for name, resource_type in references.items():
            text = search.single(params, name)
            if text is not None:
                filters.append((name, str(search.resource_id(text, resource_type))))
        for name in terms:
            term = search.search_term(params, name)
            if term is not None:
                filters.append((name, term))
        return Query(clientId=principal.tenant, filters=tuple(filters),
                     count=search.whole_number(params, "_count", min(50, max_count), 1, max_count),
                     offset=search.whole_number(params, "_offset", 0, 0, 10_000))

    return parse


def _slot_search(principal: Principal, params: Params) -> Query:
    query = _searching({"schedule": "Schedule", "service-type": "HealthcareService"},
                       extra=("start", "status"), max_count=500)(principal, params)
    status = search.single(params, "status")
    if status not in (None, "free", "busy"):
        raise ApiError(400, "'status' must be free or busy.")
    filters = query.filters + ((("status", status),) if status else ())
    return replace(query, filters=filters, days=search.slot_days(params))


def _slot_scopes(q: Query) -> tuple[str, ...]:
    doctor = q.get("schedule")
    return tuple(scopes.slots_scope(day, int(doctor) if doctor else None) for day in q.days)


def _appointment_search(principal: Principal, params: Params) -> Query:
    query = _searching({"patient": "Patient", "practitioner": "Practitioner"}, extra=("date", "status"))(
        principal, params)
    filters = dict(query.filters)
    date = search.single(params, "date")
    if date is not None:
        prefix, day = search.one_date(date, "date")
        if prefix != "eq":
            raise ApiError(400, "'date' supports one day (date=YYYY-MM-DD).")
        filters["date"] = day.isoformat()
    status = search.single(params, "status")
    if status is not None:
        if status not in search.STATUS_FROM_FHIR:
            raise ApiError(400, f"'status' must be one of {', '.join(search.STATUS_FROM_FHIR)}.")
        filters["status"] = search.STATUS_FROM_FHIR[status]
    return replace(query, filters=_own(principal, filters, "patient"))


def _appointment_read(principal: Principal, params: Params) -> Query:
    query = _by_id("Appointment", wide=True)(principal, params)
    return replace(query, filters=_own(principal, dict(query.filters), "patient"))


def _patient_read(principal: Principal, params: Params) -> Query:
    query = _by_id("Patient")(principal, params)
    if principal.is_patient and query.id != principal.patient_id:
        raise ApiError(403, "A patient may read only their own record.")
    return query


def _patient_search(principal: Principal, params: Params) -> Query:
    query = _searching({}, terms=("identifier", "name"), max_count=100)(principal, params)
    return replace(query, filters=_own(principal, dict(query.filters), "_id"))


def _own(principal: Principal, filters: dict[str, str], name: str) -> tuple[tuple[str, str], ...]:
    """A patient's search or read narrowed to their own records (asking for another's: 403)."""
    if principal.is_patient:
        own = str(principal.patient_id)
        if name != "_id" and filters.get(name, own) != own:
            raise ApiError(403, "A patient may see only their own appointments.")
        filters[name] = own
    return tuple(sorted(filters.items()))


def _appointment_scopes(q: Query) -> tuple[str, ...]:
    date = q.get("date")
    return (scopes.appointments_day_scope(dt.date.fromisoformat(date)),) if date else (scopes.ALL_APPOINTMENTS,)


def _declare(name: str, path: str, freshness: Freshness, parser: Parser, scope: Callable[[Query], tuple[str, ...]],
             invalidated_by: str, load: Callable[[Query, Fill], Optional[str]],
             roles: tuple[str, ...] = ()) -> FhirResource:
    return FhirResource(name=name, path=path, freshness=freshness, query="fhir.search.Query", load=load,
                        params=_key_params, scopes=scope, invalidated_by=invalidated_by, roles=roles,
                        parser=parser)


def _reader(resource_type: str) -> Callable[[Query, Fill], Optional[str]]:
    return lambda q, fill: queries.read(fill, resource_type, q)


def _searcher(resource_type: str) -> Callable[[Query, Fill], Optional[str]]:
    return lambda q, fill: queries.search(fill, resource_type, q)


_CATALOG = Freshness(3600.0, 86400.0)
_BOOKING = Freshness(10.0, 300.0, critical=True)
_PEOPLE = Freshness(30.0, 300.0)
_PATIENT_ROLES = (*STAFF, "patient")


def _catalog(q: Query) -> tuple[str, ...]:
    return (scopes.CATALOG,)


def _patients(q: Query) -> tuple[str, ...]:
    return (scopes.PATIENTS,)


def _all_appointments(q: Query) -> tuple[str, ...]:
    return (scopes.ALL_APPOINTMENTS,)


BASE = "/fhir/R4"
FHIR_RESOURCES: tuple[FhirResource, ...] = (
    _declare("fhir_practitioner", f"{BASE}/Practitioner/{{id}}", _CATALOG, _by_id("Practitioner"), _catalog,
             "seeding", _reader("Practitioner")),
    _declare("fhir_practitioners", f"{BASE}/Practitioner", _CATALOG, _searching({}, terms=("name",)), _catalog,
             "seeding", _searcher("Practitioner")),
    _declare("fhir_service", f"{BASE}/HealthcareService/{{id}}", _CATALOG, _by_id("HealthcareService"), _catalog,
             "seeding", _reader("HealthcareService")),
    _declare("fhir_services", f"{BASE}/HealthcareService", _CATALOG, _searching({}), _catalog,
             "seeding", _searcher("HealthcareService")),
    _declare("fhir_schedule", f"{BASE}/Schedule/{{id}}", _CATALOG, _by_id("Schedule"), _catalog,
             "seeding", _reader("Schedule")),
    _declare("fhir_schedules", f"{BASE}/Schedule", _CATALOG,
             _searching({"actor": "Practitioner", "service-type": "HealthcareService"}), _catalog,
             "seeding", _searcher("Schedule")),
    _declare("fhir_slots", f"{BASE}/Slot", Freshness(15.0, 300.0, critical=True), _slot_search, _slot_scopes,
             "every booking, cancel and reschedule of those days", _searcher("Slot")),
    _declare("fhir_appointment", f"{BASE}/Appointment/{{id}}", _BOOKING, _appointment_read, _all_appointments,
             "every booking, cancel, reschedule and status change of the tenant", _reader("Appointment"),
             roles=_PATIENT_ROLES),
    _declare("fhir_appointments", f"{BASE}/Appointment", _BOOKING, _appointment_search, _appointment_scopes,
             "every booking, cancel, reschedule and status change of the tenant", _searcher("Appointment"),
             roles=_PATIENT_ROLES),
    _declare("fhir_patient", f"{BASE}/Patient/{{id}}", _PEOPLE, _patient_read, _patients, "seeding",
             _reader("Patient"), roles=_PATIENT_ROLES),
    _declare("fhir_patients", f"{BASE}/Patient", _PEOPLE, _patient_search, _patients, "seeding",
             _searcher("Patient"), roles=_PATIENT_ROLES),
)
BY_NAME = {r.name: r for r in FHIR_RESOURCES}
