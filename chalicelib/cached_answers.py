"""How a cached read is answered over HTTP: a ReadPlan (chalicelib/booking/reads.py) served
through the cache, with the headers of API.md (ETag, Cache-Control, Vary, 304, and for
staff X-Cache and Server-Timing)."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Optional

from chalice import Response

from chalicelib.audit.read_log import ReadLog
from chalicelib.booking.errors import NotFound
from chalicelib.booking.reads import ReadPlan

if TYPE_CHECKING:
    from chalicelib.cache.tiered import CacheResult, TieredCache

_NO_TENANT = "No hospital with this clientId exists."


def _server_timing(result: CacheResult) -> str:
    """Which tier answered and how long it took (and the database's share, and which
    server answered while a read replica is configured)."""
    timing = f'cache;desc="{result.source}";dur={result.elapsed_s * 1000:.3f}'
    if result.db_s:
        timing += f", db;dur={result.db_s * 1000:.3f}"
        if result.read_from:
            timing += f', dbsrc;desc="{result.read_from}"'
    return timing


def cached_response(result: CacheResult, if_none_match: Optional[str], diagnostics: bool) -> Response:
    """200 with the cached body, or 304 when the client's ETag matches; API.md headers.
    `diagnostics` (staff, admin and operator callers) adds X-Cache and Server-Timing: a
    patient is not told what other users read a moment ago."""
    entry = result.entry
    max_age = int(entry.fresh_until - time.time())
    headers: dict[str, str | list[str]] = {
        "Content-Type": "application/json", "ETag": entry.etag, "Vary": "Authorization",
        "Cache-Control": f"private, max-age={max_age if max_age > 0 else 0}"}
    if diagnostics:
        headers["X-Cache"] = result.source
        headers["Server-Timing"] = _server_timing(result)
    if if_none_match and entry.etag in (t.strip() for t in if_none_match.split(",")):
        del headers["Content-Type"]
        return Response(body="", status_code=304, headers=headers)
    return Response(body=entry.body, status_code=200, headers=headers)


def read(current: TieredCache, plan: ReadPlan, if_none_match: Optional[str], audit: ReadLog) -> Response:
    """Serve a plan through the cache (404 when the loader finds no such tenant); buffer
    its audit event, if it has one, in `audit`."""
    result = current.get_or_load(plan.key, plan.loader, plan.policy)
    if result is None:
        raise NotFound(_NO_TENANT)
    if plan.audit is not None:
        audit.record(plan.audit)
    return cached_response(result, if_none_match, plan.diagnostics)
