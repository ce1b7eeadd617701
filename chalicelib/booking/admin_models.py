"""Request models of the schedule-management (admin) routes: names and record numbers
trimmed and bounded, local times as "HH:MM", absences as RFC 3339 date-times."""
from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Optional

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field, model_validator

from chalicelib.booking.models import NO_NUL, BodyModel, Id4, IsoDate

_HH_MM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$")
MAX_BULK_PATIENTS = 1000
MAX_ABSENCE_DAYS = 366


def _trimmed(value: str) -> str:
    """Surrounding white space dropped; something must remain."""
    value = value.strip()
    if not value:
        raise ValueError("must contain at least one character that is not a space")
    return value


def _local_time(value: Any) -> Any:
    if isinstance(value, str):
        if not _HH_MM.match(value):
            raise ValueError('must be a local time as "HH:MM" (00:00 to 23:59)')
        return dt.time.fromisoformat(value)
    raise ValueError('must be a local time as "HH:MM"')


def _instant(value: Any) -> Any:
    """An RFC 3339 date-time with its offset (Z or +hh:mm)."""
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2030-01-31T09:00:00+01:00")
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("is not a real date and time") from None


def _born(value: dt.date) -> dt.date:
    if not dt.date(1900, 1, 1) <= value <= dt.date.today():
        raise ValueError("must lie from 1900-01-01 to today")
    return value


Name = Annotated[str, Field(min_length=1, max_length=200, pattern=NO_NUL), AfterValidator(_trimmed)]
RecordNumber = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[\x20-\x7e]+$"), AfterValidator(_trimmed)]
def _hh_mm_schema(schema: dict[str, Any]) -> None:
    """A local time is documented as the "HH:MM" text it is sent as."""
    schema.pop("format", None)
    schema.update(type="string", pattern=_HH_MM.pattern)


LocalTime = Annotated[dt.time, BeforeValidator(_local_time), Field(json_schema_extra=_hh_mm_schema)]
BirthDate = Annotated[IsoDate, AfterValidator(_born)]
Instant = Annotated[AwareDatetime, BeforeValidator(_instant)]
Reason = Annotated[str, Field(max_length=500, pattern=NO_NUL)]


class DepartmentBody(BodyModel):
    clientId: Id4
    name: Name


class DepartmentChange(BodyModel):
    clientId: Id4
    name: Optional[Name] = None
    active: Optional[bool] = None


class DoctorBody(BodyModel):
    clientId: Id4
    name: Name
    departmentId: Id4
    specialty: Annotated[str, Field(max_length=200, pattern=NO_NUL), AfterValidator(str.strip)] = ""


class DoctorChange(BodyModel):
    clientId: Id4
    name: Optional[Name] = None
    departmentId: Optional[Id4] = None
    specialty: Optional[Annotated[str, Field(max_length=200, pattern=NO_NUL), AfterValidator(str.strip)]] = None
    active: Optional[bool] = None


class WorkingPeriod(BodyModel):
    weekday: Annotated[int, Field(ge=1, le=7)]
    start: LocalTime
    end: LocalTime
    slotMinutes: Annotated[int, Field(ge=5, le=240)]

    @model_validator(mode="after")
    def _whole_slots(self) -> "WorkingPeriod":
        if self.end <= self.start:
            raise ValueError("end must be after start")
        minutes = (self.end.hour * 60 + self.end.minute) - (self.start.hour * 60 + self.start.minute)
        if minutes % self.slotMinutes:
            raise ValueError(f"slotMinutes ({self.slotMinutes}) must divide the period ({minutes} minutes)")
        return self


class WorkingHoursBody(BodyModel):
    clientId: Id4
    hours: Annotated[list[WorkingPeriod], Field(max_length=70)]
    cancelAppointments: bool = False


class AbsenceBody(BodyModel):
    clientId: Id4
    from_: Instant = Field(alias="from")
    to: Instant
    reason: Optional[Reason] = None
    cancelAppointments: bool = False

    @model_validator(mode="after")
    def _future_range(self) -> "AbsenceBody":
        if self.to <= self.from_:
            raise ValueError("'to' must be after 'from'")
        if self.from_ < dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1):
            raise ValueError("'from' must not be in the past")
        if self.to - self.from_ > dt.timedelta(days=MAX_ABSENCE_DAYS):
            raise ValueError(f"an absence may last at most {MAX_ABSENCE_DAYS} days")
        return self


class PatientBody(BodyModel):
    clientId: Id4
    name: Name
    birthDate: BirthDate
    recordNumber: RecordNumber


class PatientFields(BodyModel):
    """One patient of an upsert by record number (the number is in the path)."""

    clientId: Id4
    name: Name
    birthDate: BirthDate


class BulkPatient(BodyModel):
    name: Name
    birthDate: BirthDate
    recordNumber: RecordNumber


class BulkPatientsBody(BodyModel):
    clientId: Id4
    patients: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=MAX_BULK_PATIENTS)]


BookingLink = Annotated[str, Field(max_length=500, pattern=r"^https://[\x21-\x7e]+$")]
BookingPhone = Annotated[str, Field(min_length=3, max_length=40, pattern=r"^\+?[0-9][0-9 ()./-]*[0-9]$")]


class SlotPublicationBody(BodyModel):
    """Whether the tenant's free slots are published (SMART Scheduling Links), and what each
    published Slot offers: a booking link (`{slot}` is replaced by the slot's id) and a
    phone number."""

    clientId: Id4
    public: bool
    bookingLink: Optional[BookingLink] = None
    bookingPhone: Optional[BookingPhone] = None
