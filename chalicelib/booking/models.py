"""Request models: what each route accepts. The OpenAPI document is built from these too."""
from __future__ import annotations

import base64
import datetime as dt
import re
from typing import Annotated, Any, Literal, Optional

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from chalicelib.http import ApiError

INT4_MAX = 2_147_483_647
INT8_MAX = 9_223_372_036_854_775_807
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CURSOR_RE = re.compile(r"^[A-Za-z0-9_-]{1,120}$")
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


Id4 = Annotated[int, Field(ge=1, le=INT4_MAX)]
Id8 = Annotated[int, Field(ge=1, le=INT8_MAX)]
IsoDate = Annotated[dt.date, BeforeValidator(_iso_date), Field(json_schema_extra={"format": "date"})]
Status = Literal["booked", "checked_in", "completed", "cancelled", "no_show"]


class Cursor(BaseModel):
    """Keyset position in an appointment list: after (startsAt, id)."""

    starts_at: dt.datetime
    id: int

    def encode(self) -> str:
        """The opaque cursor string handed to clients."""
        raw = f"{self.starts_at.isoformat()}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> "Cursor":
        """Parse a cursor string; ValueError when it was not made by `encode`."""
        if not _CURSOR_RE.match(text):
            raise ValueError("is not a cursor returned by this API")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            starts, _, ident = raw.partition("|")
            stamp = dt.datetime.fromisoformat(starts)
            number = int(ident)
        except (ValueError, UnicodeDecodeError):
            raise ValueError("is not a cursor returned by this API") from None
        if stamp.tzinfo is None or not 1 <= number <= INT8_MAX:
            raise ValueError("is not a cursor returned by this API")
        return cls(starts_at=stamp, id=number)


def _cursor(value: Optional[str]) -> Optional[str]:
    if value is not None:
        Cursor.decode(value)
    return value


class QueryModel(BaseModel):
    """Query-string parameters: unknown names are refused, numbers arrive as text."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class TenantQuery(QueryModel):
    clientId: Id4


class DoctorsQuery(TenantQuery):
    departmentId: Optional[Id4] = None


class PatientsQuery(TenantQuery):
    q: Annotated[str, Field(min_length=1, max_length=100, pattern=NO_NUL)]
    limit: Annotated[int, Field(ge=1, le=100)] = 20


class SlotsQuery(TenantQuery):
    date: IsoDate
    departmentId: Optional[Id4] = None
    doctorId: Optional[Id4] = None


class AppointmentListQuery(TenantQuery):
    date: Optional[IsoDate] = None
    from_: Optional[IsoDate] = Field(default=None, alias="from")
    to: Optional[IsoDate] = None
    status: Optional[Status] = None
    departmentId: Optional[Id4] = None
    doctorId: Optional[Id4] = None
    patientId: Optional[Id4] = None
    limit: Annotated[int, Field(ge=1, le=200)] = 50
    cursor: Annotated[Optional[str], AfterValidator(_cursor)] = None

    def check_range(self) -> None:
        """400 when the date filters contradict each other or span too long."""
        if self.date is not None and (self.from_ is not None or self.to is not None):
            raise ApiError(400, "Use either date or from/to, not both.")
        if self.from_ and self.to:
            if self.to < self.from_:
                raise ApiError(400, "'to' must not be before 'from'.")
            if (self.to - self.from_).days > MAX_RANGE_DAYS:
                raise ApiError(400, f"A date range may span at most {MAX_RANGE_DAYS} days.")


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
        raise ApiError(400, f"Invalid parameter '{first['field']}': {message}.", details=details) from None
