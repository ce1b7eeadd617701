"""Read replicas, on a real streaming replica (support/replica.py) and two API server
processes sharing Redis: no fill stores pre-write rows under post-write versions.

1. Replay paused while bookings go on: no read on either process shows the pre-write
   state, no entry stored under the current versions holds it, every read answers within
   the wait bound (plus slack), and every fill asked the replica (its transaction count)
   and then read the primary (the answer's Server-Timing `dbsrc`).
2. Replay resumed: fills read the replica again (`dbsrc`, and a replica transaction per
   fill in its own pg_stat_database).
3. The replica stopped: reads and writes answer from the primary; health says so.
"""
from __future__ import annotations

import json
import os
import re
import time
from typing import Any, Iterator

import pytest
import redis

from chalicelib.auth import issue_token
from chalicelib.cache.entry import Entry
from support.namespaces import delete_namespace, new_namespace
from support.replica import PrimaryAndReplica
from tests.conftest import TEST_AUTH_SECRET
from tests.data_finders import new_patients
from tests.helpers_servers import KeepAlive, running_servers

WAIT_MS = 50
ROUNDS = 8
SLACK_S = 1.0  # a loaded 2-core machine; the point is "bounded", not a benchmark
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="module")
def pair() -> Iterator[PrimaryAndReplica]:
    servers = PrimaryAndReplica()
    try:
        servers.start()
        yield servers
    finally:
        servers.close()


@pytest.fixture(scope="module")
def env(pair: PrimaryAndReplica) -> Iterator[dict[str, str]]:
    assert pair.primary is not None and pair.replica is not None
    namespace = new_namespace("hbr")
    yield {"DATABASE_URL": pair.primary.url(), "DATABASE_READ_URL": pair.replica.url(),
           "REDIS_URL": REDIS_URL, "AUTH_SECRET": TEST_AUTH_SECRET, "CACHE_NAMESPACE": namespace,
           "DB_REPLICA_WAIT_MS": str(WAIT_MS), "DB_REPLICA_COOLDOWN": "1"}
    delete_namespace(namespace)


@pytest.fixture(scope="module")
def clients(env: dict[str, str]) -> Iterator[tuple[KeepAlive, KeepAlive]]:
    headers = {"Authorization": f"Bearer {issue_token(TEST_AUTH_SECRET, 1, 'staff', ttl_s=3600)}"}
    with running_servers(env, 2) as (a_server, b_server):
        a, b = KeepAlive(a_server.port, headers), KeepAlive(b_server.port, headers)
        try:
            yield a, b
        finally:
            a.close()
            b.close()


@pytest.fixture(scope="module")
def plan(pair: PrimaryAndReplica) -> Iterator[list[tuple[int, int, str, int]]]:
    """(slot, doctor, day, patient) of free future slots, each (doctor, day) once, and a
    patient of its own (no overlap, no cap): for every booking of the module."""
    assert pair.primary is not None
    sql = pair.primary.sql
    rows = sql("""SELECT DISTINCT ON (s.doctor_id, s.day) s.id, s.doctor_id, s.day::text FROM slot s
                  WHERE s.tenant_id = 1 AND s.starts_at > now() + interval '3 hours'
                    AND NOT EXISTS (SELECT 1 FROM appointment a WHERE a.tenant_id = 1 AND a.slot_id = s.id
                                    AND a.status <> 'cancelled')
                  ORDER BY s.doctor_id, s.day, s.starts_at LIMIT :n""", n=3 * ROUNDS)
    patients = new_patients(lambda q, **p: sql(q, **p), count=len(rows))
    pair.wait_caught_up()
    yield [(int(r[0]), int(r[1]), r[2], p) for r, p in zip(rows, patients)]


def _paths(doctor: int, day: str) -> tuple[str, str]:
    return (f"/api/slots/available?clientId=1&date={day}&doctorId={doctor}",
            f"/api/appointments/list?clientId=1&date={day}&doctorId={doctor}&limit=200")


def _timed_get(client: KeepAlive, path: str) -> tuple[dict[str, str], Any, float]:
    started = time.perf_counter()
    status, headers, data = client.request("GET", path)
    elapsed = time.perf_counter() - started
    assert status == 200, data
    return headers, json.loads(data), elapsed


def _book(client: KeepAlive, slot: int, patient: int) -> int:
    status, _, raw = client.request("POST", "/api/appointments",
                                    body={"clientId": 1, "slotId": slot, "patientId": patient})
    assert status == 201, raw
    return int(json.loads(raw)["appointment"]["id"])


def _source(headers: dict[str, str]) -> str:
    """X-Cache, and for a fill the server it read (Server-Timing `dbsrc`): "DB:replica"."""
    found = re.search(r'dbsrc;desc="(\w+)"', headers["server-timing"])
    return headers["x-cache"] + (":" + found.group(1) if found else "")


def _check_reads(clients: tuple[KeepAlive, KeepAlive], slot: int, doctor: int, day: str, appointment: int,
                 stale: list[str], sources: list[str], slowest: list[float]) -> None:
    slots_path, list_path = _paths(doctor, day)
    for name, client in zip("AB", clients):
        headers, body, elapsed = _timed_get(client, slots_path)
        sources.append(_source(headers))
        slowest.append(elapsed)
        if slot in [s["slotId"] for s in body["slots"]]:
            stale.append(f"{name}: slot {slot} free after its booking ({headers['x-cache']})")
        headers, body, elapsed = _timed_get(client, list_path)
        sources.append(_source(headers))
        slowest.append(elapsed)
        if appointment not in [x["id"] for x in body["appointments"]]:
            stale.append(f"{name}: appointment {appointment} missing from the list ({headers['x-cache']})")


def _current_bodies(namespace: str) -> list[tuple[str, Any]]:
    """(body key, document) of every L2 entry stored under the versions current now."""
    client = redis.Redis.from_url(REDIS_URL)
    out = []
    for key in client.scan_iter(match=f"{namespace}:b:*", count=1000):
        entry = Entry.decode(client.get(key) or b"")
        if entry is None:
            continue
        names = [name for name, _ in entry.versions]
        current = [v.decode() if v else "" for v in client.mget(names)] if names else []
        if current == [value for _, value in entry.versions]:
            out.append((key.decode(), json.loads(entry.body)))
    return out


def _wait_for_transactions(pair: PrimaryAndReplica, before: int, count: int) -> int:
    """The replica's committed transactions of the app's database once at least `count`
    more are counted (backends flush statistics within about a second of going idle), or
    the last reading after 15 s."""
    deadline = time.monotonic() + 15
    while True:
        now = pair.replica_transactions()
        if now - before >= count or time.monotonic() > deadline:
            return now
        time.sleep(0.1)


def test_paused_replay_never_fills_pre_write_state(pair, env, clients, plan) -> None:
    a, b = clients
    rounds = plan[:ROUNDS]
    status, _, health = a.get_json("/api/health")
    assert status == 200 and health["replica"] == "ok" and health["status"] == "ok", health
    for _, doctor, day, _ in rounds:  # both processes hold every answer before the writes
        for path in _paths(doctor, day):
            a.warm(path)
            b.warm(path)
    pair.pause_replay()
    before = pair.replica_transactions()
    stale: list[str] = []
    sources: list[str] = []
    slowest: list[float] = []
    booked: dict[int, tuple[int, str, int]] = {}
    try:
        for slot, doctor, day, patient in rounds:
            appointment = _book(a, slot, patient)
            booked[slot] = (doctor, day, appointment)
            _check_reads(clients, slot, doctor, day, appointment, stale, sources, slowest)
        # The replica really holds the pre-write state: a fill from it would be caught.
        assert pair.replica is not None
        ids = [x[2] for x in booked.values()]
        assert pair.replica.sql("SELECT count(*) FROM appointment WHERE id = ANY(:ids)", ids=ids)[0][0] == 0
        # No entry under the current versions holds it either (what a later reader gets).
        for key, document in _current_bodies(env["CACHE_NAMESPACE"]):
            if ":slots:" in key:
                free = {s["slotId"] for s in document["slots"]}
                assert not free & set(booked), f"{key} lists booked slots as free"
            elif ":appointments:" in key:
                listed = {x["id"] for x in document["appointments"]}
                for slot, (doctor, day, appointment) in booked.items():
                    if f"date={day}" in key and f"doctorId={doctor}:" in key:
                        assert appointment in listed, f"{key} misses appointment {appointment}"
        # Every fill asked the replica (its replay check: a transaction on the replica),
        # found it behind, waited at most the bound, and read the primary.
        fills = [s for s in sources if s.startswith("DB")]
        assert len(fills) >= 2 * ROUNDS and set(fills) == {"DB:primary"}, sources
        after = _wait_for_transactions(pair, before, len(fills))
        assert after - before >= len(fills), (before, after, len(fills))
    finally:
        pair.resume_replay()
    assert stale == [], stale
    assert max(slowest) < WAIT_MS / 1000 + SLACK_S, max(slowest)
    pair.wait_caught_up()


def test_after_resume_the_loaders_use_the_replica_again(pair, clients, plan) -> None:
    a, b = clients
    pair.wait_caught_up()
    before = pair.replica_transactions()
    stale: list[str] = []
    sources: list[str] = []
    slowest: list[float] = []
    for slot, doctor, day, patient in plan[ROUNDS:2 * ROUNDS]:
        appointment = _book(a, slot, patient)
        pair.wait_caught_up()  # the replica has the write: the fill's check passes at once
        _check_reads(clients, slot, doctor, day, appointment, stale, sources, slowest)
    assert stale == [], stale
    fills = [s for s in sources if s.startswith("DB")]
    assert len(fills) >= 2 * ROUNDS and set(fills) == {"DB:replica"}, sources
    # The replica's own count: a transaction per fill (the check passed at once).
    after = _wait_for_transactions(pair, before, len(fills))
    assert after - before >= len(fills), (before, after, len(fills))


def test_replica_stopped_reads_and_writes_use_the_primary(pair, clients, plan) -> None:
    a, b = clients
    assert pair.replica is not None
    pair.replica.stop("immediate")
    stale: list[str] = []
    sources: list[str] = []
    slowest: list[float] = []
    for slot, doctor, day, patient in plan[2 * ROUNDS:3 * ROUNDS]:
        appointment = _book(a, slot, patient)
        _check_reads(clients, slot, doctor, day, appointment, stale, sources, slowest)
    assert stale == [], stale
    fills = [s for s in sources if s.startswith("DB")]
    assert len(fills) >= 2 * ROUNDS and set(fills) == {"DB:primary"}, sources
    assert max(slowest) < WAIT_MS / 1000 + SLACK_S, max(slowest)
    status, _, health = b.get_json("/api/health")
    assert status == 200 and health["replica"] == "down" and health["status"] == "degraded", health
    assert health["db"] == "ok"
