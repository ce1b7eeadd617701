"""Request plumbing shared by every route: the error boundary, per-request cache set-up,
health, cache statistics, and the OpenAPI document."""
from __future__ import annotations

import functools
import logging
from typing import Any, Callable

from chalice import Response

from chalicelib.auth import Principal, principal_from_headers, require_role
from chalicelib.db import connection as db
from chalicelib.db.connection import DatabaseUnavailable
from chalicelib.http import ApiError, error_response, json_response
from chalicelib.settings import get_settings

log = logging.getLogger(__name__)


def endpoint(handler: Callable[..., Response]) -> Callable[..., Response]:
    """Wrap a route: apply queued cache invalidations first, and turn every failure into
    the API's JSON error shape (never a traceback)."""

    @functools.wraps(handler)
    def wrapped(*args: Any, **kwargs: Any) -> Response:
        try:
            _service().cache().begin_request()
            return handler(*args, **kwargs)
        except ApiError as exc:
            return exc.to_response()
        except DatabaseUnavailable:
            return error_response(503, "unavailable", "The database is unavailable; nothing was changed. Retry shortly.",
                                  headers={"Retry-After": "5"})
        except Exception:  # noqa: BLE001 - the boundary: log the type, answer generically
            log.exception("unhandled error in %s", handler.__name__)
            return error_response(500, "internal_error", "Something went wrong on our side; it has been logged.")

    return wrapped


def _service() -> Any:
    """The booking service module (imported on first use: it imports the cache)."""
    from chalicelib.booking import service

    return service


def principal(headers: Any) -> Principal:
    """The verified caller of the current request."""
    return principal_from_headers(headers, get_settings().auth_secret)


def health() -> Response:
    """GET /api/health: database and Redis reachability."""
    from chalicelib.booking.service import cache

    try:
        db.scalar("SELECT 1")
        db_state = "ok"
    except DatabaseUnavailable:
        db_state = "down"
    current = cache()
    if current.l2 is None:
        redis_state = "disabled"
    else:
        redis_state = "ok" if current.l2.ping() else "down"
    status = "ok" if db_state == "ok" and redis_state != "down" else "degraded"
    return json_response({"status": status, "db": db_state, "redis": redis_state},
                         status=200 if db_state == "ok" else 503)


def cache_stats(caller: Principal) -> Response:
    """GET /api/cache/stats (admin): this container's cache statistics."""
    require_role(caller, "admin")
    from chalicelib.cache.report import stats_document

    return json_response(stats_document())
