"""Logging, metrics and tracing with Powertools: JSON logs with the request id and cold
start, EMF metrics, X-Ray tracing (off outside Lambda).

Instead of `ConvertToMiddleware(logger.inject_lambda_context)` (which rebuilds the event
dict and a context model on every call: tens of microseconds) or any Chalice middleware (a
handler layer per request), every API route's wrapper (`web.endpoint`) and every scheduled
job (`log_scheduled`) opens a `request_scope`: it sets the request id and cold-start keys on
the Powertools formatter directly and, at most once per METRICS_FLUSH_INTERVAL seconds,
turns the cache statistics' deltas into EMF metrics.

No log line written here carries request bodies, query strings or patient data: only ids of
requests, job names, durations, counts and view names.
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from typing import Any, Callable, Iterable, Mapping, Optional

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from chalice import Chalice

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "hospital-booking"
DEFAULT_NAMESPACE = "HospitalBooking"
IN_LAMBDA = bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME")) and not os.environ.get("AWS_CHALICE_CLI_MODE")
if not IN_LAMBDA:
    # Tracing needs the X-Ray daemon; locally and in tests it is off unless asked for.
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")

logger = Logger(service=SERVICE)
_tracer: Any = None


def tracer() -> Any:
    """The Powertools Tracer (created on first use; disabled when not in Lambda)."""
    global _tracer
    if _tracer is None:
        from aws_lambda_powertools import Tracer

        _tracer = Tracer(service=SERVICE)
    return _tracer


def namespace() -> str:
    """The CloudWatch metrics namespace (POWERTOOLS_METRICS_NAMESPACE)."""
    return os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE


def emit_metrics(values: Mapping[str, tuple[str, float | Iterable[float]]],
                 dimensions: Optional[Mapping[str, str]] = None) -> None:
    """Print one EMF blob: {name: (unit, value or values)} with optional dimensions.

    EphemeralMetrics keeps its own metric set, so job and API metrics never mix even when
    they share a process (local server, tests)."""
    metrics = EphemeralMetrics(namespace=namespace(), service=SERVICE)
    added = False
    for name, (unit, value) in values.items():
        for v in ([value] if isinstance(value, (int, float)) else value):
            metrics.add_metric(name=name, unit=unit, value=v)
            added = True
    if not added:
        return
    for key, value in (dimensions or {}).items():
        metrics.add_dimension(name=key, value=value)
    metrics.flush_metrics()


def _flush_interval() -> float:
    try:
        return float(os.environ.get("METRICS_FLUSH_INTERVAL", "10"))
    except ValueError:
        return 10.0


class CacheMetrics:
    """Turns this container's cache statistics into EMF deltas: L1Hits, L2Hits, DbLoads,
    StaleServed and LoaderMs (the latencies of the loads since the last flush, at most 100)."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}
        self.stats_id = 0
        self.lock = threading.Lock()

    def flush(self) -> dict[str, Any]:
        """Emit the deltas since the previous flush; returns what was emitted."""
        from chalicelib.cache import tiered

        cache = tiered._cache  # never build a cache just to report on it
        if cache is None:
            return {}
        with self.lock:
            stats = cache.stats
            if id(stats) != self.stats_id or stats.l1.hits < self.last.get("l1", 0):
                self.stats_id, self.last = id(stats), {}  # a new cache or reset statistics
            db_total = stats.db.hits + stats.db.misses
            now = {"l1": stats.l1.hits, "l2": stats.l2.hits, "db": stats.db.hits,
                   "stale": stats.stale_served, "dbt": db_total}
            delta = {k: max(0, v - self.last.get(k, 0)) for k, v in now.items()}
            self.last = now
            new_loads = min(delta["dbt"], 100, len(stats.db.latencies_us))
            loader_ms = [round(us / 1000.0, 3) for us in
                         itertools.islice(reversed(list(stats.db.latencies_us)), new_loads)]
        values = {"L1Hits": (MetricUnit.Count, delta["l1"]), "L2Hits": (MetricUnit.Count, delta["l2"]),
                  "DbLoads": (MetricUnit.Count, delta["db"]), "StaleServed": (MetricUnit.Count, delta["stale"])}
        if not any(v for _, v in values.values()) and not loader_ms:
            return {}
        if loader_ms:
            values["LoaderMs"] = (MetricUnit.Milliseconds, loader_ms)
        emit_metrics(values)
        return values


cache_metrics = CacheMetrics()


class RequestScope:
    """Request id + cold start on every log line of an invocation; periodic metrics flush.

    `enter(context)` at the start of an invocation, `exit()` at its end (in a finally)."""

    def __init__(self, flush_interval: Optional[float] = None) -> None:
        self.flush_interval = _flush_interval() if flush_interval is None else flush_interval
        self.next_flush = time.monotonic() + self.flush_interval
        self.cold = True
        self.keys = logger.registered_formatter.log_format  # the dict append_keys updates

    def enter(self, context: Any) -> None:
        """Stamp log lines with this invocation's request id (and cold start)."""
        keys = self.keys
        keys["request_id"] = getattr(context, "aws_request_id", None)
        keys["cold_start"] = self.cold

    def exit(self) -> None:
        """Clear the request id; flush cache metrics when the interval has passed."""
        keys = self.keys
        keys["request_id"] = None  # None keys are left out: no stale id on later lines
        if self.cold:
            self.cold = keys["cold_start"] = False
        if time.monotonic() >= self.next_flush:
            self._maybe_flush()

    def _maybe_flush(self) -> None:
        now = time.monotonic()
        if now < self.next_flush:
            return
        self.next_flush = now + self.flush_interval
        try:
            cache_metrics.flush()
        except Exception:  # noqa: BLE001 - metrics must never fail a request
            logger.warning("cache metrics flush failed")


request_scope = RequestScope()


def configure(app: Chalice) -> None:
    """Route chalicelib's standard loggers through the Powertools Logger (one JSON line
    each; the app is built with configure_logs=False); in Lambda with tracing on, wrap
    every handler in the Powertools tracer."""
    root = logging.getLogger("chalicelib")
    if not root.handlers:
        for handler in logger.handlers:
            root.addHandler(handler)
        root.setLevel(logger.log_level)
        root.propagate = False
    if IN_LAMBDA and os.environ.get("POWERTOOLS_TRACE_DISABLED", "").lower() not in ("1", "true"):
        from chalice.app import ConvertToMiddleware

        app.register_middleware(ConvertToMiddleware(tracer().capture_lambda_handler), "all")


def log_scheduled(name: str, job: Callable[[], dict[str, Any]], context: Any = None) -> dict[str, Any]:
    """Run a scheduled job, logging its outcome and duration under the invocation's id."""
    started = time.perf_counter()
    request_scope.enter(context)
    try:
        result = job()
        logger.info("scheduled job done", extra={"job": name, "ms": round((time.perf_counter() - started) * 1000, 1),
                                                 "result": result})
        return result
    except Exception:
        logger.exception("scheduled job failed", extra={"job": name})
        raise
    finally:
        request_scope.exit()
