"""Invalidation scopes of the booking domain: which version keys a cached read depends on
and which a write bumps (docs/caching.md, "The promise after a write")."""
from __future__ import annotations

import datetime as dt
from typing import Iterable, Optional

CATALOG = "catalog"
PATIENTS = "patients"
DASHBOARD = "dash"
ALL_APPOINTMENTS = "appts"


def slots_scope(day: dt.date, doctor_id: Optional[int] = None) -> str:
    """Free slots of one local day (of one doctor, when given)."""
    return f"slots:{day.isoformat()}" + (f":d{doctor_id}" if doctor_id is not None else "")


def appointments_day_scope(day: dt.date) -> str:
    """Appointment lists of one local day."""
    return f"appts:{day.isoformat()}"


def scopes_touched(slot_days: Iterable[tuple[int, dt.date]], list_days: Iterable[dt.date],
                   whole: Iterable[str] = ()) -> tuple[str, ...]:
    """Everything a write can change: the `whole` scopes it names (catalog, patients); the
    free slots of each (doctor, day) and of its whole day; the appointment lists of each
    listed day and every list of the tenant (date ranges, no date). Each scope once, in a
    stable order."""
    scopes: list[str] = list(whole)
    for doctor_id, day in slot_days:
        scopes += (slots_scope(day), slots_scope(day, doctor_id))
    days = [appointments_day_scope(day) for day in list_days]
    if days:
        scopes += (*days, ALL_APPOINTMENTS)
    return tuple(dict.fromkeys(scopes))
