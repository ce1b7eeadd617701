"""The cached value: a response body (str) plus its metadata envelope."""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Optional, Sequence

import orjson

Versions = tuple[tuple[str, str], ...]


def decode_versions(names: Sequence[str], raw: Sequence[Optional[bytes]]) -> Versions:
    """(name, value) pairs from the values Redis returned for `names` ("" where missing)."""
    return tuple((name, value.decode() if value else "") for name, value in zip(names, raw))


@dataclass(frozen=True, slots=True)
class Entry:
    """A serialized body and when it was made, how long it is fresh and usable as stale,
    the version values it was built under, and its ETag. Times are epoch seconds."""

    body: str
    etag: str
    created: float
    fresh_until: float
    stale_until: float
    versions: Versions
    size: int

    @classmethod
    def build(cls, body: str, versions: Versions, fresh_s: float, stale_s: float,
              now: Optional[float] = None) -> "Entry":
        """A new entry for a body just loaded."""
        now = time.time() if now is None else now
        etag = '"' + hashlib.blake2b(body.encode(), digest_size=10).hexdigest() + '"'
        return cls(body, etag, now, now + fresh_s, now + fresh_s + stale_s, versions, len(body) + 200)

    def encode(self) -> bytes:
        """Bytes for Redis: a one-line JSON header, a newline, then the body."""
        header = orjson.dumps([self.etag, self.created, self.fresh_until, self.stale_until,
                               [list(v) for v in self.versions]])
        return header + b"\n" + self.body.encode()

    @classmethod
    def decode(cls, raw: bytes) -> Optional["Entry"]:
        """The entry stored by `encode`, or None when the bytes are not one."""
        header, sep, body = raw.partition(b"\n")
        if not sep:
            return None
        try:
            etag, created, fresh_until, stale_until, versions = orjson.loads(header)
            # orjson gives str for the strings `encode` wrote; anything else compares unequal
            # to real versions, so such an entry is never served.
            pairs = tuple(map(tuple, versions))
            text = body.decode()
        except (orjson.JSONDecodeError, ValueError, TypeError, UnicodeDecodeError):
            return None
        return cls(text, etag, created, fresh_until, stale_until, pairs, len(text) + 200)

    def fresh_under(self, versions: Optional[Versions], now: float) -> bool:
        """Servable as is: built under exactly `versions` and still fresh at `now`."""
        return self.versions == versions and now < self.fresh_until

    def max_age(self, now: float) -> int:
        """Whole seconds of freshness left, for Cache-Control."""
        return max(0, int(self.fresh_until - now))
