"""Slot publication (SMART Scheduling Links): a tenant's choice to publish its free slots
as public bulk files, with the booking link and phone number each published Slot carries.
One write, inside the caller's transaction; it changes what the bulk files show, so it
invalidates the catalog scope they depend on."""
from __future__ import annotations

from typing import Any

import orjson

from chalicelib.booking import scopes
from chalicelib.booking.admin_models import SlotPublicationBody
from chalicelib.booking.errors import NotFound
from chalicelib.booking.outcome import Touched, WriteResult
from chalicelib.db import connection as db


def publication(row: list[Any]) -> dict[str, Any]:
    """A tenant row's publication settings as the API shows them."""
    return {"clientId": row[0], "public": row[1], "bookingLink": row[2], "bookingPhone": row[3]}


def set_publication(conn: db.Transaction, body: SlotPublicationBody) -> WriteResult:
    """PUT /api/admin/slot-publication: replace the tenant's publication settings."""
    rows = conn.run("""UPDATE tenant SET publish_slots = :public, booking_link = :link, booking_phone = :phone
                       WHERE id = :t RETURNING id, publish_slots, booking_link, booking_phone""",
                    t=body.clientId, public=body.public, link=body.bookingLink, phone=body.bookingPhone)
    if not rows:
        raise NotFound("No hospital with this clientId exists.")
    answer = {"publication": publication(rows[0])}
    return WriteResult(200, orjson.dumps(answer).decode(), Touched(body.clientId, (), (), (scopes.CATALOG,)))
