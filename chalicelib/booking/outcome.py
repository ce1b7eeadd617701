"""What a write command answers and what it touched; PostgreSQL's constraint violations
that decide a booking race, as the 409 answers they mean."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Optional

import orjson
from pg8000.exceptions import DatabaseError

from chalicelib.db.connection import sqlstate


@dataclass(frozen=True)
class Touched:
    """What a committed write changed, for invalidation: the tenant, the (doctor, local day)
    pairs whose free slots changed, the local days whose appointment lists changed and any
    whole scopes (the catalog, patients) it changed."""

    tenant: int
    slot_days: tuple[tuple[int, dt.date], ...]
    list_days: tuple[dt.date, ...]
    whole: tuple[str, ...] = ()

    @classmethod
    def slots(cls, tenant: int, *pairs: tuple[int, dt.date]) -> "Touched":
        """A write that took or freed slots of these (doctor, day) pairs (and so changed
        the appointment lists of their days)."""
        return cls(tenant, tuple(dict.fromkeys(pairs)), tuple(dict.fromkeys(day for _, day in pairs)))

    @classmethod
    def lists(cls, tenant: int, day: dt.date) -> "Touched":
        """A write that changed an appointment of `day` without freeing or taking a slot."""
        return cls(tenant, (), (day,))


@dataclass(frozen=True)
class WriteResult:
    """A command's answer (status and JSON body), what it touched (None if nothing) and the
    commit position of the write (see db.connection.Committed; None when unknown). The
    position is stamped once the write committed, by `committed_at`, and only so."""

    status: int
    body: str
    touched: Optional[Touched]
    position: Optional[int] = field(default=None, kw_only=True)

    def committed_at(self, position: Optional[int]) -> "WriteResult":
        """This result, of a write that committed at `position` (built directly, naming every
        field: dataclasses.replace walks the fields at run time, +6.8% of a booking
        transaction's instructions)."""
        return WriteResult(self.status, self.body, self.touched, position=position)


def error_body(code: str, message: str) -> str:
    """The API's error shape as JSON text."""
    return orjson.dumps({"error": {"code": code, "message": message}}).decode()


# Constraint (or unique index) name -> the 409 its violation answers.
_CONFLICTS = {
    "appointment_one_live_per_slot": ("slot_taken", "This slot is already booked."),
    "appointment_no_doctor_overlap": ("slot_taken", "The doctor already has an appointment at this time."),
    "appointment_no_patient_overlap": ("patient_busy", "The patient already has an appointment at this time."),
}
_VIOLATIONS = {"23505", "23P01"}  # unique_violation, exclusion_violation


def conflict(exc: DatabaseError) -> Optional[WriteResult]:
    """The 409 answer of a violation of one live appointment per slot, per doctor or per
    patient at any instant; None for every other error (which the caller re-raises)."""
    if sqlstate(exc) not in _VIOLATIONS or not isinstance(exc.args[0], dict):
        return None
    known = _CONFLICTS.get(exc.args[0].get("n", ""))
    return WriteResult(409, error_body(*known), None) if known is not None else None
