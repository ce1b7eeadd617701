"""PostgreSQL outage: the app reaches the database through a TCP proxy owned by the test;
cutting the proxy (listener and every connection) makes the database unreachable.
Expired cached answers are served as STALE, uncached reads and bookings answer 503 in the
API's JSON error shape, and the failed loads write nothing to L1 or L2."""
from __future__ import annotations

import json
import time

import redis
from chalice.test import Client

from chalicelib.booking.caching import get_cache
from tests.helpers_servers import PROJECT_DIR, database_proxy_env, free_future_slots, patched_environ

SHORT_TTL = 0.2


def _assert_unavailable(resp) -> None:
    assert resp.status_code == 503, resp.body
    assert resp.headers["Content-Type"].startswith("application/json")
    body = json.loads(resp.body)
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == "unavailable"
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in resp.body.decode()


def _snapshot(r: redis.Redis, namespace: str) -> dict[bytes, bytes]:
    """Every body and version key of the namespace with its value."""
    keys = [k for k in r.scan_iter(match=f"{namespace}:*", count=1000) if b":l:" not in k]
    return dict(zip(keys, r.mget(keys))) if keys else {}


def test_database_outage(app_env):
    import app as app_module

    proxy, proxied = database_proxy_env(app_env.env)
    env = {"DATABASE_URL": proxied["DATABASE_URL"], "CACHE_TTL_DEPARTMENTS": str(SHORT_TTL),
           "CACHE_TTL_DOCTORS": str(SHORT_TTL)}
    headers = app_env.headers(role="staff")
    slot, doctor, day = free_future_slots(app_env, limit=1)[0]
    r = redis.Redis.from_url(app_env.env["REDIS_URL"])
    try:
        with patched_environ(env), Client(app_module.app, stage_name="dev", project_dir=PROJECT_DIR) as client:
            def get(path: str, **extra: str):
                return client.http.get(path, headers={**headers, **extra})

            cache = get_cache()
            assert cache.settings.db.port == proxy.port
            dep_path = "/api/departments?clientId=1"
            doctors_path = "/api/doctors?clientId=1"
            warm = {}
            for path in (dep_path, doctors_path):
                resp = get(path)
                assert resp.status_code == 200 and resp.headers["X-Cache"] == "DB", resp.body
                warm[path] = resp
            time.sleep(SHORT_TTL * 1.5)  # freshness expired; the stale copies remain

            proxy.cut()
            l1_before = cache.l1.snapshot()
            l2_before = _snapshot(r, app_env.namespace)

            for path in (dep_path, doctors_path):
                for _ in range(2):
                    stale = get(path)
                    assert stale.status_code == 200, stale.body
                    assert stale.headers["X-Cache"] == "STALE"
                    assert stale.body == warm[path].body
                    assert stale.headers["ETag"] == warm[path].headers["ETag"]
                    assert stale.headers["Cache-Control"] == "private, max-age=0"
                    assert 'cache;desc="STALE"' in stale.headers["Server-Timing"]
            conditional = get(dep_path, **{"If-None-Match": warm[dep_path].headers["ETag"]})
            assert conditional.status_code == 304

            for path in (f"/api/slots/available?clientId=1&date={day}&doctorId={doctor}",
                         f"/api/appointments/list?clientId=1&date={day}",
                         "/api/patients?clientId=1&q=a",
                         "/api/departments?clientId=2"):
                uncached = client.http.get(path, headers=app_env.headers(
                    tenant=2 if path.endswith("clientId=2") else 1, role="staff"))
                _assert_unavailable(uncached)
                assert "X-Cache" not in uncached.headers

            booking = client.http.post("/api/appointments", headers={**headers, "Content-Type": "application/json"},
                                       body=json.dumps({"clientId": 1, "slotId": slot, "patientId": 1}))
            _assert_unavailable(booking)
            cancel = client.http.post("/api/appointments/1/cancel",
                                      headers={**headers, "Content-Type": "application/json"},
                                      body=json.dumps({"clientId": 1}))
            _assert_unavailable(cancel)

            health = client.http.get("/api/health")
            assert health.status_code == 503
            assert json.loads(health.body)["db"] == "down"

            # Nothing written by the failed loads: L1 holds the same entries (same objects),
            # L2 holds no new body and every existing key is unchanged.
            l1_after = cache.l1.snapshot()
            assert l1_after.keys() == l1_before.keys()
            assert all(l1_after[k] is v for k, v in l1_before.items())
            l2_after = _snapshot(r, app_env.namespace)
            assert {k: v for k, v in l2_after.items() if k in l2_before} == l2_before
            assert not [k for k in l2_after if b":b:" in k and k not in l2_before], l2_after.keys()
            assert r.keys(f"{app_env.namespace}:l:*") == [], "loader locks are released"
            assert cache.stats.db.errors >= 4
    finally:
        proxy.cut()

    # Nothing half-written: the refused booking did not reach the database.
    assert app_env.sql("SELECT count(*) FROM appointment WHERE tenant_id = 1 AND slot_id = :s "
                       "AND status <> 'cancelled'", s=slot)[0][0] == 0
