"""Test helpers for schedule management: working hours for every weekday and the free
slots of one doctor and day, read from the database."""
from __future__ import annotations

import datetime as dt
from typing import Any

from tests.data_finders import RunsSql


def every_day(start: str, end: str, slot_minutes: int) -> list[dict[str, Any]]:
    """The same working period on all seven weekdays (so any day the test picks has slots)."""
    return [{"weekday": wd, "start": start, "end": end, "slotMinutes": slot_minutes} for wd in range(1, 8)]


def free_slots_of(sql: RunsSql, doctor: int, day: dt.date) -> list[int]:
    """Ids of the doctor's offered slots of `day` without a live appointment, in start order."""
    return [r[0] for r in sql(
        """SELECT s.id FROM slot s WHERE s.doctor_id = :d AND s.day = :day AND s.withdrawn_at IS NULL
             AND NOT EXISTS (SELECT 1 FROM appointment a WHERE a.tenant_id = s.tenant_id AND a.slot_id = s.id
                             AND a.status <> 'cancelled')
           ORDER BY s.starts_at""", d=doctor, day=day)]
