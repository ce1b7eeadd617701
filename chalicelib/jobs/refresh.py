"""Scheduled refresh of the materialized views, then pre-warm of hot keys into Redis."""
from __future__ import annotations

import logging
import time
from typing import Any

from chalicelib.db import connection as db
from chalicelib.settings import get_settings

log = logging.getLogger(__name__)
VIEWS = ("dashboard_daily",)


def refresh_views() -> dict[str, Any]:
    """Refresh every view CONCURRENTLY under an advisory lock; a concurrent run skips.

    Returns {"status": "ok"|"skipped", "views": {name: ms}}.
    """
    settings = get_settings()
    conn = db.connect()
    try:
        if not conn.run("SELECT pg_try_advisory_lock(:id)", id=settings.refresh_lock_id)[0][0]:
            log.info("refresh skipped: another refresh holds the lock")
            return {"status": "skipped", "views": {}}
        try:
            conn.run(f"SET statement_timeout = {int(settings.refresh_timeout_ms)}")
            durations: dict[str, float] = {}
            for view in VIEWS:
                started = time.perf_counter()
                conn.run(f"REFRESH MATERIALIZED VIEW CONCURRENTLY {view}")
                durations[view] = (time.perf_counter() - started) * 1000
                conn.run(
                    "INSERT INTO view_refresh (view_name, refreshed_at, duration_ms, status)"
                    " VALUES (:v, now(), :ms, 'ok') ON CONFLICT (view_name) DO UPDATE"
                    " SET refreshed_at = excluded.refreshed_at, duration_ms = excluded.duration_ms,"
                    " status = 'ok', detail = NULL", v=view, ms=durations[view])
            return {"status": "ok", "views": durations}
        finally:
            conn.run("SELECT pg_advisory_unlock(:id)", id=settings.refresh_lock_id)
    finally:
        conn.close()


def run_scheduled_refresh() -> dict[str, Any]:
    """What the one-minute schedule does: refresh the views (pre-warm follows)."""
    return refresh_views()
