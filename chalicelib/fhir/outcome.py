"""FHIR answers: `application/fhir+json`, and every error as an OperationOutcome with the
native rule's status (the native error shape is translated, so the rules stay in one place)."""
from __future__ import annotations

import functools
from typing import Any, Callable

import orjson
from chalice import Response

from chalicelib import web

FHIR_JSON = "application/fhir+json"

# HTTP status -> OperationOutcome.issue.code (http://hl7.org/fhir/issue-type)
_ISSUE_TYPES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
                409: "conflict", 413: "too-costly", 415: "not-supported", 422: "business-rule",
                503: "transient"}


def operation_outcome(status: int, code: str, message: str) -> dict[str, Any]:
    """One error issue; the native error code travels as `details.text`."""
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": _ISSUE_TYPES.get(status, "exception"),
                       "details": {"text": code}, "diagnostics": message}]}


def _as_fhir(response: Response, own_media_type: bool = False) -> Response:
    """The same answer in FHIR's media type (unless `own_media_type`: a success keeps the
    one it has); a native error body becomes an OperationOutcome."""
    headers = dict(response.headers or {})
    if "Content-Type" in headers and not own_media_type:
        headers["Content-Type"] = FHIR_JSON
    body = response.body
    if response.status_code >= 400:
        error = orjson.loads(body).get("error", {}) if body else {}
        outcome = operation_outcome(response.status_code, error.get("code", "error"), error.get("message", ""))
        body = orjson.dumps(outcome).decode()
        headers["Content-Type"] = FHIR_JSON
    return Response(body=body, status_code=response.status_code, headers=headers)


def endpoint(handler: Callable[..., Response], own_media_type: bool = False) -> Callable[..., Response]:
    """A FHIR route: the native error boundary (web.endpoint), answered in FHIR's shape
    (`own_media_type`: its successes set their own Content-Type, as the bulk files do)."""
    native = web.endpoint(handler)

    @functools.wraps(handler)
    def wrapped(*args: Any, **kwargs: Any) -> Response:
        return _as_fhir(native(*args, **kwargs), own_media_type)

    return wrapped


def fhir_response(document: Any, status: int = 200) -> Response:
    """A FHIR JSON body (a dict, or JSON text PostgreSQL built)."""
    body = document if isinstance(document, str) else orjson.dumps(document).decode()
    return Response(body=body, status_code=status, headers={"Content-Type": FHIR_JSON})
