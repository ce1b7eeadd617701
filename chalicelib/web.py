"""Request plumbing shared by every route: the error boundary, per-request cache set-up,
the cached-read path through the runtime's plan memo, health and cache statistics."""
from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any, Callable, Optional

from chalice import Chalice, Response
from chalice.app import Request

from chalicelib import runtime
from chalicelib.auth import OPERATOR, Principal, principal_from_headers, require_role
from chalicelib.booking.errors import BookingError
from chalicelib.booking.resources import CachedResource
from chalicelib.cache.errors import CacheUnavailable
from chalicelib.cached_answers import read
from chalicelib.chalice_seam import lower_case_headers
from chalicelib.db.errors import DatabaseUnavailable, PoolExhausted, WriteOutcomeUnknown
from chalicelib.http import ApiError, domain_error_response, error_response, json_response
from chalicelib.lazy import lazy_module
from chalicelib.misconfigured import misconfigured_response
from chalicelib.observability import error_fields, request_scope
from chalicelib.settings import SettingsError, get_settings

# Imported by the first request that needs them, not by a cold start (docs/performance.md).
if TYPE_CHECKING:
    from chalicelib.audit.read_log import ReadLog
    from chalicelib.booking import outbox_watch
    from chalicelib.db import connection as db
else:
    db = lazy_module("chalicelib.db.connection", globals())
    outbox_watch = lazy_module("chalicelib.booking.outbox_watch", globals())

log = logging.getLogger(__name__)


_app: Optional[Chalice] = None


def bind(app: Chalice) -> None:
    """Tell the wrappers which app's current request and Lambda context to read."""
    global _app
    _app = app


def request() -> Request:
    """The request being served (a route runs only inside one)."""
    current = _app.current_request if _app is not None else None
    if current is None:
        raise RuntimeError("no request is being served (web.bind, then call from a route)")
    return current


def endpoint(handler: Callable[..., Response]) -> Callable[..., Response]:
    """Wrap a route: log under the invocation's request id, refuse to serve with refused
    settings (every route, health included) and turn every failure into the API's JSON
    error shape (never a traceback). Buffered read audit events are written when due at
    the start and at the end of every request."""

    @functools.wraps(handler)
    def wrapped(*args: Any, **kwargs: Any) -> Response:
        request_scope.enter(_app.lambda_context if _app is not None else None)
        audit: Optional[ReadLog] = None
        try:
            audit = runtime.current().read_log  # built on first use: refused settings raise here
            audit.flush_if_due()
            return handler(*args, **kwargs)
        except ApiError as exc:
            return exc.to_response()
        except BookingError as exc:
            return domain_error_response(exc)
        except SettingsError as exc:
            return misconfigured_response(exc)
        except CacheUnavailable as exc:
            return error_response(503, "unavailable", str(exc), headers={"Retry-After": str(exc.retry_after_s)})
        except PoolExhausted:
            return error_response(503, "unavailable", "Every database connection is busy; nothing was changed."
                                  " Retry shortly.", headers={"Retry-After": "1"})
        except WriteOutcomeUnknown:
            return error_response(503, "unavailable", "The database connection broke while this change was being"
                                  " written, so it may or may not have been saved. Check before repeating it, or"
                                  " repeat it with the same Idempotency-Key.", headers={"Retry-After": "5"})
        except DatabaseUnavailable:
            return error_response(503, "unavailable", "The database is unavailable; nothing was changed."
                                  " Retry shortly.", headers={"Retry-After": "5"})
        except Exception as exc:  # noqa: BLE001 - the boundary: log the type, answer generically
            log.error("unhandled %s in %s", type(exc).__name__, handler.__name__, extra=error_fields(exc))
            return error_response(500, "internal_error", "Something went wrong on our side; it has been logged.")
        finally:
            if audit is not None:
                audit.flush_if_due()
            request_scope.exit()

    return wrapped


def principal(headers: Any) -> Principal:
    """The verified caller of the current request."""
    settings = get_settings()
    return principal_from_headers(headers, settings)




def cached_read(resource: CachedResource, conditional: bool = True) -> Response:
    """A cached GET route: apply queued invalidations (for a booking-critical resource, the
    outbox's too, rate-limited), then serve the current request's plan through the cache
    (`conditional`: answer 304 to a matching If-None-Match; else the caller does)."""
    current = request()
    container = runtime.current()
    cache = container.cache
    cache.begin_request()
    if resource.freshness.critical:
        outbox_watch.watch.look(cache)
    headers = lower_case_headers(current.headers)
    plan = container.plans.get(resource, current, headers, cache, container.settings)
    return read(cache, plan, headers.get("if-none-match") if conditional else None, container.read_log)


def health() -> Response:
    """GET /api/health: database and Redis reachability."""
    try:
        db.scalar("SELECT 1")
        db_state = "ok"
    except DatabaseUnavailable:
        db_state = "down"
    current = runtime.current().cache
    if current.l2 is None:
        redis_state = "disabled"
    else:
        redis_state = "ok" if current.l2.ping() else "down"
    document = {"status": "ok", "db": db_state, "redis": redis_state}
    from chalicelib.booking.read_source import replica_health

    replica_state = replica_health()  # None: no DATABASE_READ_URL, the key is left out
    if replica_state is not None:
        document["replica"] = replica_state
    if db_state != "ok" or redis_state == "down" or replica_state == "down":
        document["status"] = "degraded"
    return json_response(document, status=200 if db_state == "ok" else 503)


def cache_stats(caller: Principal) -> Response:
    """GET /api/cache/stats (operator: the platform's role; a tenant's admin sees no
    container-wide figures): the fleet's and this container's cache statistics, and the
    last view refreshes (read here and passed in: the report reads no database)."""
    require_role(caller, OPERATOR)
    from chalicelib.cache import fleet
    from chalicelib.cache.report import stats_document

    container = runtime.current()
    current = container.cache
    current.begin_request()  # connects invalidation tracking if no read has yet
    try:
        views: Optional[list] = db.run("SELECT view_name, refreshed_at, duration_ms, keys_prewarmed, status"
                                       " FROM view_refresh ORDER BY view_name")
    except DatabaseUnavailable:
        views = None
    own = fleet.container_snapshot(current, container.container_id)
    return json_response(stats_document(current, own, fleet.read(current, own), container.fleet, views))
