"""Signed keyset cursors for appointment lists.

A cursor names a position after (startsAt, id) in one tenant's list. The client gets it
opaque and signed (HMAC-SHA256 with a key derived from AUTH_SECRET), so a forged or altered
cursor, or one of another tenant, is refused before anything is parsed as a number or a
time: `read` raises ValueError, which the request model turns into a 400.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
from typing import NamedTuple

_SHAPE = re.compile(r"^[A-Za-z0-9_-]{4,60}\.[A-Za-z0-9_-]{22}$")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MAC_BYTES = 16
INT8_MAX = 9_223_372_036_854_775_807


class Position(NamedTuple):
    """Where the next page starts: after this (starts_at, id)."""

    starts_at: dt.datetime
    id: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, tenant: int, payload: bytes) -> bytes:
    key = hashlib.sha256(b"hospital-booking/cursor/v1\0" + secret.encode()).digest()
    return hmac.new(key, str(tenant).encode() + b"|" + payload, hashlib.sha256).digest()[:_MAC_BYTES]


def sign(secret: str, tenant: int, position: Position) -> str:
    """The opaque cursor string for `position` in `tenant`'s list."""
    micros = (position.starts_at - _EPOCH) // dt.timedelta(microseconds=1)
    payload = f"{micros}|{position.id}".encode()
    return f"{_b64(payload)}.{_b64(_mac(secret, tenant, payload))}"


def read(secret: str, tenant: int, text: str) -> Position:
    """The position a cursor made by `sign` for this tenant names; ValueError otherwise."""
    refused = ValueError("is not a cursor returned by this API")
    if not _SHAPE.match(text):
        raise refused
    encoded_payload, encoded_mac = text.split(".")
    try:
        payload, mac = _unb64(encoded_payload), _unb64(encoded_mac)
    except ValueError:
        raise refused from None
    if _b64(payload) != encoded_payload or _b64(mac) != encoded_mac:
        raise refused  # only the canonical spelling: a last character's unused bits are not ignored
    if not hmac.compare_digest(mac, _mac(secret, tenant, payload)):
        raise refused
    micros, _, ident = payload.decode("ascii", "replace").partition("|")
    try:
        position = Position(_EPOCH + dt.timedelta(microseconds=int(micros)), int(ident))
    except (ValueError, OverflowError):
        raise refused from None
    if not 1 <= position.id <= INT8_MAX:
        raise refused
    return position
