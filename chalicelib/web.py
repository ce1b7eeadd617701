"""Request plumbing shared by every route: the error boundary, per-request cache set-up,
the cached-read path with its plan memo, health and cache statistics."""
from __future__ import annotations

import functools
import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

from chalice import Chalice, Response
from chalice.app import MultiDict, Request

from chalicelib.audit.read_log import read_log
from chalicelib.auth import OPERATOR, Principal, principal_from_headers, require_role
from chalicelib.booking.caching import get_cache
from chalicelib.booking.errors import BookingError
from chalicelib.booking.reads import ReadPlan
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
    from chalicelib.booking import outbox_watch
    from chalicelib.cache.tiered import TieredCache
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
        try:
            get_settings()  # read and checked on first use; after that one global lookup
            read_log.flush_if_due()
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
            read_log.flush_if_due()
            request_scope.exit()

    return wrapped


def principal(headers: Any) -> Principal:
    """The verified caller of the current request."""
    settings = get_settings()
    return principal_from_headers(headers, settings)


class PlanMemo:
    """ReadPlans by (resource, Authorization header, query): parsing, token verification and
    key building run once per distinct request, not on every hit. Bounded; emptied when the
    settings (the token secret) or the cache change. Errors are never remembered."""

    def __init__(self, max_entries: int = 8192) -> None:
        self.max_entries = max_entries
        self.plans: dict[tuple[Any, ...], ReadPlan] = {}
        self.owner: tuple[Any, Any] = (None, None)

    def clear(self) -> None:
        """Forget every plan (chalicelib/runtime.py)."""
        self.plans, self.owner = {}, (None, None)

    def get(self, resource: CachedResource, request: Request, headers: Mapping[str, str],
            cache: TieredCache) -> ReadPlan:
        """The plan for this request (built, verified and remembered on first sight)."""
        query = request.to_original_event().get("multiValueQueryStringParameters") or {}
        path = request.uri_params or {}
        memo_key = (resource.name, headers.get("authorization"),
                    tuple((name, tuple(values)) for name, values in query.items()), tuple(path.items()))
        settings = get_settings()
        if self.owner[0] is not settings or self.owner[1] is not cache:
            self.plans, self.owner = {}, (settings, cache)
        plan = self.plans.get(memo_key)
        if plan is None or plan.expires_at <= time.time():
            caller = principal_from_headers(request.headers, settings)
            plan = resource.plan(cache, caller, _request_params(query, path))
            if len(self.plans) >= self.max_entries:
                self.plans = {}
            self.plans[memo_key] = plan
        return plan


def _request_params(query: Mapping[str, list[str]], path: Mapping[str, str]) -> MultiDict:
    """Every value of each query parameter (a native query reads the last; FHIR repeats
    names), and a path's id as `_id`."""
    return MultiDict({**query, **{"_id": [value] for value in path.values()}})


plans = PlanMemo()


def cached_read(resource: CachedResource, conditional: bool = True) -> Response:
    """A cached GET route: apply queued invalidations (for a booking-critical resource, the
    outbox's too, rate-limited), then serve the current request's plan through the cache
    (`conditional`: answer 304 to a matching If-None-Match; else the caller does)."""
    current = request()
    cache = get_cache()
    cache.begin_request()
    if resource.freshness.critical:
        outbox_watch.watch.look(cache)
    headers = lower_case_headers(current.headers)
    return read(cache, plans.get(resource, current, headers, cache),
                headers.get("if-none-match") if conditional else None)


def health() -> Response:
    """GET /api/health: database and Redis reachability."""
    try:
        db.scalar("SELECT 1")
        db_state = "ok"
    except DatabaseUnavailable:
        db_state = "down"
    current = get_cache()
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

    current = get_cache()
    current.begin_request()  # connects invalidation tracking if no read has yet
    try:
        views: Optional[list] = db.run("SELECT view_name, refreshed_at, duration_ms, keys_prewarmed, status"
                                       " FROM view_refresh ORDER BY view_name")
    except DatabaseUnavailable:
        views = None
    own = fleet.container_snapshot(current)
    return json_response(stats_document(current, own, fleet.read(current, own), fleet.publisher, views))
