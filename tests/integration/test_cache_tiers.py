"""The three tiers in one container (in-process Chalice client, real Redis and PostgreSQL):
DB -> L1 -> (L1 cleared) L2, the API.md cache headers, 304s, tenant isolation of keys, and
the reader-loads-before-write race closed by version keys."""
from __future__ import annotations

import json
import re
import threading

import redis

from chalicelib.booking import queries, scopes
from chalicelib.booking.caching import get_cache
from chalicelib.booking.models import SlotsQuery, parse
from chalicelib.cache.entry import Entry
from tests.data_finders import new_patient
from tests.helpers_servers import free_future_slots

TIMING = re.compile(r'^cache;desc="(L1|L2|DB|STALE)";dur=\d+(\.\d+)?(, db;dur=\d+(\.\d+)?)?$')


def _redis(app_env):
    return redis.Redis.from_url(app_env.env["REDIS_URL"])


def _check_headers(resp, source: str, max_age_limit: float) -> None:
    assert resp.headers["X-Cache"] == source, resp.headers
    timing = resp.headers["Server-Timing"]
    assert TIMING.match(timing), timing
    assert f'desc="{source}"' in timing
    assert ("db;dur=" in timing) == (source == "DB"), timing
    assert re.fullmatch(r'"[0-9a-f]{20}"', resp.headers["ETag"]), resp.headers["ETag"]
    cc = resp.headers["Cache-Control"]
    m = re.fullmatch(r"private, max-age=(\d+)", cc)
    assert m, cc
    assert 0 <= int(m.group(1)) <= max_age_limit


def test_db_then_l1_then_l2_with_headers_and_304(client, app_env):
    headers = app_env.headers()
    departments = client.http.get("/api/departments?clientId=1", headers=headers).json_body["departments"]
    dep = departments[0]["id"]
    path = f"/api/doctors?clientId=1&departmentId={dep}"
    policy_s = get_cache().policy("doctors").fresh_s

    first = client.http.get(path, headers=headers)
    assert first.status_code == 200, first.body
    _check_headers(first, "DB", policy_s)
    assert json.loads(first.body)["doctors"], "the department has doctors"

    # The first read created the version key, whose tracking push may make the next read
    # consult L2 once; within three reads L1 answers.
    sources = []
    for _ in range(3):
        again = client.http.get(path, headers=headers)
        assert again.status_code == 200
        assert again.body == first.body
        assert again.headers["ETag"] == first.headers["ETag"]
        sources.append(again.headers["X-Cache"])
        if sources[-1] == "L1":
            break
    assert sources[-1] == "L1", sources
    assert set(sources) <= {"L1", "L2"}, sources
    _check_headers(again, "L1", policy_s)

    get_cache().clear_l1()
    from_l2 = client.http.get(path, headers=headers)
    assert from_l2.status_code == 200
    _check_headers(from_l2, "L2", policy_s)
    assert from_l2.body == first.body
    assert from_l2.headers["ETag"] == first.headers["ETag"]
    # L2 refilled L1.
    assert client.http.get(path, headers=headers).headers["X-Cache"] == "L1"

    not_modified = client.http.get(path, headers={**headers, "If-None-Match": first.headers["ETag"]})
    assert not_modified.status_code == 304
    assert not not_modified.body
    assert not_modified.headers["ETag"] == first.headers["ETag"]
    # A list of tags that contains the current one also matches; another tag does not.
    listed = client.http.get(path, headers={**headers, "If-None-Match": f'"0000", {first.headers["ETag"]}'})
    assert listed.status_code == 304
    other = client.http.get(path, headers={**headers, "If-None-Match": '"00000000000000000000"'})
    assert other.status_code == 200 and other.body == first.body


def test_tenants_never_share_an_entry(client, app_env):
    one = client.http.get("/api/departments?clientId=1", headers=app_env.headers(tenant=1))
    two = client.http.get("/api/departments?clientId=2", headers=app_env.headers(tenant=2))
    assert one.status_code == two.status_code == 200
    assert two.headers["X-Cache"] == "DB", "tenant 2 must not be answered from tenant 1's entry"
    assert one.body != two.body
    assert json.loads(one.body)["clientId"] == 1 and json.loads(two.body)["clientId"] == 2
    assert one.headers["ETag"] != two.headers["ETag"]
    # Cross-tenant reads are refused, not served from a cache.
    assert client.http.get("/api/departments?clientId=2", headers=app_env.headers(tenant=1)).status_code == 403

    r = _redis(app_env)
    ns = app_env.namespace
    body_keys = {k.decode() for k in r.scan_iter(match=f"{ns}:b:*departments*", count=1000)}
    t1 = [k for k in body_keys if "{t1}" in k]
    t2 = [k for k in body_keys if "{t2}" in k]
    assert t1 and t2, body_keys
    assert not set(t1) & set(t2)
    assert Entry.decode(r.get(t1[0])).body == one.body.decode()
    assert Entry.decode(r.get(t2[0])).body == two.body.decode()
    # Each entry depends on its own tenant's version keys only.
    assert all("{t1}" in k for k, _ in Entry.decode(r.get(t1[0])).versions)
    assert all("{t2}" in k for k, _ in Entry.decode(r.get(t2[0])).versions)


def test_reader_with_pre_write_data_cannot_poison_the_cache(client, app_env):
    headers = app_env.headers(role="staff")
    slot, doctor, day = free_future_slots(app_env, limit=1, min_per_group=2)[0]
    params = {"clientId": "1", "date": day, "doctorId": str(doctor)}
    path = f"/api/slots/available?clientId=1&date={day}&doctorId={doctor}"
    cache = get_cache()
    q = parse(SlotsQuery, params)
    # The same key the route builds.
    key = cache.keys.key(1, "slots", f"{q.date}:dep=:doc={doctor}", (scopes.slots_scope(q.date, doctor),))

    loaded, proceed = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def slow_loader(fill):
        body = queries.free_slots(fill, q)  # pre-write data, from the database
        loaded.set()
        assert proceed.wait(10)
        return body

    def reader():
        try:
            outcome["result"] = cache.get_or_load(key, slow_loader, cache.policy("slots"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome["error"] = exc

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        assert loaded.wait(10), "the reader's loader never ran"
        booked = client.http.post("/api/appointments", headers={**headers, "Content-Type": "application/json"},
                                  body=json.dumps({"clientId": 1, "slotId": slot,
                                                   "patientId": new_patient(app_env.sql)}))
        assert booked.status_code == 201, booked.body
    finally:
        proceed.set()
        thread.join(10)
    assert "error" not in outcome, outcome
    stale = outcome["result"]
    assert stale.source == "DB"
    assert slot in [s["slotId"] for s in json.loads(stale.entry.body)["slots"]], "the reader saw pre-write data"

    # The reader stored its value after the bump: no later read may serve it.
    for _ in range(3):
        after = client.http.get(path, headers=headers)
        assert after.status_code == 200
        assert slot not in [s["slotId"] for s in after.json_body["slots"]], after.headers["X-Cache"]
    r = _redis(app_env)
    raw = r.get(key.body)
    if raw is not None:
        assert slot not in [s["slotId"] for s in json.loads(Entry.decode(raw).body)["slots"]]


def test_remembered_l1_verdict_is_dropped_when_another_container_writes(client, app_env):
    """Repeated L1 hits skip the version check while nothing was invalidated; a version bump
    by another container (here: a direct SET, as its MSET would) ends that at once."""
    headers = app_env.headers()
    url = "/api/departments?clientId=1"
    sources = [client.http.get(url, headers=headers).headers["X-Cache"] for _ in range(4)]
    assert sources[-2:] == ["L1", "L1"], sources
    cache = get_cache()
    epoch = cache.coherence.epoch
    _redis(app_env).set(cache.keys.version(1, scopes.CATALOG), "bumped-by-another-container")
    after = client.http.get(url, headers=headers)
    assert after.status_code == 200
    assert after.headers["X-Cache"] in ("L2", "DB"), after.headers
    assert cache.coherence.epoch > epoch
    assert client.http.get(url, headers=headers).headers["X-Cache"] == "L1"
