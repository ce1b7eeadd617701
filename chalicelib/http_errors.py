"""The HTTP layer's own errors in the API's error shape.

Unknown paths, wrong methods, malformed requests, over-long lines and headers: whichever
layer answers (Chalice's router, the local server, API Gateway's gateway responses), the
body is `{"error": {"code", "message"}}` with a fixed message per status. A message never
quotes the request (its line, path, method or any header): what the caller sent is not
echoed back, so a token in an Authorization header cannot end up in a body or a cache.
"""
from __future__ import annotations

import orjson

# status -> (code, message). Codes the routes themselves use (validation_error, forbidden, ...)
# keep their meaning; these are for requests that never reached a route.
HTTP_ERRORS: dict[int, tuple[str, str]] = {
    400: ("bad_request", "The request is not a well-formed HTTP request."),
    401: ("unauthorized", "Send a valid token: Authorization: Bearer <token>."),
    403: ("forbidden", "This request is not allowed."),
    404: ("not_found", "No such path. The routes are listed in /api/openapi.json."),
    405: ("method_not_allowed", "This path does not answer this method; the Allow header lists those it does."),
    408: ("request_timeout", "The request took too long to arrive."),
    409: ("conflict", "The request conflicts with the current state."),
    411: ("length_required", "Send the body with a Content-Length header."),
    413: ("payload_too_large", "The request body is too large."),
    414: ("uri_too_long", "The request line is too long."),
    415: ("unsupported_media_type", "Send the body as Content-Type: application/json."),
    422: ("unprocessable_entity", "The request could not be processed."),
    429: ("too_many_requests", "Too many requests; retry shortly."),
    431: ("headers_too_large", "The request headers are too large or too many."),
    500: ("internal_error", "Something went wrong on our side; it has been logged."),
    501: ("not_implemented", "This server does not implement this method."),
    502: ("bad_gateway", "The service behind the gateway gave no valid answer; retry shortly."),
    503: ("unavailable", "The service is unavailable; retry shortly."),
    504: ("gateway_timeout", "The service did not answer in time; retry shortly."),
    505: ("http_version_not_supported", "Use HTTP/1.1 (or HTTP/1.0)."),
}

_FALLBACK_4XX = ("bad_request", "The request was refused.")
_FALLBACK_5XX = HTTP_ERRORS[500]

def describe(status: int) -> tuple[str, str]:
    """The (code, message) answered for an HTTP-layer error of this status."""
    known = HTTP_ERRORS.get(status)
    if known is not None:
        return known
    return _FALLBACK_5XX if status >= 500 else _FALLBACK_4XX


def error_document(status: int) -> str:
    """The JSON error body for `status`, as text."""
    code, message = describe(status)
    return orjson.dumps({"error": {"code": code, "message": message}}).decode()


def error_bytes(status: int) -> bytes:
    """The JSON error body for `status`, as UTF-8 bytes."""
    return error_document(status).encode()

