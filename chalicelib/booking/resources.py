"""Every cached read, declared once: its route, lifetimes, query, who may read it, its key,
its loader, the scopes that invalidate it and what the pre-warm job loads ahead.

Settings take the lifetimes (and accept overrides by name), the routes their paths and
planners, the pre-warm job `hot_reads`, docs/caching.md its table (`freshness_table`; a
test keeps the two equal). Keys are built in one place (`CachedResource.key`), so a
pre-warmed entry has the byte-identical body and version keys a route looks up.

The declarations are read when app.py is imported, so they name query models by attribute
of `chalicelib.booking.models` and reach `.queries` inside their loaders: both are imported
on the first read (pydantic and the database driver are not needed to import the app).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Optional

import orjson

from chalicelib.audit.actor import Actor
from chalicelib.audit.read_log import ReadEvent
from chalicelib.auth import STAFF, Principal, require_role, require_tenant
from chalicelib.booking import scopes
from chalicelib.booking.errors import NotAllowed
from chalicelib.booking.reads import ReadPlan
from chalicelib.cache.keys import CacheKey, KeySpace
from chalicelib.cache.policies import Freshness
from chalicelib.cache.tickets import Fill
from chalicelib.lazy import lazy_module
from chalicelib.settings import get_settings

if TYPE_CHECKING:
    from chalicelib.booking import models, queries
    from chalicelib.booking.models import AppointmentListQuery
    from chalicelib.cache.tiered import Loader, TieredCache
else:
    models = lazy_module("chalicelib.booking.models", globals())
    queries = lazy_module("chalicelib.booking.queries", globals())

Query = Any  # a validated query model of chalicelib.booking.models (all carry clientId)


def _nothing_hot(tenant: int, today: dt.date) -> tuple[()]:
    """Not pre-warmed."""
    return ()


def _not_audited(principal: Principal, query: Query) -> None:
    """Reads that hold no patient data."""


@dataclass(frozen=True)
class CachedResource:
    """One cached GET route. `query` names its query model in chalicelib.booking.models,
    `load` reads the answer from PostgreSQL for a fill (None means no such tenant);
    `params` gives the key's canonical parameters, `scopes` the invalidation scopes the
    answer depends on, `narrow` checks and restricts a query for its caller, `hot` the
    queries pre-warmed for a tenant's local day, `audited` the event a caller's read of a
    query records in the audit trail (None: not recorded)."""

    name: str
    path: str
    freshness: Freshness
    query: str
    load: Callable[[Query, Fill], Optional[str]]
    params: Callable[[Query], str]
    scopes: Callable[[Query], tuple[str, ...]]
    invalidated_by: str
    roles: tuple[str, ...] = ()
    narrow: Optional[Callable[[Principal, Query], Query]] = None
    hot: Callable[[int, dt.date], tuple[Query, ...]] = _nothing_hot
    audited: Callable[[Principal, Query], Optional[ReadEvent]] = _not_audited

    def key(self, keys: KeySpace, query: Query) -> CacheKey:
        """The cache key of this resource for a validated query."""
        return keys.key(query.clientId, self.name, self.params(query), self.scopes(query))

    def loader(self, query: Query) -> Loader:
        """The loader of one query (what a miss runs)."""
        return partial(self.load, query)

    def plan(self, cache: TieredCache, principal: Principal, params: Mapping[str, str]) -> ReadPlan:
        """Validate the query, check the caller's tenant and role, narrow it for the caller:
        the plan of this read through `cache`."""
        query = models.parse(getattr(models, self.query), dict(params))
        require_tenant(principal, query.clientId)
        if self.roles:
            require_role(principal, *self.roles)
        if self.narrow is not None:
            query = self.narrow(principal, query)
        return ReadPlan(principal, self.key(cache.keys, query), cache.policy(self.name), self.loader(query),
                        self.audited(principal, query))


def _own_list(principal: Principal, q: AppointmentListQuery) -> AppointmentListQuery:
    """A sane date range; a patient sees only their own appointments."""
    q.check_range()
    if not principal.is_patient:
        return q
    if q.patientId is not None and q.patientId != principal.patient_id:
        raise NotAllowed("A patient may list only their own appointments.")
    return q.model_copy(update={"patientId": principal.patient_id})


def _list_params(q: AppointmentListQuery) -> str:
    return ":".join(f"{k}={v}" for k, v in sorted(q.model_dump(exclude_none=True).items()))


def _list_scopes(q: AppointmentListQuery) -> tuple[str, ...]:
    return (scopes.appointments_day_scope(q.date),) if q.date is not None else (scopes.ALL_APPOINTMENTS,)


def _the_tenant(tenant: int, today: dt.date) -> tuple[Query, ...]:
    return (models.TenantQuery(clientId=tenant),)


def _all_doctors(tenant: int, today: dt.date) -> tuple[Query, ...]:
    return (models.DoctorsQuery(clientId=tenant),)


def _today_and_tomorrow(tenant: int, today: dt.date) -> tuple[Query, ...]:
    return tuple(models.SlotsQuery(clientId=tenant, date=day) for day in (today, today + dt.timedelta(days=1)))


@lru_cache(maxsize=4)
def _key_name_secret(auth_secret: str) -> bytes:
    """The key of the search-term digests, derived from the server's secret (never the
    secret itself, so a digest can't be used to test guesses of it)."""
    return hmac.new(auth_secret.encode(), b"cache key names", hashlib.sha256).digest()


def search_digest(term: str) -> str:
    """A keyed hash of a normalized patient search term: what a cache key carries instead
    of a name or a record number (key names reach SCAN, MONITOR and the slowlog)."""
    secret = _key_name_secret(get_settings().auth_secret)
    return hmac.new(secret, models.normalize_search(term).encode(), hashlib.sha256).hexdigest()[:32]


def _search_params(q: Query) -> str:
    return f"q={search_digest(q.q)}:n={q.limit}"


def _read_event(principal: Principal, action: str, patient_id: Optional[int], details: dict[str, Any]) -> ReadEvent:
    """The audit event of a plan's reads (the request id is added per read)."""
    return ReadEvent(Actor.of(principal), action, patient_id, orjson.dumps(details).decode())


def _patient_search_event(principal: Principal, q: Query) -> ReadEvent:
    """Every patient search (staff and admin only): the term's digest, never the term."""
    return _read_event(principal, "patient_search", None, {"termDigest": search_digest(q.q), "limit": q.limit})


def _patient_read_event(principal: Principal, q: AppointmentListQuery) -> Optional[ReadEvent]:
    """A staff or admin list of one patient's appointments (a patient's own list is not recorded)."""
    if q.patientId is None or principal.is_patient:
        return None
    filters = q.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"clientId", "patientId", "cursor"})
    return _read_event(principal, "patient_read", q.patientId, {"resource": "appointments", "filters": filters})


DASHBOARD = CachedResource(
    name="dashboard", path="/api/dashboard/stats", freshness=Freshness(30.0, 600.0),
    query="TenantQuery", load=lambda q, fill: queries.dashboard(fill, q.clientId), roles=STAFF,
    params=lambda q: "stats", scopes=lambda q: (scopes.DASHBOARD,),
    invalidated_by="each view refresh (every minute)", hot=_the_tenant)

APPOINTMENTS = CachedResource(
    name="appointments", path="/api/appointments/list", freshness=Freshness(10.0, 300.0, critical=True),
    query="AppointmentListQuery", load=lambda q, fill: queries.appointment_list(fill, q), narrow=_own_list,
    params=_list_params, scopes=_list_scopes, audited=_patient_read_event,
    invalidated_by="every booking, cancel, reschedule and status change of the tenant")

DEPARTMENTS = CachedResource(
    name="departments", path="/api/departments", freshness=Freshness(3600.0, 86400.0),
    query="TenantQuery", load=lambda q, fill: queries.departments(fill, q.clientId),
    params=lambda q: "all", scopes=lambda q: (scopes.CATALOG,),
    invalidated_by="every admin change of departments, doctors, working hours or absences (catalog version)",
    hot=_the_tenant)

DOCTORS = CachedResource(
    name="doctors", path="/api/doctors", freshness=Freshness(3600.0, 86400.0),
    query="DoctorsQuery", load=lambda q, fill: queries.doctors(fill, q),
    params=lambda q: f"dep={q.departmentId or ''}", scopes=lambda q: (scopes.CATALOG,),
    invalidated_by="every admin change of departments, doctors, working hours or absences (catalog version)",
    hot=_all_doctors)

SLOTS = CachedResource(
    name="slots", path="/api/slots/available", freshness=Freshness(15.0, 300.0, critical=True),
    query="SlotsQuery", load=lambda q, fill: queries.free_slots(fill, q),
    params=lambda q: f"{q.date}:dep={q.departmentId or ''}:doc={q.doctorId or ''}",
    scopes=lambda q: (scopes.slots_scope(q.date, q.doctorId),),
    invalidated_by="every booking, cancel and reschedule of that day; every slot regeneration (working hours,"
                   " absences, a doctor's department or active flag) of that day", hot=_today_and_tomorrow)

PATIENTS = CachedResource(
    name="patients", path="/api/patients", freshness=Freshness(30.0, 300.0),
    query="PatientsQuery", load=lambda q, fill: queries.patients(fill, q), roles=STAFF,
    params=_search_params, scopes=lambda q: (scopes.PATIENTS,), audited=_patient_search_event,
    invalidated_by="every admin write of patients (create, upsert by record number, bulk import)")

RESOURCES: tuple[CachedResource, ...] = (DASHBOARD, APPOINTMENTS, DEPARTMENTS, DOCTORS, SLOTS, PATIENTS)


def hot_reads(keys: KeySpace, tenant: int, today: dt.date) -> Iterator[tuple[CacheKey, Loader]]:
    """The pre-warmed (key, loader) pairs of one tenant, built exactly as the routes build them."""
    for resource in RESOURCES:
        for query in resource.hot(tenant, today):
            yield resource.key(keys, query), resource.loader(query)


def _seconds(value: float) -> str:
    for unit, size in (("day", 86400), ("h", 3600)):
        if value >= size and value % size == 0:
            return f"{int(value // size)} {unit}"
    return f"{value:g} s"


def freshness_table() -> str:
    """The Markdown table of docs/caching.md's "Freshness" section."""
    lines = ["| route | resource | fresh | stale copy kept (fail-safe) | booking-critical | invalidated by |",
             "|---|---|---|---|---|---|"]
    for r in RESOURCES:
        lines.append(f"| `{r.path}` | {r.name} | {_seconds(r.freshness.fresh_s)} | {_seconds(r.freshness.stale_s)} "
                     f"| {'yes' if r.freshness.critical else 'no'} | {r.invalidated_by} |")
    return "\n".join(lines)
