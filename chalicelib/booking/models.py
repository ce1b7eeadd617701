"""Request models: what each route accepts. The OpenAPI document is built from these too."""
from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal, Optional

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from chalicelib.booking import cursor as page_cursor
from chalicelib.booking.errors import InvalidRequest
from chalicelib.settings import get_settings

INT4_MAX = 2_147_483_647
INT8_MAX = 9_223_372_036_854_775_807
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INSTANT_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$")
_PATH_ID_RE = re.compile(r"^[1-9][0-9]{0,18}$")
_DIGITS_RE = re.compile(r"^[0-9]{1,19}\Z")
_SPACES = re.compile(r"\s+")
MAX_RANGE_DAYS = 366
NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL (would be a 500)


def _iso_date(value: Any) -> Any:
    if isinstance(value, str):
        if not _DATE_RE.match(value):
            raise ValueError("must be a date as YYYY-MM-DD")
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError("is not a real calendar date") from None
    return value


def _instant(value: Any) -> Any:
    """An RFC 3339 date-time with its offset (no bare numbers, no local times), in UTC."""
    if isinstance(value, str):
        if not _INSTANT_RE.match(value):
            raise ValueError("must be an RFC 3339 date-time with an offset, such as 2026-01-31T09:00:00Z")
        try:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.timezone.utc)
        except (ValueError, OverflowError):
            raise ValueError("is not a real date-time") from None
    return value


def _digits(value: Any) -> Any:
    """A number sent as text must be plain ASCII digits: no sign, no `1_0`, no spaces or
    line ends around it (pydantic's own parsing accepts all of those)."""
    if isinstance(value, str) and not _DIGITS_RE.match(value):
        raise ValueError("must be a whole number written in digits")
    return value


def _within(earliest_days: int, latest_days: int, what: str) -> Any:
    """A check that a date lies from `earliest_days` before to `latest_days` after today (UTC;
    a tenant's local day is at most a day away from it, which the bounds leave room for)."""

    def check(value: dt.date) -> dt.date:
        today = dt.datetime.now(dt.timezone.utc).date()
        earliest, latest = today - dt.timedelta(days=earliest_days), today + dt.timedelta(days=latest_days)
        if not earliest <= value <= latest:
            raise ValueError(f"must be {what}: from {earliest.isoformat()} to {latest.isoformat()}")
        return value

    return check


def _slot_day(value: dt.date) -> dt.date:
    """A slot listing's day: from yesterday to the slot horizon (the days slots exist for)."""
    horizon = get_settings().slot_horizon_days
    return _within(1, horizon + 1, f"within the slot horizon ({horizon} days ahead)")(value)


Id4 = Annotated[int, BeforeValidator(_digits), Field(ge=1, le=INT4_MAX)]
Id8 = Annotated[int, BeforeValidator(_digits), Field(ge=1, le=INT8_MAX)]
IsoDate = Annotated[dt.date, BeforeValidator(_iso_date), Field(json_schema_extra={"format": "date"})]
# Appointment lists look back ten years and ahead one (docs/security.md, "Bounded state").
LIST_DAYS_BACK, LIST_DAYS_AHEAD = 3660, 366
ListDate = Annotated[IsoDate, AfterValidator(_within(LIST_DAYS_BACK, LIST_DAYS_AHEAD,
                                                     "within ten years back and one year ahead"))]
SlotDate = Annotated[IsoDate, AfterValidator(_slot_day)]
Instant = Annotated[dt.datetime, BeforeValidator(_instant), Field(json_schema_extra={"format": "date-time"})]
Status = Literal["booked", "checked_in", "completed", "cancelled", "no_show"]


def normalize_search(text: str) -> str:
    """A patient search term as both the cache key and the query use it: surrounding space
    dropped, inner runs of space made one, lower case (names and record numbers match
    without regard to case, lower-cased as PostgreSQL's lower() does for these names)."""
    return _SPACES.sub(" ", text).strip().lower()


def _search_term(value: str) -> str:
    term = normalize_search(value)
    if not term:
        raise ValueError("must contain at least one character that is not a space")
    return term


def parse_path_id(text: str, what: str = "appointment id") -> int:
    """A positive 64-bit id from a URL path segment; 400 for anything else (checked by
    shape first, so a 5,000-digit number is refused without being converted)."""
    if not _PATH_ID_RE.match(text) or int(text) > INT8_MAX:
        raise InvalidRequest(f"The {what} in the path must be a positive integer.")
    return int(text)


class QueryModel(BaseModel):
    """Query-string parameters: unknown names are refused, numbers arrive as text."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class TenantQuery(QueryModel):
    clientId: Id4


class DoctorsQuery(TenantQuery):
    departmentId: Optional[Id4] = None


class PatientsQuery(TenantQuery):
    q: Annotated[str, Field(min_length=1, max_length=100, pattern=NO_NUL), AfterValidator(_search_term)]
    limit: Annotated[int, BeforeValidator(_digits), Field(ge=1, le=100)] = 20


class SlotsQuery(TenantQuery):
    date: SlotDate
    departmentId: Optional[Id4] = None
    doctorId: Optional[Id4] = None


class PagedQuery(TenantQuery):
    """A tenant's list read a page at a time, each page after a signed cursor's position."""

    limit: Annotated[int, BeforeValidator(_digits), Field(ge=1, le=200)] = 50
    cursor: Annotated[Optional[str], Field(max_length=100)] = None

    @model_validator(mode="after")
    def _signed_cursor(self) -> "PagedQuery":
        if self.cursor is not None:
            self.position()
        return self

    def position(self) -> Optional[page_cursor.Position]:
        """Where the page starts, from the signed cursor (None: the first page)."""
        if self.cursor is None:
            return None
        return page_cursor.read(get_settings().auth_secret, self.clientId, self.cursor)


class AppointmentListQuery(PagedQuery):
    date: Optional[ListDate] = None
    from_: Optional[ListDate] = Field(default=None, alias="from")
    to: Optional[ListDate] = None
    status: Optional[Status] = None
    departmentId: Optional[Id4] = None
    doctorId: Optional[Id4] = None
    patientId: Optional[Id4] = None

    def check_range(self) -> None:
        """400 when the date filters contradict each other or span too long."""
        if self.date is not None and (self.from_ is not None or self.to is not None):
            raise InvalidRequest("Use either date or from/to, not both.")
        if self.from_ and self.to:
            if self.to < self.from_:
                raise InvalidRequest("'to' must not be before 'from'.")
            if (self.to - self.from_).days > MAX_RANGE_DAYS:
                raise InvalidRequest(f"A date range may span at most {MAX_RANGE_DAYS} days.")


AuditAction = Literal["book", "cancel", "reschedule", "status", "patient_search", "patient_read",
                      # the schedule-management writes (chalicelib/booking/admin_service.py)
                      "department.create", "department.change", "doctor.create", "doctor.change", "doctor.hours",
                      "absence.add", "absence.remove", "patient.create", "patient.upsert", "patient.bulk",
                      "publication.set"]


class AuditQuery(PagedQuery):
    """GET /api/audit: events of the tenant newest first; `from` inclusive, `to` exclusive."""

    appointmentId: Optional[Id8] = None
    patientId: Optional[Id4] = None
    actor: Optional[Annotated[str, Field(min_length=1, max_length=200, pattern=NO_NUL)]] = None
    action: Optional[AuditAction] = None
    from_: Optional[Instant] = Field(default=None, alias="from")
    to: Optional[Instant] = None

    def check_range(self) -> None:
        """400 when `to` is before `from`."""
        if self.from_ is not None and self.to is not None and self.to < self.from_:
            raise InvalidRequest("'to' must not be before 'from'.")


class BodyModel(BaseModel):
    """JSON bodies: strict types (no "5" for 5), unknown fields refused."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class BookingBody(BodyModel):
    clientId: Id4
    slotId: Id8
    patientId: Id4
    reason: Optional[Annotated[str, Field(max_length=500, pattern=NO_NUL)]] = None


class CancelBody(BodyModel):
    clientId: Id4
    reason: Optional[Annotated[str, Field(max_length=500, pattern=NO_NUL)]] = None


class RescheduleBody(BodyModel):
    clientId: Id4
    slotId: Id8
    reason: Optional[Annotated[str, Field(max_length=500, pattern=NO_NUL)]] = None


class StatusBody(BodyModel):
    clientId: Id4
    status: Status


def _details(exc: ValidationError) -> list[dict[str, str]]:
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(p) for p in err.get("loc", ())) or "body"
        message = str(err.get("msg", "is invalid"))
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        out.append({"field": "from" if field == "from_" else field, "message": message})
    return out


def parse(model: type[BaseModel], data: Any) -> Any:
    """Validate `data` against `model`; any defect becomes a 400 with per-field details."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = _details(exc)
        first = details[0] if details else {"field": "request", "message": "is invalid"}
        message = first["message"].rstrip(".")
        if message == "Field required":
            message = "is required"
        raise InvalidRequest(f"Invalid parameter '{first['field']}': {message}.", details=details) from None
