"""Scheduled jobs: view refresh (lock, skip, readers, pre-warm), slot extension, local scheduler."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import database_connection
from tests.data_finders import free_slot_in_upcoming_week, new_patient, wait_clear_of_local_midnight

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIG_TENANT = 900


def _scheduled(client, name: str) -> dict:
    event = client.events.generate_cw_event(
        source="aws.events", detail_type="Scheduled Event", detail={},
        resources=[f"arn:aws:events:us-east-1:123456789012:rule/{name}"])
    return client.lambda_.invoke(name, event).payload


def _tenants(app_env) -> list[tuple[int, dt.date]]:
    return [(t, d) for t, d in app_env.sql("SELECT id, (now() AT TIME ZONE time_zone)::date FROM tenant ORDER BY id")]


@pytest.fixture()
def log_lines():
    """The Powertools Logger's output (JSON lines) while the test runs."""
    import io

    from chalicelib.observability import logger

    buffer = io.StringIO()
    saved = [(h, h.setStream(buffer)) for h in logger.handlers if hasattr(h, "setStream")]
    try:
        yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines() if line.startswith("{")]
    finally:
        for handler, stream in saved:
            handler.setStream(stream)


def _lock_id() -> int:
    from chalicelib.settings import get_settings

    return get_settings().refresh_lock_id


def test_refresh_through_scheduled_handler(client, app_env, capfd, log_lines):
    result = _scheduled(client, "refresh_views")
    assert result["status"] == "ok", result
    assert set(result["views"]) == {"dashboard_daily"}
    tenants = _tenants(app_env)
    assert result["keys_prewarmed"] == 5 * len(tenants)
    assert result["outbox_replayed"] == 0
    row = app_env.sql("SELECT status, keys_prewarmed, duration_ms, detail FROM view_refresh"
                      " WHERE view_name = 'dashboard_daily'")[0]
    assert row[0] == "ok" and row[1] == result["keys_prewarmed"] and row[2] > 0 and row[3] is None
    out = capfd.readouterr().out
    emf = [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]
    names = {m["Name"] for blob in emf for d in blob["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"RefreshDurationMs", "KeysPrewarmed"} <= names
    assert all(d["Namespace"] == "HospitalBooking" for blob in emf for d in blob["_aws"]["CloudWatchMetrics"])
    done = [line for line in log_lines() if line["message"] == "scheduled job done"]
    assert done and done[-1]["job"] == "refresh_views" and done[-1]["request_id"]
    with capfd.disabled():
        print(f"\nrefresh on the small seed: {result['views']['dashboard_daily']:.1f} ms view,"
              f" {result['ms']:.1f} ms with replay and pre-warm")


def test_prewarmed_keys_are_the_api_keys(client, app_env):
    from chalicelib.booking.caching import get_cache

    wait_clear_of_local_midnight(app_env.sql, margin_s=30)  # the job and the test agree on "today"
    assert _scheduled(client, "refresh_views")["status"] == "ok"
    for tenant, today in _tenants(app_env):
        get_cache().clear_l1()
        paths = [f"/api/dashboard/stats?clientId={tenant}", f"/api/departments?clientId={tenant}",
                 f"/api/doctors?clientId={tenant}", f"/api/slots/available?clientId={tenant}&date={today}",
                 f"/api/slots/available?clientId={tenant}&date={today + dt.timedelta(days=1)}"]
        for path in paths:
            response = client.http.get(path, headers=app_env.headers(tenant=tenant, role="staff"))
            assert response.status_code == 200, (path, response.body)
            assert response.headers["X-Cache"] == "L2", path


def test_refresh_bumps_dashboard_version(client, app_env):
    headers = app_env.headers()
    client.http.get("/api/dashboard/stats?clientId=1", headers=headers)
    before = client.http.get("/api/dashboard/stats?clientId=1", headers=headers)
    assert before.headers["X-Cache"] in ("L1", "L2")
    assert _scheduled(client, "refresh_views")["status"] == "ok"
    after = client.http.get("/api/dashboard/stats?clientId=1", headers=headers)
    assert after.headers["X-Cache"] == "L2"  # the pre-warmed copy, not the old L1 entry
    assert after.json_body["asOf"] > before.json_body["asOf"]


def test_skip_while_advisory_lock_is_held(client, app_env):
    holder = database_connection(app_env.db_name)
    try:
        assert holder.run("SELECT pg_try_advisory_lock(:id)", id=_lock_id())[0][0]
        started = time.perf_counter()
        result = _scheduled(client, "refresh_views")
        assert result["status"] == "skipped"
        assert time.perf_counter() - started < 1.0
    finally:
        holder.run("SELECT pg_advisory_unlock(:id)", id=_lock_id())
        holder.close()
    assert _scheduled(client, "refresh_views")["status"] == "ok"


def test_two_concurrent_refreshes_one_skips(app_env):
    """Real threads: the first holds the advisory lock while its REFRESH waits on a table
    lock (on slot) the test holds; the second returns 'skipped' at once."""
    from chalicelib.jobs.refresh import refresh_views

    blocker = database_connection(app_env.db_name)
    watcher = database_connection(app_env.db_name)
    results: dict[str, dict] = {}
    try:
        blocker.run("BEGIN")
        blocker.run("LOCK TABLE slot IN ACCESS EXCLUSIVE MODE")  # the REFRESH reads slot
        first = threading.Thread(target=lambda: results.__setitem__("first", refresh_views()))
        first.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            held = watcher.run("SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
                               " WHERE l.locktype = 'advisory' AND l.objid = :id AND l.granted"
                               " AND d.datname = current_database()", id=_lock_id())[0][0]
            if held:
                break
            time.sleep(0.01)
        second = threading.Thread(target=lambda: results.__setitem__("second", refresh_views()))
        second.start()
        second.join(5)
        assert results["second"]["status"] == "skipped"
        assert "first" not in results
    finally:
        blocker.run("ROLLBACK")
        blocker.close()
        watcher.close()
    first.join(30)
    assert results["first"]["status"] == "ok"

    # And unsynchronised: whatever the interleaving, never two refreshes at once.
    barrier = threading.Barrier(2)
    statuses: list[str] = []

    def run() -> None:
        barrier.wait()
        statuses.append(refresh_views()["status"])

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(statuses) in (["ok", "ok"], ["ok", "skipped"])


def test_failed_refresh_is_recorded(app_env, monkeypatch, capfd):
    from chalicelib.jobs import refresh

    monkeypatch.setattr(refresh, "VIEWS", ("dashboard_daily", "no_such_view"))
    result = refresh.refresh_views()
    assert result["status"] == "failed" and "42P01" in result["error"]
    row = app_env.sql("SELECT status, detail FROM view_refresh WHERE view_name = 'no_such_view'")[0]
    assert row[0] == "failed" and "42P01" in row[1]
    assert '"RefreshFailures"' in capfd.readouterr().out
    app_env.sql("DELETE FROM view_refresh WHERE view_name = 'no_such_view'")


def _add_big_tenant(app_env, doctors: int = 200) -> int:
    """A tenant with `doctors` doctors and a slot every 10 minutes over the view's window."""
    conn = database_connection(app_env.db_name)
    try:
        conn.run("SET statement_timeout = 0")
        conn.run("INSERT INTO tenant (id, name, time_zone) VALUES (:t, 'Load Test', 'UTC')", t=BIG_TENANT)
        conn.run("INSERT INTO department (tenant_id, id, name) SELECT :t, 900000 + g, 'Dep ' || g"
                 " FROM generate_series(1, 10) g", t=BIG_TENANT)
    finally:
        conn.close()
    return _add_big_tenant_doctors(app_env, 0, doctors)


def _add_big_tenant_doctors(app_env, first: int, doctors: int) -> int:
    """`doctors` more doctors of the big tenant (ids after `first`), each with a slot every
    10 minutes over the view's window; the tenant's slot count."""
    conn = database_connection(app_env.db_name)
    try:
        conn.run("SET statement_timeout = 0")
        conn.run("INSERT INTO doctor (tenant_id, id, department_id, name, specialty)"
                 " SELECT :t, 900000 + g, 900000 + (g % 10) + 1, 'Dr ' || g, 'x'"
                 " FROM generate_series(:first + 1, :first + :n) g", t=BIG_TENANT, first=first, n=doctors)
        conn.run("""INSERT INTO slot (tenant_id, doctor_id, department_id, day, starts_at, ends_at)
                    SELECT :t, d.id, d.department_id, s::date, s, s + interval '10 minutes'
                    FROM doctor d CROSS JOIN generate_series(date_trunc('day', now()) - interval '1 day',
                         date_trunc('day', now()) + interval '9 days' - interval '10 minutes',
                         interval '10 minutes') s
                    WHERE d.tenant_id = :t AND d.id > 900000 + :first""", t=BIG_TENANT, first=first)
        return conn.run("SELECT count(*) FROM slot WHERE tenant_id = :t", t=BIG_TENANT)[0][0]
    finally:
        conn.close()


def _drop_big_tenant(app_env) -> None:
    for table in ("slot", "doctor", "department"):
        app_env.sql(f"DELETE FROM {table} WHERE tenant_id = :t", t=BIG_TENANT)
    app_env.sql("DELETE FROM tenant WHERE id = :t", t=BIG_TENANT)


_VIEW_READ = ("SELECT day, sum(slots), sum(total), sum(booked), max(refreshed_at) FROM dashboard_daily"
              " WHERE tenant_id = :t GROUP BY day ORDER BY day")


def _read_view_in_loop(app_env, tenants, during) -> tuple[list[float], list[int]]:
    """Reader threads (own connections, warmed up first) querying the view until `during()`
    returns; every query's time and each thread's query count."""
    stop = threading.Event()
    ready = threading.Barrier(len(tenants) + 1)
    waits: list[float] = []
    counts: list[int] = []

    def reader(tenant: int) -> None:
        conn = database_connection(app_env.db_name)
        n, times = 0, []
        try:
            conn.run("SET application_name = 'jobs-test-reader'")
            conn.run(_VIEW_READ, t=tenant)
            ready.wait()
            while not stop.is_set():
                t0 = time.perf_counter()
                assert conn.run(_VIEW_READ, t=tenant)
                times.append(time.perf_counter() - t0)
                n += 1
        finally:
            conn.close()
            waits.extend(times)
            counts.append(n)

    threads = [threading.Thread(target=reader, args=(t,)) for t in tenants]
    for t in threads:
        t.start()
    ready.wait()
    time.sleep(0.1)
    try:
        during()
        time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    return waits, counts


def test_readers_do_not_wait_during_refresh(app_env):
    from chalicelib.jobs.refresh import refresh_views

    doctors = 120
    rows = _add_big_tenant(app_env, doctors=doctors)
    try:
        warm = refresh_views()  # the big tenant's rows enter the view
        assert warm["status"] == "ok"
        # The refresh must last long enough to overlap the readers: on a fast machine, grow
        # the tenant until it does (the refresh's time grows with its rows).
        while warm["views"]["dashboard_daily"] < 100 and doctors < 1920:
            rows = _add_big_tenant_doctors(app_env, doctors, doctors)
            doctors *= 2
            warm = refresh_views()
            assert warm["status"] == "ok"
        app_env.sql("INSERT INTO slot (tenant_id, doctor_id, department_id, day, starts_at, ends_at)"
                    " SELECT tenant_id, doctor_id, department_id, day, starts_at + interval '5 minutes',"
                    " ends_at + interval '5 minutes' FROM slot WHERE tenant_id = :t AND doctor_id % 2 = 0",
                    t=BIG_TENANT)  # so the refresh has a real diff to apply
        tenants = (1, BIG_TENANT, 2)
        # The same readers without a refresh, about as long: this machine's own noise.
        idle_s = max(0.5, warm["views"]["dashboard_daily"] / 1000)
        idle_waits, _ = _read_view_in_loop(app_env, tenants, lambda: time.sleep(idle_s))
        results: list[dict] = []
        lock_waits: list[int] = []
        seen_events: set[str] = set()

        def refresh_while_sampling() -> None:
            """Refresh; meanwhile sample whether any reader backend waits on a lock."""
            done = threading.Event()

            def sample() -> None:
                watcher = database_connection(app_env.db_name)
                try:
                    while not done.is_set():
                        events = watcher.run(
                            "SELECT wait_event_type || ':' || wait_event FROM pg_stat_activity"
                            " WHERE application_name = 'jobs-test-reader' AND state = 'active'"
                            " AND wait_event_type IS NOT NULL")
                        seen_events.update(e for (e,) in events)
                        lock_waits.append(sum(e.startswith("Lock:") for (e,) in events))
                finally:
                    watcher.close()

            sampler = threading.Thread(target=sample)
            sampler.start()
            try:
                results.append(refresh_views())
            finally:
                done.set()
                sampler.join(10)

        waits, counts = _read_view_in_loop(app_env, tenants, refresh_while_sampling)
        assert results[0]["status"] == "ok"
        ms = results[0]["views"]["dashboard_daily"]
        waits.sort()
        p99 = waits[int(0.99 * (len(waits) - 1))]
        print(f"\nrefresh over {rows} extra slots: {ms:.0f} ms; {len(waits)} reader queries during it,"
              f" p99 {p99 * 1000:.1f} ms, max {waits[-1] * 1000:.1f} ms (idle max {max(idle_waits) * 1000:.1f} ms);"
              f" {len(lock_waits)} wait samples, reader wait events: {sorted(seen_events) or 'none'};"
              f" load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        assert ms > 100, "the refresh was too quick to overlap the readers"
        assert min(counts) > 5
        # Server side, readers never wait on a heavyweight lock (only ClientRead, the client's
        # own pace, and momentary LWLocks): the refresh does not block them.
        assert len(lock_waits) > 5 and not any(lock_waits), "a reader waited on a lock held by the refresh"
        # Client side, without a fixed time bound (this machine's scheduling noise reaches
        # 100 ms under load): a reader blocked by the refresh would wait about as long as the
        # refresh itself, so no reader query may take that long.
        assert waits[-1] < ms / 1000, f"a reader waited {waits[-1] * 1000:.1f} ms, as long as the refresh"
    finally:
        _drop_big_tenant(app_env)
        refresh_views()


def test_new_process_reads_prewarmed_dashboard_with_the_booking(client, app_env):
    headers = app_env.headers(role="staff")
    # upcoming7d moves by a whole day at the tenant's midnight; and the free slot (found, or
    # freed in SQL) is settled before the first refresh counts.
    wait_clear_of_local_midnight(app_env.sql, margin_s=120)
    slot, day = free_slot_in_upcoming_week(app_env.sql, 1)
    assert _scheduled(client, "refresh_views")["status"] == "ok"
    before = client.http.get("/api/dashboard/stats?clientId=1", headers=headers).json_body
    booked = client.http.post("/api/appointments", headers={**headers, "Content-Type": "application/json"},
                              body=json.dumps({"clientId": 1, "slotId": slot, "patientId": new_patient(app_env.sql)}))
    assert booked.status_code == 201, booked.body
    assert _scheduled(client, "refresh_views")["status"] == "ok"

    script = (
        "import json, os, sys\n"
        f"sys.path.insert(0, {ROOT!r})\n"
        "from chalice.test import Client\n"
        "import app as m\n"
        f"with Client(m.app, stage_name='dev', project_dir={ROOT!r}) as c:\n"
        "    r = c.http.get('/api/dashboard/stats?clientId=1', headers={'Authorization': os.environ['T_AUTH']})\n"
        "    print('RESULT ' + json.dumps({'status': r.status_code, 'cache': r.headers.get('X-Cache'),"
        " 'body': r.json_body}))\n")
    env = {**os.environ, "T_AUTH": headers["Authorization"]}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stdout + done.stderr
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["status"] == 200 and result["cache"] == "L2", result
    assert result["body"]["upcoming7d"] == before["upcoming7d"] + 1, (day, before, result["body"])


def test_slot_extension_is_idempotent(client, app_env):
    wait_clear_of_local_midnight(app_env.sql, margin_s=30)  # a new local day would add slots between runs
    first = _scheduled(client, "extend_slots")
    second = _scheduled(client, "extend_slots")
    assert set(first) == {"inserted", "idempotencyKeysPurged"} and first["inserted"] >= 0
    assert second == {"inserted": 0, "idempotencyKeysPurged": 0}
    app_env.sql("DELETE FROM slot s WHERE s.day = (SELECT max(day) FROM slot WHERE tenant_id = 1)"
                " AND s.tenant_id = 1 AND NOT EXISTS (SELECT 1 FROM appointment a"
                " WHERE a.tenant_id = s.tenant_id AND a.slot_id = s.id)")
    assert _scheduled(client, "extend_slots")["inserted"] > 0
    assert _scheduled(client, "extend_slots") == {"inserted": 0, "idempotencyKeysPurged": 0}


def test_local_scheduler_invokes_handler_with_scheduled_event(client, app_env, monkeypatch):
    import app as app_module
    from chalicelib.local_server import LocalScheduler

    seen: list = []
    handler = app_module.extend_slots  # the Chalice scheduled-event handler

    def capture(event, context):
        seen.append((event, context))
        return handler(event, context)

    wait_clear_of_local_midnight(app_env.sql, margin_s=30)
    _scheduled(client, "extend_slots")  # up to date even if a tenant's day changed since the seed
    monkeypatch.setattr(app_module, "extend_slots", capture)
    scheduler = LocalScheduler(app_module.app, {"extend_slots": 3600.0})
    assert scheduler.invoke("extend_slots") == {"inserted": 0, "idempotencyKeysPurged": 0}
    event, context = seen[0]
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
    assert event["resources"][0].endswith("rule/extend_slots") and event["time"].endswith("Z")
    assert context.aws_request_id and context.function_name == "extend_slots"
    # The thread itself: first run at start.
    scheduler.start()
    deadline = time.monotonic() + 5
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    scheduler.stopped.set()
    scheduler.join(5)
    assert len(seen) >= 2


def test_api_cache_metrics_are_emitted_as_deltas(client, app_env, capfd):
    from chalicelib import runtime

    headers = app_env.headers()
    container = runtime.current()
    container.metrics.flush(container.cache)
    capfd.readouterr()
    for _ in range(3):
        client.http.get("/api/departments?clientId=1", headers=headers)
    emitted = container.metrics.flush(container.cache)
    assert emitted["L1Hits"][1] + emitted["L2Hits"][1] + emitted["DbLoads"][1] >= 3
    blob = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith('{"_aws"')][-1]
    assert blob["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "HospitalBooking"
    assert container.metrics.flush(container.cache) == {}  # nothing new since


def test_request_scope_sets_request_id_and_flushes_on_interval(client, app_env, capfd, log_lines):
    from chalicelib.observability import RequestScope, logger

    headers = app_env.headers()
    client.http.get("/api/departments?clientId=1", headers=headers)  # something to report
    scope = RequestScope(flush_interval=0)  # METRICS_FLUSH_INTERVAL=0: every invocation
    scope.cold = True
    capfd.readouterr()

    class Context:
        aws_request_id = "req-123"

    scope.enter(Context())
    try:
        logger.info("inside")
        client.http.get("/api/departments?clientId=1", headers=headers)
    finally:
        scope.exit()
    logger.info("outside")
    lines = capfd.readouterr().out.splitlines()
    inside = next(line for line in log_lines() if line["message"] == "inside")
    outside = next(line for line in log_lines() if line["message"] == "outside")
    assert inside["request_id"] == "req-123" and inside["cold_start"] is True
    assert "request_id" not in outside and outside["cold_start"] is False
    assert any(line.startswith('{"_aws"') and '"L1Hits"' in line for line in lines)

def test_live_dashboard_equals_the_view_after_a_refresh(client, app_env):
    """`dashboard_live` (the before/after benchmark's "before") computes the same document as
    the materialized view, over the same days, just without the view."""
    from chalicelib.booking import queries
    from chalicelib.booking.read_source import primary_fill

    wait_clear_of_local_midnight(app_env.sql, margin_s=30)  # the view and the live query share "today"
    assert _scheduled(client, "refresh_views")["status"] == "ok"
    for tenant in (1, 2):
        live = json.loads(queries.dashboard_live(tenant))
        view = json.loads(queries.dashboard(primary_fill(), tenant))
        live.pop("asOf"), view.pop("asOf")
        assert live == view and view["byDepartment"]
