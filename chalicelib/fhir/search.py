"""FHIR search parameters: each search accepts exactly the parameters it declares (anything
else is a 400, never silently ignored) and becomes a frozen query carrying the token's tenant."""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Optional, Sequence

from chalicelib.http import ApiError
from chalicelib.lazy import lazy_module

if TYPE_CHECKING:
    from chalicelib.booking import models
else:
    models = lazy_module("chalicelib.booking.models", globals())

Params = Mapping[str, Sequence[str]]
MAX_SLOT_DAYS = 7
_ID_RE = re.compile(r"^[1-9][0-9]{0,18}\Z")
_DATE_RE = re.compile(r"^(ge|lt|eq)?(\d{4}-\d{2}-\d{2})\Z")
# FHIR Appointment.status -> our appointment status
STATUS_FROM_FHIR = {"booked": "booked", "arrived": "checked_in", "fulfilled": "completed",
                    "cancelled": "cancelled", "noshow": "no_show"}


@dataclass(frozen=True)
class Query:
    """A FHIR read or search of one tenant. `id` is a read's id; `filters` the search's
    (name, value) pairs in a canonical order; `count`/`offset` the page."""

    clientId: int
    id: Optional[int] = None
    filters: tuple[tuple[str, str], ...] = ()
    count: int = 50
    offset: int = 0
    days: tuple[dt.date, ...] = ()

    def get(self, name: str) -> Optional[str]:
        """The value of one filter, or None."""
        return dict(self.filters).get(name)


def refuse_unknown(params: Params, allowed: Sequence[str]) -> None:
    """400 naming the first parameter this search does not support."""
    for name in params:
        if name not in allowed:
            raise ApiError(400, f"The search parameter '{name}' is not supported here;"
                                f" supported: {', '.join(allowed) or 'none'}.")


def single(params: Params, name: str) -> Optional[str]:
    """The one value of a parameter (400 when repeated or empty)."""
    values = params.get(name) or []
    if len(values) > 1:
        raise ApiError(400, f"The search parameter '{name}' may be given once.")
    if values and not values[0]:
        raise ApiError(400, f"The search parameter '{name}' is empty.")
    return values[0] if values else None


def resource_id(text: str, what: str, wide: bool = False) -> int:
    """A positive id (64-bit when `wide`, else 32-bit), bare or as `Type/id` of the expected
    type; 400 otherwise."""
    if text.startswith(what + "/"):
        text = text[len(what) + 1:]
    if not _ID_RE.match(text) or int(text) > (models.INT8_MAX if wide else models.INT4_MAX):
        raise ApiError(400, f"'{text[:40]}' is not a {what} id or reference.")
    return int(text)


def whole_number(params: Params, name: str, default: int, low: int, high: int) -> int:
    text = single(params, name)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or len(text) > 6 or not low <= int(text) <= high:
        raise ApiError(400, f"'{name}' must be a whole number from {low} to {high}.")
    return int(text)


def search_term(params: Params, name: str) -> Optional[str]:
    """A normalized string search term (at most 100 characters, no NUL)."""
    text = single(params, name)
    if text is None:
        return None
    term = models.normalize_search(text)
    if not term or len(term) > 100 or "\x00" in term:
        raise ApiError(400, f"'{name}' must be 1 to 100 characters.")
    return term


def one_date(text: str, name: str) -> tuple[str, dt.date]:
    """A date parameter: (prefix, date); FHIR's eq is the default prefix."""
    match = _DATE_RE.match(text)
    if match is None:
        raise ApiError(400, f"'{name}' must be a date YYYY-MM-DD, optionally prefixed ge, lt or eq.")
    try:
        return match.group(1) or "eq", dt.date.fromisoformat(match.group(2))
    except ValueError:
        raise ApiError(400, f"'{name}' is not a real calendar date.") from None


def slot_days(params: Params) -> tuple[dt.date, ...]:
    """The local days of a Slot search: `start=geD` (required) and `start=ltD` (default D+1),
    at most MAX_SLOT_DAYS days."""
    bounds = dict(one_date(text, "start") for text in params.get("start") or [])
    if len(bounds) != len(params.get("start") or []) or set(bounds) - {"ge", "lt"} or "ge" not in bounds:
        raise ApiError(400, "Give 'start' as start=geYYYY-MM-DD and optionally start=ltYYYY-MM-DD.")
    first = bounds["ge"]
    end = bounds.get("lt", first + dt.timedelta(days=1))
    span = (end - first).days
    if not 1 <= span <= MAX_SLOT_DAYS:
        raise ApiError(400, f"'start' must span 1 to {MAX_SLOT_DAYS} days.")
    return tuple(first + dt.timedelta(days=n) for n in range(span))
