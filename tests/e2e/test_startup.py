"""Start-up is safe: requests and scheduled jobs that reach a freshly started `serve`
together never see a half-imported module, and a scheduled job that raises is logged
once while the scheduler carries on (docs/performance.md, "Cold start")."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from typing import Any

from chalicelib.local_server import LocalScheduler
from tests.conftest import admin_connection
from tests.data_finders import new_patients
from tests.helpers_servers import PROJECT_DIR, ApiServer, free_future_slots, wait_for
from tests.helpers_startup import burst_at_start, every_route

STARTS = 5
CONCURRENT_REQUESTS = 20
# What a log line of a failure looks like: Powertools' ERROR level, a traceback, a thread
# that died ("Exception in thread"), an exception that escaped a request thread.
FAILURE_MARKS = ('"level":"ERROR"', "Traceback", "Exception in thread", "error: unhandled")


def _job_lines(log: str, job: str, message: str) -> list[dict[str, Any]]:
    """The JSON log lines of `job` with `message` ("scheduled job done" / "... failed")."""
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{") and f'"job":"{job}"' in line]
    return [line for line in lines if line.get("message") == message]


def _failure_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if any(mark in line for mark in FAILURE_MARKS)]


def test_requests_at_the_first_moment_of_a_new_server_never_fail(app_env):
    """5 fresh `serve` processes with their scheduler; at each, 20 requests over every
    route are released together the moment the port accepts, while the scheduler's first
    runs start: every answer is the route's success (no 5xx), and the log, once both
    first runs are done, has no ERROR, traceback or dead thread."""
    slots = free_future_slots(app_env, limit=STARTS)
    patients = new_patients(app_env.sql, count=STARTS)
    assert len(slots) == STARTS
    headers = app_env.headers()
    for (slot, _, day), patient in zip(slots, patients):
        routes = every_route(day, slot, patient)
        calls = [routes[i % len(routes)] for i in range(CONCURRENT_REQUESTS)]
        server = ApiServer(app_env.env, schedules=True).start()
        try:
            answers = burst_at_start(server.port, calls, headers)
            for job in ("refresh_views", "extend_slots"):
                wait_for(lambda: _job_lines(server.log_text(), job, "scheduled job done"), 120,
                         f"the scheduler's first {job} run done", server.log_tail)
            log = server.log_text()
        finally:
            server.stop()
        wrong = [(route.method, route.path, status, body) for route, status, body in answers
                 if status != route.expected]
        assert len(answers) == CONCURRENT_REQUESTS and wrong == [], wrong
        assert _failure_lines(log) == [], log[-3000:]


def test_nothing_is_imported_by_requests_or_jobs_after_the_boundary(app_env):
    """In a served process, once the port accepts (after the import boundary), a call to
    every route and both scheduled jobs, and a failing job's error log, import no module:
    no thread of `serve` can meet a half-imported one."""
    (slot, _, day), = free_future_slots(app_env, limit=1)
    setup = {"token": app_env.token(), "day": day, "slot": slot, "patient": new_patients(app_env.sql)[0]}
    done = subprocess.run([sys.executable, "-m", "tests.helpers_startup", "probe", json.dumps(setup)],
                          cwd=PROJECT_DIR, env={**app_env.env, "PYTHONUNBUFFERED": "1"}, capture_output=True,
                          text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["statuses"] == [route.expected for route in every_route(day, slot, setup["patient"])]
    assert result["jobs"] == ["ok", ["idempotencyKeysPurged", "inserted"], "failed"]
    assert result["imported"] == []


def _set_connections_allowed(database: str, allowed: bool) -> None:
    """ALTER DATABASE ... ALLOW_CONNECTIONS: while false, every new connection is refused."""
    conn = admin_connection()
    try:
        conn.run(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allowed).lower()}')
    finally:
        conn.close()


def _last_refresh(app_env) -> Any:
    return app_env.sql("SELECT refreshed_at FROM view_refresh WHERE view_name = 'dashboard_daily'")[0][0]


def test_the_scheduler_runs_again_after_a_job_raised(app_env):
    """With a 1 s refresh interval (LOCAL_REFRESH_INTERVAL), the database refuses
    connections until a refresh has raised: that run is one ERROR line (job name and
    exception type, nothing else of the error) and a WARNING, and once connections are
    allowed again, the next run refreshes the view."""
    server = ApiServer({**app_env.env, "LOCAL_REFRESH_INTERVAL": "1"}, schedules=True).start()
    try:
        wait_for(lambda: _job_lines(server.log_text(), "refresh_views", "scheduled job done"), 120,
                 "a first refresh", server.log_tail)
        before = _last_refresh(app_env)
        _set_connections_allowed(app_env.db_name, False)
        try:
            failures = wait_for(lambda: _job_lines(server.log_text(), "refresh_views", "scheduled job failed"),
                                60, "a failed refresh", server.log_tail)
        finally:
            _set_connections_allowed(app_env.db_name, True)
        wait_for(lambda: _last_refresh(app_env) > before, 60, "a refresh after the failure", server.log_tail)
        log = server.log_text()
    finally:
        server.stop()
    failure = failures[0]
    assert failure["level"] == "ERROR" and failure["error_type"] == "DatabaseUnavailable", failure
    assert set(failure) <= {"level", "location", "message", "timestamp", "service", "cold_start", "request_id",
                            "job", "error_type", "sqlstate", "frames"}, failure
    errors = _failure_lines(log)  # one ERROR line and one WARNING per failed run, nothing else
    assert all('"job":"refresh_views"' in line and '"level":"ERROR"' in line for line in errors), errors
    failed_runs = len(_job_lines(log, "refresh_views", "scheduled job failed"))
    assert len(errors) == failed_runs == log.count("scheduled handler refresh_views raised DatabaseUnavailable")


class _FailingHandler(logging.Handler):
    """A log handler that raises on every record, as a broken log destination would."""

    def emit(self, record: logging.LogRecord) -> None:
        raise OSError("log destination gone")

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        raise OSError("log destination gone")


def test_a_failing_log_handler_does_not_end_the_scheduler():
    """A run that raises while logging itself raises: invoke() still returns, and the thread
    goes on to its next run."""
    import app as app_module

    scheduler = LocalScheduler(app_module.app, {"no_such_handler": 1.0})
    calls: list[str] = []
    original = scheduler.invoke
    scheduler.invoke = lambda name: calls.append(name) or original(name)  # type: ignore[method-assign]
    log = logging.getLogger("chalicelib.local_server")
    handler = _FailingHandler()
    log.addHandler(handler)
    try:
        assert original("no_such_handler") is None  # AttributeError, then the failing WARNING
        scheduler.start()
        wait_for(lambda: len(calls) >= 2, 10, "a second run of the scheduler")
        assert scheduler.is_alive()
    finally:
        scheduler.stopped.set()
        scheduler.join(5)
        log.removeHandler(handler)
