"""The FHIR routes under /fhir/R4, registered on the app: cached reads through web.cached_read
(the declared FhirResources), writes through writes.py, every answer in FHIR's shape."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from chalice import Chalice, Response

from chalicelib import web
from chalicelib.fhir import outcome
from chalicelib.fhir.resources import BASE, BY_NAME, FhirResource
from chalicelib.http import ApiError, parse_json_body
from chalicelib.lazy import lazy_module

if TYPE_CHECKING:
    from chalicelib.fhir import capability, writes
else:
    capability = lazy_module("chalicelib.fhir.capability", globals())
    writes = lazy_module("chalicelib.fhir.writes", globals())

_BODY_TYPES = ("application/fhir+json", "application/json")
_ANY_TYPE = ["*/*"]


def _reader(resource: FhirResource) -> Callable[..., Response]:
    def read(**path: Any) -> Response:
        return web.cached_read(resource)

    read.__name__ = resource.name
    return outcome.endpoint(read)


def register(app: Chalice) -> None:
    """Add the FHIR routes to `app`."""

    def body() -> dict[str, Any]:
        request = app.current_request
        content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        if content_type not in _BODY_TYPES:
            raise ApiError(415, "Send the body as Content-Type: application/fhir+json.",
                           code="unsupported_media_type")
        return parse_json_body(request.raw_body)

    @outcome.endpoint
    def metadata() -> Response:
        return outcome.fhir_response(capability.capability_statement())

    @outcome.endpoint
    def create_appointment() -> Response:
        headers = app.current_request.headers
        return writes.create(web.principal(headers), body(), headers.get("idempotency-key"),
                             headers.get("if-none-exist"))

    @outcome.endpoint
    def update_appointment(id: str) -> Response:  # noqa: A002 - the route's placeholder
        headers = app.current_request.headers
        return writes.update(web.principal(headers), id, body(), headers.get("idempotency-key"))

    app.route(f"{BASE}/metadata")(metadata)
    for resource in BY_NAME.values():
        app.route(resource.path)(_reader(resource))
    app.route(f"{BASE}/Appointment", methods=["POST"], content_types=_ANY_TYPE)(create_appointment)
    app.route(f"{BASE}/Appointment/{{id}}", methods=["PUT", "PATCH"], content_types=_ANY_TYPE)(update_appointment)
