"""SMART Scheduling Links 1.0 (`GET /fhir/R4/$bulk-publish`): a tenant's manifest and its
Location, Schedule and Slot files as NDJSON, served through the cache like every read.

Who may read: a token of the tenant (any role but the operator's), or anyone who names a
tenant that publishes (`?clientId=` on the manifest; the files carry it in their path),
as appointment finders fetch without credentials. A tenant that does not publish answers
an anonymous caller 404, as if it did not exist. Publishing is the tenant admin's choice
(PUT /api/admin/slot-publication), which also sets the booking link and phone of each Slot.

Freshness: each file depends on the catalog scope (doctors, departments, the publication
settings) and the Slot file on every slot day of the horizon too, so a booking, a cancel
or a schedule change regenerates it on its next read; a copy is fresh for a minute at
most (slots pass into the past). `transactionTime` is when the manifest was built; the
files it names are at least as new.
"""
from __future__ import annotations

import datetime as dt
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Sequence

import orjson
from chalice import Response

from chalicelib.audit.read_log import ReadLog
from chalicelib.auth import OPERATOR, Principal
from chalicelib.booking import scopes
from chalicelib.booking.reads import ReadPlan
from chalicelib.booking.resources import CachedResource
from chalicelib.cache.policies import Freshness
from chalicelib.cache.tickets import Fill
from chalicelib.cached_answers import read
from chalicelib.fhir import versions
from chalicelib.http import ApiError
from chalicelib.lazy import lazy_module
from chalicelib.settings import get_settings

if TYPE_CHECKING:
    from chalicelib.booking import read_source as source
    from chalicelib.cache.tiered import TieredCache
else:
    source = lazy_module("chalicelib.booking.read_source", globals())

OPERATION = "$bulk-publish"
FILE_TYPES = ("Location", "Schedule", "Slot")
NDJSON = "application/fhir+ndjson"
EXTENSION_BASE = "http://fhir-registry.smarthealthit.org/StructureDefinition/"
_PUBLIC_CALLER = "public"  # the sub and issuer of a caller without a token (a plan needs a principal)


@dataclass(frozen=True)
class BulkQuery:
    """One bulk document of a tenant: `file` is "manifest" or a FILE_TYPES name; `public`
    when asked without a token (only a publishing tenant answers); `first_day` starts the
    slot days the Slot file covers (UTC yesterday: every zone's today is on or after it)."""

    clientId: int
    file: str
    public: bool
    first_day: dt.date

    def slot_days(self) -> tuple[dt.date, ...]:
        """Every local day a published slot can fall on (the horizon and a day each side)."""
        days = get_settings().slot_horizon_days + 3
        return tuple(self.first_day + dt.timedelta(days=n) for n in range(days))


def _params(q: BulkQuery) -> str:
    return f"{q.file}:public={int(q.public)}:from={q.first_day.isoformat()}"


def _scopes(q: BulkQuery) -> tuple[str, ...]:
    if q.file != "Slot":
        return (scopes.CATALOG,)
    return (scopes.CATALOG, *(scopes.slots_scope(day) for day in q.slot_days()))


def _load(q: BulkQuery, fill: Fill) -> Optional[str]:
    """The document (None: no such tenant, or an anonymous caller and it does not publish)."""
    found = source.run(fill, "SELECT name, publish_slots, booking_link, booking_phone FROM tenant WHERE id = :t",
                       t=q.clientId)
    if not found or (q.public and not found[0][1]):
        return None
    name, _, link, phone = found[0]
    if q.file == "manifest":
        return _manifest(q.clientId)
    if q.file == "Location":
        return _location(q.clientId, name, phone)
    if q.file == "Schedule":
        return _lines(source.run(fill, _SCHEDULES, t=q.clientId))
    return _lines(source.run(fill, _SLOTS, t=q.clientId, last=q.slot_days()[-1]), link, phone)


BULK = CachedResource(
    name="fhir_bulk", path=f"/fhir/R4/{OPERATION}", freshness=Freshness(60.0, 300.0, critical=True),
    query="fhir.bulk.BulkQuery", load=_load, params=_params, scopes=_scopes,
    invalidated_by="every admin change of the catalog or the publication; the Slot file also every booking,"
                   " cancel, reschedule and slot regeneration of the horizon")

_SERVICE_TYPE = """json_build_array(json_build_object('coding', json_build_array(json_build_object(
    'system', 'urn:hospital-booking:department', 'code', dep.id::text)), 'text', dep.name))"""
_SCHEDULES = f"""SELECT json_build_object('resourceType', 'Schedule', 'id', d.id::text,
        'actor', json_build_array(json_build_object('reference', 'Location/' || d.tenant_id),
                                  json_build_object('reference', 'Practitioner/' || d.id, 'display', d.name)),
        'serviceType', {_SERVICE_TYPE})::text
    FROM doctor d JOIN department dep ON dep.tenant_id = d.tenant_id AND dep.id = d.department_id
    WHERE d.tenant_id = :t AND d.active ORDER BY d.id"""
_SLOTS = """SELECT json_build_object('resourceType', 'Slot', 'id', s.id::text,
        'schedule', json_build_object('reference', 'Schedule/' || s.doctor_id),
        'status', CASE WHEN EXISTS (SELECT 1 FROM appointment a WHERE a.tenant_id = s.tenant_id
                                    AND a.slot_id = s.id AND a.status <> 'cancelled') THEN 'busy' ELSE 'free' END,
        'start', s.starts_at, 'end', s.ends_at)::text
    FROM slot s JOIN doctor d ON d.tenant_id = s.tenant_id AND d.id = s.doctor_id
    WHERE s.tenant_id = :t AND d.active AND s.withdrawn_at IS NULL AND s.starts_at > now()
      AND s.day <= CAST(:last AS date)
    ORDER BY s.starts_at, s.id"""


def _manifest(tenant: int) -> str:
    """The manifest with paths relative to the server (made absolute per request)."""
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    return orjson.dumps({
        "transactionTime": now, "request": f"/fhir/R4/{OPERATION}?clientId={tenant}",
        "output": [{"type": kind, "url": file_path(tenant, kind)} for kind in FILE_TYPES], "error": [],
    }).decode()


def _location(tenant: int, name: str, phone: Optional[str]) -> str:
    location: dict[str, Any] = {"resourceType": "Location", "id": str(tenant), "name": name}
    if phone:
        location["telecom"] = [{"system": "phone", "value": phone}]
    return orjson.dumps(versions.stamp(location)).decode() + "\n"


def _booking_extensions(slot_id: str, link: Optional[str], phone: Optional[str]) -> list[dict[str, str]]:
    """The booking extensions of one published Slot (`{slot}` in the link is its id)."""
    found = []
    if link:
        found.append({"url": EXTENSION_BASE + "booking-deep-link", "valueUrl": link.replace("{slot}", slot_id)})
    if phone:
        found.append({"url": EXTENSION_BASE + "booking-phone", "valueString": phone})
    return found


def _lines(rows: Sequence[Sequence[str]], link: Optional[str] = None, phone: Optional[str] = None) -> str:
    """NDJSON of stamped resources, one per row; a Slot gets the booking extensions."""
    out = []
    for (text,) in rows:
        resource = orjson.loads(text)
        extensions = _booking_extensions(resource["id"], link, phone) if resource["resourceType"] == "Slot" else []
        if extensions:
            resource["extension"] = extensions
        out.append(orjson.dumps(versions.stamp(resource)).decode() + "\n")
    return "".join(out)


def file_path(tenant: int, kind: str) -> str:
    """Where one of a tenant's files is served."""
    return f"/fhir/R4/{OPERATION}/{tenant}/{kind}.ndjson"


def _caller(principal: Optional[Principal], client_id: Optional[int]) -> tuple[int, bool, Principal]:
    """The tenant asked for, whether the caller is anonymous, and the principal of its plan."""
    if principal is not None:
        if principal.role == OPERATOR:
            raise ApiError(403, "The operator role reads no tenant's data.")
        if client_id is not None and client_id != principal.tenant:
            raise ApiError(403, "This token belongs to another tenant.")
        return principal.tenant, False, principal
    if client_id is None:
        raise ApiError(401, "Send a bearer token, or name a publishing hospital with ?clientId=.")
    anonymous = Principal(sub=_PUBLIC_CALLER, tenant=client_id, role=_PUBLIC_CALLER, patient_id=None,
                          expires_at=math.inf, issuer=_PUBLIC_CALLER)
    return client_id, True, anonymous


def serve(cache: TieredCache, audit: ReadLog, principal: Optional[Principal], client_id: Optional[int],
          file: str, base_url: str, if_none_match: Optional[str]) -> Response:
    """The manifest (`file` "manifest", its URLs under `base_url`) or one NDJSON file
    (read through `cache`; `audit` takes the read events of plans that have one)."""
    tenant, public, caller = _caller(principal, client_id)
    today = dt.datetime.fromtimestamp(time.time(), dt.timezone.utc).date()
    query = BulkQuery(clientId=tenant, file=file, public=public, first_day=today - dt.timedelta(days=1))
    plan = ReadPlan(caller, BULK.key(cache.keys, query), cache.policy(BULK.name), BULK.loader(query))
    answer = versions.conditional(read(cache, plan, None, audit), if_none_match, single=False)
    if answer.status_code != 200:
        return answer
    headers = dict(answer.headers or {})
    if file == "manifest":
        headers["Content-Type"] = "application/json"
        return Response(body=_absolute(answer.body, base_url), status_code=200, headers=headers)
    headers["Content-Type"] = NDJSON
    return Response(body=answer.body, status_code=200, headers=headers)


def _absolute(manifest: str, base_url: str) -> str:
    """The manifest with its URLs under `base_url` (the Bulk Data format wants absolute URLs)."""
    document: dict[str, Any] = orjson.loads(manifest)
    document["request"] = base_url + document["request"]
    for output in document["output"]:
        output["url"] = base_url + output["url"]
    return orjson.dumps(document).decode()


def parse_file_name(name: str) -> str:
    """`Slot.ndjson` -> "Slot"; 404 for any other name."""
    kind, dot, extension = name.partition(".")
    if kind not in FILE_TYPES or extension != "ndjson" or not dot:
        raise ApiError(404, f"No bulk file '{name[:60]}'; the files are {', '.join(FILE_TYPES)}.ndjson.")
    return kind

