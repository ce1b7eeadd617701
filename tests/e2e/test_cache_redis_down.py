"""Redis outage, with a private redis-server that the test kills (SIGKILL) and restarts:
the API keeps answering from L1 and PostgreSQL, a dead Redis costs at most about one
failed call per breaker cool-down, booking-critical L1 copies expire after the untracked
maximum age, and after the restart the still-running app fills L2 again by itself (a
second, fresh process then reads that entry from L2)."""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import time

import pytest
from chalice.test import Client

from chalicelib.audit.actor import Actor
from chalicelib.booking import commands, scopes
from chalicelib.booking.caching import get_cache
from chalicelib.booking.models import BookingBody
from support.redis_servers import PrivateRedis
from tests.data_finders import new_patient
from tests.helpers_servers import PROJECT_DIR, fetch_in_fresh_process, free_future_slots, patched_environ

CONNECT_TIMEOUT = 0.05
READ_TIMEOUT = 0.05
COOLDOWN = 1.0
FAILURES = 3
UNTRACKED_MAX_AGE = 0.5


@pytest.fixture()
def private_redis():
    server = PrivateRedis().start()
    try:
        yield server
    finally:
        server.kill()


def _groups(app_env, count: int, per_group: int) -> list[tuple[int, str, list[int]]]:
    """`count` (doctor, day) groups with `per_group` free slots each."""
    groups: dict[tuple[int, str], list[int]] = {}
    for slot, doctor, day in free_future_slots(app_env, limit=100000, min_per_group=per_group):
        groups.setdefault((doctor, day), []).append(slot)
    picked = [(doctor, day, slots[:per_group]) for (doctor, day), slots in groups.items()][:count]
    assert len(picked) == count
    return picked


def _slot_ids(resp) -> list[int]:
    return [s["slotId"] for s in json.loads(resp.body)["slots"]]


def test_redis_outage_and_recovery(app_env, private_redis):
    import app as app_module

    env = {"REDIS_URL": private_redis.url, "REDIS_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT),
           "REDIS_READ_TIMEOUT": str(READ_TIMEOUT), "REDIS_BREAKER_COOLDOWN": str(COOLDOWN),
           "REDIS_BREAKER_FAILURES": str(FAILURES), "CACHE_L1_MAX_AGE_UNTRACKED": str(UNTRACKED_MAX_AGE)}
    (doc_a, day_a, slots_a), (doc_b, day_b, slots_b) = _groups(app_env, 2, 4)
    headers = app_env.headers(role="staff")
    post_headers = {**headers, "Content-Type": "application/json"}
    dep_path = "/api/departments?clientId=1"
    slots_a_path = f"/api/slots/available?clientId=1&date={day_a}&doctorId={doc_a}"
    slots_b_path = f"/api/slots/available?clientId=1&date={day_b}&doctorId={doc_b}"

    with patched_environ(env), Client(app_module.app, stage_name="dev", project_dir=PROJECT_DIR) as client:
        def get(path: str):
            resp = client.http.get(path, headers=headers)
            assert resp.status_code == 200, resp.body
            return resp

        def book(slot: int):
            resp = client.http.post("/api/appointments", headers=post_headers,
                                    body=json.dumps({"clientId": 1, "slotId": slot,
                                                     "patientId": new_patient(app_env.sql)}))
            assert resp.status_code == 201, resp.body
            return json.loads(resp.body)["appointment"]

        cache = get_cache()
        assert cache.l2 is not None and cache.settings.redis.port == private_redis.port

        # Redis up: warm, and time N L1 reads.
        for path in (dep_path, slots_a_path, slots_b_path):
            sources = [get(path).headers["X-Cache"] for _ in range(4)]
            assert sources[0] == "DB" and sources[-1] == "L1", sources
        health = json.loads(client.http.get("/api/health").body)
        assert health["redis"] == "ok", health
        n_reads = 200
        t0 = time.perf_counter()
        for _ in range(n_reads):
            assert get(dep_path).headers["X-Cache"] == "L1"
        up_time = time.perf_counter() - t0

        # Kill Redis mid-run: reads keep answering, bookings keep committing.
        booked_while_down: list[int] = []
        for i in range(30):
            if i == 10:
                private_redis.kill()
            get(dep_path)
            after = _slot_ids(get(slots_b_path))
            for slot in booked_while_down:
                assert slot not in after, "this container's own booking must show at once"
            if i in (12, 20):
                booked_while_down.append(book(slots_b[len(booked_while_down)])["slotId"])
                assert booked_while_down[-1] not in _slot_ids(get(slots_b_path))
        health_resp = client.http.get("/api/health")
        health = json.loads(health_resp.body)
        assert health_resp.status_code == 200
        assert health["redis"] == "down" and health["db"] == "ok" and health["status"] == "degraded", health
        assert not cache.l2.available

        # Redis down: the cost of N reads is bounded by the breaker, not by N timeouts.
        time.sleep(COOLDOWN * 1.1)  # start in half-open: the first read pays a probe
        errors_before = cache.l2.stats.errors
        t0 = time.perf_counter()
        for _ in range(n_reads):
            resp = get(dep_path)
            assert resp.headers["X-Cache"] in ("L1", "DB")
        down_time = time.perf_counter() - t0
        errors = cache.l2.stats.errors - errors_before
        windows = math.ceil(down_time / COOLDOWN) + 1
        assert errors <= windows, (errors, windows, down_time)
        per_failure = CONNECT_TIMEOUT + READ_TIMEOUT
        # L2 probes plus tracking-connection attempts (one each per cool-down).
        budget = 2 * up_time + windows * 2 * per_failure + 1.0
        assert down_time <= budget, (down_time, up_time, budget)
        assert n_reads * per_failure > budget, "the bound must be tighter than one timeout per read"

        # Booking-critical L1 copies are served only for CACHE_L1_MAX_AGE_UNTRACKED while
        # Redis is down (another container's write cannot reach us).
        for _ in range(10):
            loaded = get(slots_a_path)
            loaded_at = time.monotonic()
            if loaded.headers["X-Cache"] == "DB":
                break
            time.sleep(UNTRACKED_MAX_AGE / 2)
        assert loaded.headers["X-Cache"] == "DB"
        again = get(slots_a_path)
        if time.monotonic() - loaded_at < UNTRACKED_MAX_AGE * 0.8:
            assert again.headers["X-Cache"] == "L1", "young critical entries are still served from L1"
        elsewhere = slots_a[0]
        assert elsewhere in _slot_ids(again)
        body = BookingBody(clientId=1, slotId=elsewhere, patientId=new_patient(app_env.sql))
        result = commands.book(body, Actor("test", "staff", "test", 1))
        assert result.status == 201  # committed; no invalidation reaches this container
        time.sleep(UNTRACKED_MAX_AGE + 0.15)
        late = get(slots_a_path)
        assert late.headers["X-Cache"] == "DB", late.headers
        assert elsewhere not in _slot_ids(late)
        # Non-critical entries are not bound by that age.
        assert get(dep_path).headers["X-Cache"] == "L1"

        # Restart Redis on the same port: the running app's L2 comes back by itself.
        private_redis.start()
        redis_client = private_redis.client()
        key = cache.keys.key(1, "slots", f"{day_a}:dep=:doc={doc_a}",
                             (scopes.slots_scope(dt.date.fromisoformat(day_a), doc_a),))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            body = get(slots_a_path).body.decode()
            if redis_client.exists(key.body):
                break
            time.sleep(0.1)
        assert redis_client.exists(key.body), "the first app never stored into the restarted Redis"
        assert json.loads(client.http.get("/api/health").body)["redis"] == "ok"
        # Bookings recorded in the outbox while Redis was down were replayed on recovery.
        assert app_env.sql("SELECT count(*) FROM cache_invalidation_outbox")[0][0] == 0
        for slot in booked_while_down:
            assert slot not in _slot_ids(get(slots_b_path))

        second = fetch_in_fresh_process(slots_a_path, app_env.token(role="staff"), dict(os.environ))
        assert second["status"] == 200, second
        assert second["headers"]["X-Cache"] == "L2", second["headers"]
        assert json.loads(second["body"]) == json.loads(body)
        assert elsewhere not in [s["slotId"] for s in json.loads(second["body"])["slots"]]
