"""Logging, metrics and tracing with Powertools: JSON logs with the request id and cold
start, EMF metrics, X-Ray tracing (off unless a stage turns it on).

Tracing is on only in Lambda and only when the stage sets `TRACING=1` next to `"xray":
true` in .chalice/config.json (tools/chalice_stage.py and infra/package.sh keep the two
together). Only then is the Powertools Tracer imported, and with it `aws_xray_sdk`, which
the default package does not ship (requirements-xray.txt adds it for such a stage); the
default cold start never pays for it.

Instead of `ConvertToMiddleware(logger.inject_lambda_context)` (which rebuilds the event
dict and a context model on every call: tens of microseconds) or any Chalice middleware (a
handler layer per request), every API route's wrapper (`web.endpoint`) and every scheduled
job (`log_scheduled`) opens a `request_scope`: it sets the request id and cold-start keys on
the Powertools formatter directly and, at most once per METRICS_FLUSH_INTERVAL seconds,
turns the cache statistics' deltas into EMF metrics; at most once per
STATS_PUBLISH_INTERVAL seconds it publishes the container's statistics to Redis for the
fleet view (chalicelib.cache.fleet).

No log line written here carries request bodies, query strings or patient data: only ids of
requests, job names, durations, counts and view names.

A cold start imports no part of Powertools (nor botocore, which it imports): the Logger is
created at the first invocation (`RequestScope.enter`) or at the first chalicelib log
record, whichever comes first (`powertools_logger`).
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Optional

from chalice import Chalice

from chalicelib.misconfigured import misconfigured_result
from chalicelib.powertools_seam import log_keys
from chalicelib.settings import SettingsError, get_settings

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.metrics import MetricUnit

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "hospital-booking"
DEFAULT_NAMESPACE = "HospitalBooking"
IN_LAMBDA = bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME")) and not os.environ.get("AWS_CHALICE_CLI_MODE")
_TRUE = ("1", "true", "yes", "on")


def tracing_enabled(env: Optional[Mapping[str, str]] = None) -> bool:
    """Is X-Ray tracing on? Only in Lambda, only with TRACING=1 (set by a stage that has
    "xray": true), and never when POWERTOOLS_TRACE_DISABLED is true."""
    env = os.environ if env is None else env
    in_lambda = bool(env.get("AWS_LAMBDA_FUNCTION_NAME")) and not env.get("AWS_CHALICE_CLI_MODE")
    return (in_lambda and env.get("TRACING", "").strip().lower() in _TRUE
            and env.get("POWERTOOLS_TRACE_DISABLED", "").strip().lower() not in _TRUE)


TRACING = tracing_enabled()
if not TRACING:
    # Anything that builds a Powertools Tracer anyway gets a disabled one.
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")

_logger: Optional[Logger] = None
_logger_lock = threading.Lock()
_log_stream = sys.stdout  # the Logger writes where stdout was at import, as when it was built then
_tracer: Any = None


def powertools_logger() -> Logger:
    """The Powertools Logger (JSON lines on stdout), created on first use; chalicelib's
    loggers write through its handlers from then on (see `configure`)."""
    global _logger
    if _logger is None:
        with _logger_lock:
            if _logger is None:
                from aws_lambda_powertools import Logger

                created = Logger(service=SERVICE, stream=_log_stream)
                _adopt_handlers(created)
                _logger = created
    return _logger


def __getattr__(name: str) -> Any:
    """`observability.logger` is the Powertools Logger (created on first use)."""
    if name == "logger":
        return powertools_logger()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def tracer() -> Any:
    """The Powertools Tracer, created on first use. It imports aws_xray_sdk, which only a
    stage with X-Ray on ships: call it only when `TRACING` is true."""
    global _tracer
    if _tracer is None:
        from aws_lambda_powertools import Tracer

        _tracer = Tracer(service=SERVICE)
    return _tracer


def namespace() -> str:
    """The CloudWatch metrics namespace (POWERTOOLS_METRICS_NAMESPACE)."""
    return os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE


def emit_metrics(values: Mapping[str, tuple[MetricUnit, float | Iterable[float]]],
                 dimensions: Optional[Mapping[str, str]] = None) -> None:
    """Print one EMF blob: {name: (unit, value or values)} with optional dimensions.

    EphemeralMetrics keeps its own metric set, so job and API metrics never mix even when
    they share a process (local server, tests)."""
    from aws_lambda_powertools.metrics import EphemeralMetrics

    metrics = EphemeralMetrics(namespace=namespace(), service=SERVICE)
    added = False
    for name, (unit, value) in values.items():
        for v in ([value] if isinstance(value, (int, float)) else value):
            metrics.add_metric(name=name, unit=unit, value=v)
            added = True
    if not added:
        return
    for key, label in (dimensions or {}).items():
        metrics.add_dimension(name=key, value=label)
    metrics.flush_metrics()


def _flush_interval() -> float:
    try:
        return float(os.environ.get("METRICS_FLUSH_INTERVAL", "10"))
    except ValueError:
        return 10.0


def _no_runtime() -> Any:
    return None


_current_runtime: Callable[[], Any] = _no_runtime
"""This container's runtime if one was built, or None (never builds one just to report on
it): its `cache`, its `metrics` (a CacheMetrics) and its `fleet` publisher. Set by
`configure`, so this module imports nothing of the domain."""


LATENCY_POINTS = 50
"""Values per latency metric and flush: the quantiles of the flush interval's histogram."""

_COUNTS = {"L1Hits": ("l1", "hits"), "L1Misses": ("l1", "misses"), "L2Hits": ("l2", "hits"),
           "L2Misses": ("l2", "misses"), "L2Errors": ("l2", "errors"), "DbLoads": ("db", "hits"),
           "DbErrors": ("db", "errors")}
_LATENCIES = {"L1LatencyUs": "l1", "L2LatencyUs": "l2", "DbLatencyUs": "db"}


class CacheMetrics:
    """Turns this container's cache statistics into EMF deltas since the previous flush:
    L1Hits, L1Misses, L2Hits, L2Misses, L2Errors, DbLoads, DbErrors, StaleServed,
    BreakerOpens (times the Redis breaker opened), and per tier the latency distribution of
    the interval as L1LatencyUs / L2LatencyUs / DbLatencyUs (at most LATENCY_POINTS
    quantile values each, so CloudWatch's p50/p99 follow the interval's histogram)."""

    def __init__(self) -> None:
        self.last: dict[str, Any] = {}
        self.stats_id = 0
        self.lock = threading.Lock()

    def flush(self, cache: Any) -> dict[str, Any]:
        """Emit the deltas of `cache`'s statistics since the previous flush; returns what
        was emitted."""
        from aws_lambda_powertools.metrics import MetricUnit

        from chalicelib.cache import histogram

        with self.lock:
            stats = cache.stats
            if id(stats) != self.stats_id or stats.l1.hits < self.last.get("L1Hits", 0):
                self.stats_id, self.last = id(stats), {}  # a new cache or reset statistics
            now: dict[str, Any] = {name: getattr(getattr(stats, tier), field) for name, (tier, field)
                                   in _COUNTS.items()}
            now["StaleServed"] = stats.stale_served
            now["BreakerOpens"] = cache.l2.breaker.opened_count if cache.l2 is not None else 0
            delta = {k: max(0, v - self.last.get(k, 0)) for k, v in now.items()}
            points: dict[str, list[float]] = {}
            for name, tier in _LATENCIES.items():
                buckets = dict(getattr(stats, tier).fold())
                before = self.last.get(name, {})
                interval = {i: c - before.get(i, 0) for i, c in buckets.items() if c > before.get(i, 0)}
                now[name] = buckets
                if interval:
                    points[name] = [round(v, 3) for v in histogram.quantile_points(interval, LATENCY_POINTS)]
            self.last = now
        values: dict[str, tuple[MetricUnit, Any]] = {name: (MetricUnit.Count, v) for name, v in delta.items()}
        if not any(delta.values()) and not points:
            return {}
        for name, samples in points.items():
            values[name] = (MetricUnit.Microseconds, samples)
        emit_metrics(values)
        return values


def _publish_interval() -> float:
    from chalicelib.cache.fleet import publish_interval_s

    return publish_interval_s()


class RequestScope:
    """Request id + cold start on every log line of an invocation; at its end, at most one
    monotonic-clock comparison, and when due the periodic work: the metrics flush (every
    METRICS_FLUSH_INTERVAL s) and the fleet statistics publish (every
    STATS_PUBLISH_INTERVAL s, first at the end of the first invocation).

    `enter(context)` at the start of an invocation, `exit()` at its end (in a finally)."""

    def __init__(self, flush_interval: Optional[float] = None, publish_interval: Optional[float] = None) -> None:
        self.flush_interval = _flush_interval() if flush_interval is None else flush_interval
        self.publish_interval = _publish_interval() if publish_interval is None else publish_interval
        now = time.monotonic()
        self.next_flush = now + self.flush_interval
        self.next_publish = now  # a new container shows up in the fleet at once
        self.next_due = min(self.next_flush, self.next_publish)
        self.cold = True
        self.keys: Optional[dict[str, Any]] = None  # the formatter's keys, from the first enter()

    def enter(self, context: Any) -> None:
        """Stamp log lines with this invocation's request id (and cold start)."""
        keys = self.keys
        if keys is None:
            keys = self.keys = log_keys(powertools_logger())
        keys["request_id"] = getattr(context, "aws_request_id", None)
        keys["cold_start"] = self.cold

    def request_id(self) -> Optional[str]:
        """The current invocation's request id (None outside one, or without a context)."""
        return self.keys.get("request_id") if self.keys is not None else None

    def exit(self, api: bool = True) -> None:
        """Clear the request id; flush metrics and (after an API request, `api`) publish
        fleet statistics when due. Scheduled jobs pass api=False: a job's container (its
        own Lambda function in AWS) serves no reads and is not part of the fleet."""
        keys = self.keys
        if keys is None:
            keys = self.keys = log_keys(powertools_logger())
        keys["request_id"] = None  # None keys are left out: no stale id on later lines
        if self.cold:
            self.cold = keys["cold_start"] = False
        if time.monotonic() >= self.next_due:
            self._periodic(api)

    def _periodic(self, api: bool) -> None:
        now = time.monotonic()
        if now >= self.next_flush:
            self._maybe_flush()
        if api and now >= self.next_publish:
            self.next_publish = now + self.publish_interval
            self._publish()
        self.next_due = min(self.next_flush, self.next_publish)

    def _maybe_flush(self) -> None:
        now = time.monotonic()
        if now < self.next_flush:
            return
        self.next_flush = now + self.flush_interval
        self.next_due = min(self.next_flush, self.next_publish)
        runtime = _current_runtime()
        if runtime is None:
            return
        try:
            runtime.metrics.flush(runtime.cache)
        except Exception:  # noqa: BLE001 - metrics must never fail a request
            powertools_logger().warning("cache metrics flush failed")

    def _publish(self) -> None:
        runtime = _current_runtime()
        if runtime is None:
            return
        try:
            runtime.fleet.publish(runtime.cache)  # Redis trouble is counted there, never raised
        except Exception:  # noqa: BLE001 - statistics must never fail a request
            runtime.fleet.errors += 1
            powertools_logger().warning("fleet statistics publish failed")


request_scope = RequestScope()


class _PowertoolsOnFirstRecord(logging.Handler):
    """chalicelib's log handler until the Powertools Logger exists: the first record creates
    the Logger (whose handlers then take this one's place) and goes to its handlers."""

    def handle(self, record: logging.LogRecord) -> bool:
        created = powertools_logger()
        if record.levelno >= logging.getLogger(record.name).getEffectiveLevel():  # as it is from now on
            for handler in created.handlers:
                if record.levelno >= handler.level:
                    handler.handle(record)
        return True


def _adopt_handlers(created: Logger) -> None:
    """Put the new Powertools Logger's handlers and level on chalicelib's loggers, in place
    of the stand-in `configure` installed (if it did)."""
    root = logging.getLogger("chalicelib")
    if any(isinstance(handler, _PowertoolsOnFirstRecord) for handler in root.handlers):
        root.handlers = list(created.handlers)  # a new list: a record being handled finishes on the old one
        root.setLevel(created.log_level)


def configure(app: Chalice, current_runtime: Callable[[], Any] = _no_runtime) -> None:
    """Route chalicelib's standard loggers through the Powertools Logger (one JSON line
    each; the app is built with configure_logs=False); when tracing is on (`TRACING`),
    wrap every handler in the Powertools tracer. `current_runtime` returns the container's
    runtime if one was built (or None): the metrics and the fleet statistics report on its
    cache.

    Until the Logger exists, a stand-in handler receives every record (the level is the
    lowest until then); the first record creates the Logger and is handled as it would
    have been."""
    global _current_runtime
    _current_runtime = current_runtime
    root = logging.getLogger("chalicelib")
    if not root.handlers:
        root.addHandler(_PowertoolsOnFirstRecord())
        root.setLevel(logging.DEBUG)
        root.propagate = False
        if _logger is not None:
            _adopt_handlers(_logger)
    if TRACING:
        from chalice.app import ConvertToMiddleware

        app.register_middleware(ConvertToMiddleware(tracer().capture_lambda_handler), "all")


def error_fields(exc: BaseException) -> dict[str, Any]:
    """What may be logged of an unexpected error: its type, its SQLSTATE for a database
    error, and the code locations it passed through. Never its message or arguments: for a
    database error they can carry row values (a constraint's "Key (...)=(...)" detail),
    elsewhere patient data."""
    from chalicelib.db.connection import sqlstate

    frames = "; ".join(f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} {frame.name}"
                       for frame in traceback.extract_tb(exc.__traceback__))
    return {"error_type": type(exc).__name__, "sqlstate": sqlstate(exc), "frames": frames}


def log_scheduled(name: str, job: Callable[[], dict[str, Any]], context: Any = None) -> dict[str, Any]:
    """Run a scheduled job, logging its outcome and duration under the invocation's id;
    with refused settings, log them (once) and return without running it."""
    started = time.perf_counter()
    request_scope.enter(context)
    try:
        get_settings()
        result = job()
        powertools_logger().info("scheduled job done",
                                 extra={"job": name, "ms": round((time.perf_counter() - started) * 1000, 1),
                                        "result": result})
        return result
    except SettingsError as exc:
        return misconfigured_result(exc)  # logged once; nothing to retry until the settings change
    except Exception as exc:
        powertools_logger().error("scheduled job failed", extra={"job": name, **error_fields(exc)})
        raise
    finally:
        request_scope.exit(api=False)
