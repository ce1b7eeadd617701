"""The FHIR routes under /fhir/R4, registered on the app: cached reads through web.cached_read
(the declared FhirResources) with weak ETags, writes through writes.py, the bulk publication
(bulk.py), and an OperationOutcome for every path or method FHIR clients may try that this
server does not support. Every answer is in FHIR's shape."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

from chalice import Chalice, Response

from chalicelib import runtime, web
from chalicelib.chalice_seam import lower_case_headers
from chalicelib.fhir import outcome, versions
from chalicelib.fhir.resources import BASE, BY_NAME, FhirResource
from chalicelib.http import ApiError, parse_json_body
from chalicelib.lazy import lazy_module

if TYPE_CHECKING:
    from chalicelib.fhir import bulk, capability, search, writes
else:
    bulk = lazy_module("chalicelib.fhir.bulk", globals())
    capability = lazy_module("chalicelib.fhir.capability", globals())
    search = lazy_module("chalicelib.fhir.search", globals())
    writes = lazy_module("chalicelib.fhir.writes", globals())

_BODY_TYPES = ("application/fhir+json", "application/json")
_ANY_TYPE = ["*/*"]
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")
_BULK = "$bulk-publish"


def _not_supported(allowed: tuple[str, ...]) -> Callable[..., Response]:
    """405 with Allow, for the methods a supported FHIR path does not take."""

    def refuse(**path: Any) -> Response:
        raise ApiError(405, f"This FHIR path takes {', '.join(allowed)} only.", code="method_not_allowed",
                       headers={"Allow": ", ".join(allowed)})

    return outcome.endpoint(refuse)


def register(app: Chalice) -> None:
    """Add the FHIR routes to `app`."""

    def headers() -> Mapping[str, str]:
        return lower_case_headers(web.request().headers)

    def body() -> dict[str, Any]:
        request = web.request()
        content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        if content_type not in _BODY_TYPES:
            raise ApiError(415, "Send the body as Content-Type: application/fhir+json.",
                           code="unsupported_media_type")
        return parse_json_body(request.raw_body)

    def reader(resource: FhirResource) -> Callable[..., Response]:
        single = "{id}" in resource.path

        def read(**path: Any) -> Response:
            answer = web.cached_read(resource, conditional=False)
            return versions.conditional(answer, headers().get("if-none-match"), single)

        read.__name__ = resource.name
        return outcome.endpoint(read)

    @outcome.endpoint
    def metadata() -> Response:
        return outcome.fhir_response(capability.capability_statement())

    @outcome.endpoint
    def create_appointment() -> Response:
        sent = headers()
        return writes.create(web.principal(sent), body(), sent.get("idempotency-key"), sent.get("if-none-exist"))

    @outcome.endpoint
    def update_appointment(id: str) -> Response:  # noqa: A002 - the route's placeholder
        sent = headers()
        return writes.update(web.principal(sent), id, body(), sent.get("idempotency-key"))

    def bulk_document(file: str, client_id: Optional[str]) -> Response:
        """The manifest or one file of `$bulk-publish` (a token, or a publishing tenant's id)."""
        request = web.request()
        sent = headers()
        caller = web.principal(sent) if "authorization" in sent else None
        tenant = search.resource_id(client_id, "clientId") if client_id is not None else None
        current = runtime.current()
        return bulk.serve(current.cache, current.read_log, caller, tenant, file, _base_url(request, sent),
                          sent.get("if-none-match"))

    def type_level(type: str, **stray: Any) -> Response:  # noqa: A002 - the route's placeholder
        request = web.request()
        if type == _BULK and request.method == "GET":
            params: Mapping[str, str] = request.query_params or {}
            search.refuse_unknown(params, ("clientId",))
            return bulk_document("manifest", params.get("clientId"))
        raise _unknown(type)

    @outcome.endpoint
    def system_level() -> Response:
        raise ApiError(404, "System-wide interactions (search, batch, transaction, history) are not supported;"
                            " see /fhir/R4/metadata.", code="not_supported")

    @outcome.endpoint
    def instance_level(type: str, id: str, **stray: Any) -> Response:  # noqa: A002
        raise _unknown(type)

    def instance_operation(type: str, id: str, operation: str, **stray: Any) -> Response:  # noqa: A002
        request = web.request()
        if type == _BULK and request.method == "GET":
            search.refuse_unknown(request.query_params or {}, ())
            return bulk_document(bulk.parse_file_name(operation), id)
        raise _unknown(type, operation)

    @outcome.endpoint
    def version_level(type: str, id: str, operation: str, version: str, **stray: Any) -> Response:  # noqa: A002
        raise _unknown(type, operation)

    app.route(f"{BASE}/metadata")(metadata)
    _refuse_others(app, f"{BASE}/metadata", ("GET",))
    for resource in BY_NAME.values():
        app.route(resource.path)(reader(resource))
    app.route(f"{BASE}/Appointment", methods=["POST"], content_types=_ANY_TYPE)(create_appointment)
    app.route(f"{BASE}/Appointment/{{id}}", methods=["PUT", "PATCH"], content_types=_ANY_TYPE)(update_appointment)
    for resource in BY_NAME.values():
        taken = ("GET", "PUT", "PATCH") if resource.path == f"{BASE}/Appointment/{{id}}" else \
            ("GET", "POST") if resource.path == f"{BASE}/Appointment" else ("GET",)
        _refuse_others(app, resource.path, taken)
    for path, view in ((BASE, system_level), (f"{BASE}/{{type}}", outcome.endpoint(type_level, own_media_type=True)),
                       (f"{BASE}/{{type}}/{{id}}", instance_level),
                       (f"{BASE}/{{type}}/{{id}}/{{operation}}", outcome.endpoint(instance_operation,
                                                                                  own_media_type=True)),
                       (f"{BASE}/{{type}}/{{id}}/{{operation}}/{{version}}", version_level)):
        app.route(path, methods=list(_METHODS), content_types=_ANY_TYPE)(view)


def _refuse_others(app: Chalice, path: str, taken: tuple[str, ...]) -> None:
    """Answer the other methods of `path` with a 405 OperationOutcome (not the gateway's error)."""
    others = [method for method in _METHODS if method not in taken]
    view = _not_supported(taken)
    view.__name__ = "not_supported_" + re.sub(r"\W", "_", path)
    app.route(path, methods=others, content_types=_ANY_TYPE)(view)


def _unknown(resource_type: str, operation: Optional[str] = None) -> ApiError:
    """404 for a resource type, operation or interaction this server does not support."""
    what = (f"The interaction '{operation[:40]}'" if operation is not None
            else f"The resource type '{resource_type[:40]}'")
    return ApiError(404, f"{what} is not supported by this server; see /fhir/R4/metadata.", code="not_supported")


def _base_url(request: Any, sent: Mapping[str, str]) -> str:
    """The server's address as the client reached it (scheme, host and API stage), for the
    absolute URLs of the bulk manifest."""
    host = sent.get("host", "")
    if not _HOST.match(host):
        raise ApiError(400, "The Host header is missing or malformed.")
    scheme = sent.get("x-forwarded-proto", "http").split(",")[0].strip().lower()
    scheme = scheme if scheme in ("http", "https") else "http"
    seen_path = str(request.context.get("path") or "")
    route_path = str(request.to_original_event().get("path") or "")
    prefix = seen_path[:-len(route_path)] if route_path and seen_path.endswith(route_path) else ""
    return f"{scheme}://{host}{prefix}"
