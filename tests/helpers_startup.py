"""Test helpers for start-up: one request to every route, fired at a server the moment it
listens, and a probe process that lists what a served process imports after `serve`'s
import boundary (`python -m tests.helpers_startup probe SETUP_JSON`).
"""
from __future__ import annotations

import http.client
import json
import sys
import threading
from dataclasses import dataclass
from typing import Any, Optional

from chalicelib.auth import issue_token
from support.ports import free_port, wait_for_port
from tests.conftest import TEST_AUTH_SECRET


@dataclass(frozen=True)
class RouteCall:
    """One request and the status it must get."""

    method: str
    path: str
    body: Optional[dict[str, Any]]
    expected: int
    operator: bool = False  # sent with an operator token (fleet statistics), not the admin's


def every_route(day: str, slot: int, patient: int) -> list[RouteCall]:
    """One call per route kind: health, each cached read, cache statistics, the OpenAPI
    document, the monitor page and a booking of `slot` for `patient` (admin token)."""
    return [
        RouteCall("GET", "/api/health", None, 200),
        RouteCall("GET", "/api/departments?clientId=1", None, 200),
        RouteCall("GET", "/api/doctors?clientId=1", None, 200),
        RouteCall("GET", "/api/patients?clientId=1&q=A", None, 200),
        RouteCall("GET", f"/api/slots/available?clientId=1&date={day}", None, 200),
        RouteCall("GET", f"/api/appointments/list?clientId=1&date={day}", None, 200),
        RouteCall("GET", "/api/dashboard/stats?clientId=1", None, 200),
        RouteCall("GET", "/api/cache/stats", None, 200, operator=True),
        RouteCall("GET", "/api/openapi.json", None, 200),
        RouteCall("GET", "/monitor", None, 200),
        RouteCall("POST", "/api/appointments", {"clientId": 1, "slotId": slot, "patientId": patient}, 201),
    ]


def call(port: int, route: RouteCall, headers: dict[str, str]) -> tuple[int, bytes]:
    """Send `route` on a new connection; its status and the start of its body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    if route.operator:
        headers = {"Authorization": f"Bearer {issue_token(TEST_AUTH_SECRET, 0, 'operator')}"}
    try:
        payload = None if route.body is None else json.dumps(route.body).encode()
        sent = headers if payload is None else {**headers, "Content-Type": "application/json"}
        conn.request(route.method, route.path, body=payload, headers=sent)
        response = conn.getresponse()
        return response.status, response.read()[:300]
    finally:
        conn.close()


def burst_at_start(port: int, calls: list[RouteCall], headers: dict[str, str]) -> list[tuple[RouteCall, int, bytes]]:
    """Start one thread per call, wait until the port accepts, then release them all at
    once; each call's route, status and body start."""
    barrier = threading.Barrier(len(calls) + 1)
    answers: list[tuple[RouteCall, int, bytes]] = []

    def send(route: RouteCall) -> None:
        barrier.wait()
        try:
            status, body = call(port, route, headers)
        except OSError as exc:  # a reset or a timeout is a failed answer too
            status, body = 0, type(exc).__name__.encode()
        answers.append((route, status, body))

    threads = [threading.Thread(target=send, args=(route,)) for route in calls]
    for thread in threads:
        thread.start()
    wait_for_port(port, timeout=60, pause_s=0.0)
    barrier.wait()
    for thread in threads:
        thread.join(90)
    return answers


def _probe(setup: dict[str, Any]) -> None:
    """Serve in this process (no scheduler thread), and once it listens, note sys.modules;
    call every route, run both scheduled handlers and a failing job; print the statuses,
    the job results and every module imported after the note, as one JSON line."""
    from chalicelib.local_server import LocalScheduler, serve
    from chalicelib.observability import log_scheduled

    port = free_port()
    threading.Thread(target=serve, args=("127.0.0.1", port), kwargs={"schedules": False}, daemon=True).start()
    wait_for_port(port, timeout=60, pause_s=0.0)
    before = set(sys.modules)
    headers = {"Authorization": f"Bearer {setup['token']}"}
    statuses = [call(port, route, headers)[0] for route in every_route(setup["day"], setup["slot"], setup["patient"])]
    import app

    scheduler = LocalScheduler(app.app, {})  # its invoke() only: the thread is not started
    jobs = [scheduler.invoke("refresh_views")["status"], sorted(scheduler.invoke("extend_slots"))]
    try:
        log_scheduled("failing_job", lambda: 1 // 0)
    except ZeroDivisionError:
        jobs.append("failed")
    print(json.dumps({"statuses": statuses, "jobs": jobs, "imported": sorted(set(sys.modules) - before)}))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "probe":
        _probe(json.loads(sys.argv[2]))
    else:
        raise SystemExit("usage: python -m tests.helpers_startup probe SETUP_JSON")
