"""What the booking domain refuses, in its own terms.

The domain raises these and knows nothing of the interfaces that call it; each interface
maps them at its boundary (the JSON API's error shape in chalicelib/http.py, FHIR's
OperationOutcome through it). `code` is the machine-readable reason the interfaces
answer with (API.md's error codes), `details` the offending parts when there are several.
"""
from __future__ import annotations

from typing import Any, ClassVar, Optional, Sequence


class BookingError(Exception):
    """A request the domain refuses; nothing was changed."""

    default_code: ClassVar[str] = "error"

    def __init__(self, message: str, code: Optional[str] = None, details: Sequence[Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = list(details) if details else None


class InvalidRequest(BookingError):
    """A body, path or query that breaks the domain's rules (a bad field, an overlap, ...)."""

    default_code = "validation_error"


class NotAllowed(BookingError):
    """The caller may not do this (a patient acting for someone else, ...)."""

    default_code = "forbidden"


class NotFound(BookingError):
    """The named appointment, slot, patient, doctor, ... does not exist in this tenant."""

    default_code = "not_found"


class Conflict(BookingError):
    """The current state forbids it (a slot taken, an appointment already cancelled, ...)."""

    default_code = "conflict"


class KeyReused(BookingError):
    """An Idempotency-Key already used for a different request."""

    default_code = "idempotency_key_reused"


class TooManyKeys(BookingError):
    """The caller holds as many live Idempotency-Keys as allowed; retry after `retry_after_s`."""

    default_code = "too_many_idempotency_keys"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
