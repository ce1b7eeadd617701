"""JSON bodies, the API's error shape (also for the booking domain's errors), and the
cache headers of API.md."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import orjson
from chalice import Response

from chalicelib.booking import errors

if TYPE_CHECKING:
    from chalicelib.booking.outcome import WriteResult

JSON_HEADERS = {"Content-Type": "application/json"}

_STATUS_CODES = {
    400: "validation_error",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    503: "unavailable",
}


class ApiError(Exception):
    """An error answered as `{"error": {"code", "message", "details"?}}` with a status."""

    def __init__(self, status: int, message: str, code: str | None = None,
                 details: Sequence[Any] | None = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _STATUS_CODES.get(status, "error")
        self.message = message
        self.details = list(details) if details else None
        self.headers = dict(headers or {})

    def to_response(self) -> Response:
        """The error as a Chalice response."""
        return error_response(self.status, self.code, self.message, self.details, self.headers)


def error_response(status: int, code: str, message: str, details: Sequence[Any] | None = None,
                   headers: Mapping[str, str] | None = None) -> Response:
    """A JSON error body in the shape API.md prescribes."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = list(details)
    return Response(body=orjson.dumps({"error": error}).decode(), status_code=status,
                    headers={**JSON_HEADERS, **(headers or {})})


# The booking domain's errors -> the status the JSON API (and through it FHIR) answers.
_DOMAIN_STATUS: dict[type[errors.BookingError], int] = {
    errors.InvalidRequest: 400,
    errors.NotAllowed: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.KeyReused: 422,
    errors.TooManyKeys: 429,
}


def domain_error_response(exc: errors.BookingError) -> Response:
    """A refusal of the booking domain in the API's error shape."""
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, errors.TooManyKeys) else None
    return error_response(domain_status(exc), exc.code, exc.message, exc.details, headers)


def domain_status(exc: errors.BookingError) -> int:
    """The HTTP status a refusal of the booking domain answers."""
    return _DOMAIN_STATUS[type(exc)]


def write_response(result: WriteResult) -> Response:
    """A committed (or refused-as-answer, e.g. 409 slot_taken) write with its status and body."""
    return json_response(result.body, status=result.status)


def json_response(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """Serialize `payload` (or pass a ready JSON str through) as a JSON response."""
    body = payload if isinstance(payload, str) else orjson.dumps(payload).decode()
    return Response(body=body, status_code=status, headers={**JSON_HEADERS, **(headers or {})})


def parse_json_body(raw: bytes | str | None, max_bytes: int = 16 * 1024) -> dict[str, Any]:
    """Decode a request body that must be one JSON object of at most `max_bytes`."""
    if not raw:
        raise ApiError(400, "The request body must be a JSON object.")
    if len(raw) > max_bytes:
        raise ApiError(413, f"The request body is larger than {max_bytes} bytes.")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, "The request body is not valid JSON.") from None
    if not isinstance(value, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return value
