"""Scheduled refresh of the materialized views, then pre-warm of hot keys into Redis.

One run: take a PostgreSQL advisory lock on a dedicated connection (a concurrent run
returns at once with status "skipped"), refresh each view CONCURRENTLY under a statement
timeout (readers keep reading the old contents meanwhile) through the SECURITY DEFINER
function `refresh_materialized_view` of migration 007 (the app's role does not own the
views; the function's owner does), record each refresh in `view_refresh`, replay the
invalidation outbox, bump every tenant's dashboard version so no copy of the old view is
served, and pre-warm the hot keys into Redis under the keys and versions the API uses.
Metrics: RefreshDurationMs (per view), KeysPrewarmed, RefreshFailures.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from chalicelib.booking import scopes
from chalicelib.booking.caching import get_cache
from chalicelib.booking.invalidation import primary_ticket, replay_outbox
from chalicelib.db import connection as db
from chalicelib.jobs.prewarm import active_tenants, prewarm_all
from chalicelib.observability import emit_metrics
from chalicelib.settings import get_settings

log = logging.getLogger(__name__)
VIEWS = ("dashboard_daily",)

_RECORD_SQL = """
INSERT INTO view_refresh (view_name, refreshed_at, duration_ms, keys_prewarmed, status, detail)
VALUES (:v, now(), :ms, :k, :s, :d)
ON CONFLICT (view_name) DO UPDATE SET refreshed_at = excluded.refreshed_at,
    duration_ms = excluded.duration_ms, keys_prewarmed = excluded.keys_prewarmed,
    status = excluded.status, detail = excluded.detail"""


def _record(conn: Any, view: str, ms: float, status: str, prewarmed: int = 0, detail: str | None = None) -> None:
    conn.run(_RECORD_SQL, v=view, ms=ms, k=prewarmed, s=status, d=detail)


def _failure_detail(exc: BaseException) -> str:
    """What went wrong, without parameters or row data: the SQLSTATE and server message."""
    state = db.sqlstate(exc)
    if state is not None and exc.args and isinstance(exc.args[0], dict):
        return f"{state}: {exc.args[0].get('M', '')}"[:500]
    return type(exc).__name__


def refresh_views() -> dict[str, Any]:
    """Refresh every view CONCURRENTLY under an advisory lock, then warm the caches.

    Returns {"status": "ok"|"skipped"|"failed", "views": {name: ms}, "keys_prewarmed": n,
    "outbox_replayed": n, "tenants": n, "ms": total} (plus "error" when failed)."""
    settings = get_settings()
    started = time.perf_counter()
    conn = db.connect(statement_timeout_ms=settings.refresh_timeout_ms)
    result: dict[str, Any] = {"status": "ok", "views": {}, "keys_prewarmed": 0, "outbox_replayed": 0}
    try:
        if not conn.run("SELECT pg_try_advisory_lock(:id)", id=settings.refresh_lock_id)[0][0]:
            log.info("refresh skipped: another refresh holds the lock")
            return {**result, "status": "skipped"}
        try:
            conn.run(f"SET statement_timeout = {int(settings.refresh_timeout_ms)}")
            view, t0 = "", time.perf_counter()
            try:
                for view in VIEWS:
                    t0 = time.perf_counter()
                    conn.run("SELECT refresh_materialized_view(:v)", v=view)
                    ms = round((time.perf_counter() - t0) * 1000, 3)
                    result["views"][view] = ms
                    _record(conn, view, ms, "ok")
                    log.info("view refreshed", extra={"view": view, "ms": ms})
                    emit_metrics({"RefreshDurationMs": (MetricUnit.Milliseconds, ms)}, {"View": view})
            except Exception as exc:  # noqa: BLE001 - record, count, report
                detail = _failure_detail(exc)
                log.error("view refresh failed", extra={"view": view, "detail": detail})
                try:
                    _record(conn, view, round((time.perf_counter() - t0) * 1000, 3), "failed", detail=detail)
                except Exception:  # noqa: BLE001 - the connection itself may be gone
                    log.warning("could not record the failed refresh", extra={"view": view})
                emit_metrics({"RefreshFailures": (MetricUnit.Count, 1)})
                return {**result, "status": "failed", "error": detail}
            result.update(_after_refresh(conn))
        finally:
            try:
                conn.run("SELECT pg_advisory_unlock(:id)", id=settings.refresh_lock_id)
            except Exception:  # noqa: BLE001 - closing the session releases it anyway
                pass
    finally:
        conn.close()
        result["ms"] = round((time.perf_counter() - started) * 1000, 3)
    return result


def _after_refresh(conn: Any) -> dict[str, Any]:
    """Replay the outbox, bump each tenant's dashboard version, pre-warm; record the count."""
    cache = get_cache()
    out: dict[str, Any] = {}
    try:
        out["outbox_replayed"] = replay_outbox(cache)
    except Exception:  # noqa: BLE001 - retried by the next run
        log.warning("outbox replay failed; the next refresh retries")
    tenants = active_tenants()
    out["tenants"] = len(tenants)
    ticket = primary_ticket() if tenants else ""  # read after the refresh committed
    for tenant, _ in tenants:
        if not cache.invalidate(tenant, [scopes.DASHBOARD], ticket):
            # Redis is down: nothing is cached there; dashboards reload once it is back.
            log.warning("could not bump the dashboard version", extra={"tenant": tenant})
    prewarmed = 0
    try:
        prewarmed = prewarm_all(cache, tenants)
    except Exception:  # noqa: BLE001 - a cold cache is slower, never wrong
        log.warning("pre-warm failed")
    out["keys_prewarmed"] = prewarmed
    conn.run("UPDATE view_refresh SET keys_prewarmed = :k WHERE view_name = ANY(:v)", k=prewarmed, v=list(VIEWS))
    emit_metrics({"KeysPrewarmed": (MetricUnit.Count, prewarmed)})
    return out


def run_scheduled_refresh() -> dict[str, Any]:
    """What the one-minute schedule does: refresh, replay the outbox, pre-warm."""
    return refresh_views()
