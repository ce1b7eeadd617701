"""The cache on a real three-primary Redis Cluster (REDIS_CLUSTER=1), started by the tests
(support/cluster.py): two API server processes share L2, tenants 1 and 2 live on
different shards, 50 rounds of bookings and cancels give 0 stale reads on the other process;
a primary killed and restarted: reads and writes keep answering, and once it is back a write
on one process invalidates the other process's L1 again."""
from __future__ import annotations

import json
import time
from typing import Callable

import pytest

from support.cluster import LocalCluster, running_cluster
from tests.data_finders import new_patient
from tests.helpers_servers import KeepAlive, free_future_slots, running_servers

ROUNDS = 50
TENANTS = (1, 2)
UNTRACKED_MAX_AGE = 0.5


@pytest.fixture(scope="module")
def cluster():
    with running_cluster(3) as started:
        yield started


@pytest.fixture(scope="module")
def servers(app_env, cluster):
    env = {**app_env.env, "REDIS_URL": cluster.url, "REDIS_CLUSTER": "1",
           "REDIS_BREAKER_COOLDOWN": "0.3", "REDIS_CONNECT_TIMEOUT": "0.2", "REDIS_READ_TIMEOUT": "0.5",
           "CACHE_L1_MAX_AGE_UNTRACKED": str(UNTRACKED_MAX_AGE)}
    with running_servers(env, 2) as started:
        yield started


def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


def _free(body: dict) -> list[int]:
    return [s["slotId"] for s in body["slots"]]


def _version_key(app_env, tenant: int) -> str:
    return f"{app_env.namespace}:v:{{t{tenant}}}:x"


def test_tenants_live_on_different_shards(app_env, cluster: LocalCluster):
    owners = {t: cluster.owner_of(_version_key(app_env, t)).port for t in TENANTS}
    assert len(set(owners.values())) == len(TENANTS), owners
    c = cluster.nodes[0].client()
    try:
        slots = {t: int(c.execute_command("CLUSTER", "KEYSLOT", _version_key(app_env, t))) for t in TENANTS}
        # every key of a tenant shares the tenant's hash tag, so one slot
        assert int(c.execute_command("CLUSTER", "KEYSLOT", f"{app_env.namespace}:b:{{t1}}:slots:x")) == slots[1]
    finally:
        c.close()
    assert slots[1] != slots[2]


def test_two_processes_share_l2_and_see_each_others_writes(servers, app_env, cluster: LocalCluster):
    a_server, b_server = servers
    a = {t: KeepAlive(a_server.port, app_env.headers(tenant=t, role="staff")) for t in TENANTS}
    b = {t: KeepAlive(b_server.port, app_env.headers(tenant=t, role="staff")) for t in TENANTS}
    per_tenant = ROUNDS // len(TENANTS)
    slots = {t: free_future_slots(app_env, tenant=t, limit=per_tenant) for t in TENANTS}
    patients = {t: new_patient(app_env.sql, tenant=t) for t in TENANTS}
    rounds = [(t, s) for i in range(per_tenant) for t in TENANTS for s in [slots[t][i]]]
    assert len(rounds) == ROUNDS
    stale: list[str] = []
    b_from_l2, b_first_reads, b_l1 = 0, 0, 0
    b_seen: set[str] = set()
    try:
        for tenant, (slot, doctor, day) in rounds:
            path = f"/api/slots/available?clientId={tenant}&date={day}&doctorId={doctor}"
            status, h, _ = a[tenant].get_json(path)
            assert status == 200
            status, h, body = b[tenant].get_json(path)
            assert status == 200
            if path not in b_seen:  # B never read it; A just filled L2: B's read is from L2
                b_seen.add(path)
                b_first_reads += 1
                b_from_l2 += h["x-cache"] == "L2"
            if b[tenant].warm(path) == "L1":
                b_l1 += 1
            assert slot in _free(body), "setup: the slot starts free"

            status, _, raw = a[tenant].request("POST", "/api/appointments", body={
                "clientId": tenant, "slotId": slot, "patientId": patients[tenant]})
            assert status == 201, raw
            appointment = json.loads(raw)["appointment"]
            status, h, body = b[tenant].get_json(path)
            assert status == 200
            if slot in _free(body):
                stale.append(f"t{tenant} slot {slot} free on B after booking ({h['x-cache']})")

            status, _, raw = a[tenant].request("POST", f"/api/appointments/{appointment['id']}/cancel",
                                               body={"clientId": tenant})
            assert status == 200, raw
            status, h, body = b[tenant].get_json(path)
            assert status == 200
            if slot not in _free(body):
                stale.append(f"t{tenant} slot {slot} not free on B after cancel ({h['x-cache']})")
    finally:
        for conn in [*a.values(), *b.values()]:
            conn.close()
    assert stale == [], f"{len(stale)} stale reads: {stale[:5]}"
    assert b_first_reads >= len(TENANTS) and b_from_l2 == b_first_reads, (b_from_l2, b_first_reads)
    assert b_l1 >= ROUNDS * 0.9, b_l1  # and B held the answer in L1 before each write


def test_a_primary_killed_and_restarted(servers, app_env, cluster: LocalCluster):
    a_server, b_server = servers
    tenant = 1
    a = KeepAlive(a_server.port, app_env.headers(tenant=tenant, role="staff"))
    b = KeepAlive(b_server.port, app_env.headers(tenant=tenant, role="staff"))
    slot, doctor, day = free_future_slots(app_env, tenant=tenant, limit=60)[-1]
    path = f"/api/slots/available?clientId={tenant}&date={day}&doctorId={doctor}"
    patient = new_patient(app_env.sql, tenant=tenant)
    victim = cluster.owner_of(_version_key(app_env, tenant))
    try:
        assert b.warm(path) == "L1"
        victim.kill()
        # Reads and writes keep answering (PostgreSQL answers for the dead shard).
        for _ in range(5):
            status, h, body = b.get_json(path)
            assert status == 200, h
            assert slot in _free(body)
        status, _, raw = a.request("POST", "/api/appointments",
                                   body={"clientId": tenant, "slotId": slot, "patientId": patient})
        assert status == 201, raw
        booked = json.loads(raw)["appointment"]
        # While the shard is down, B cannot check versions: as on one node (docs/caching.md,
        # "When Redis is down"), its L1 copy is trusted for at most the untracked max age
        # (the deadline below is that bound plus a margin for a loaded machine).

        def b_sees_booking() -> bool:
            status, h, body = b.get_json(path)
            assert status == 200, h
            return slot not in _free(body)

        _until(b_sees_booking, UNTRACKED_MAX_AGE + 2.0, "B sees the booking while the shard is down")

        victim.start()
        cluster.wait_ok()

        # Recovery: B trusts its L1 again (tracking is back on every primary).
        def b_serves_l1() -> bool:
            status, h, body = b.get_json(path)
            assert status == 200
            assert slot not in _free(body), f"stale after recovery ({h['x-cache']})"
            return h["x-cache"] == "L1"

        _until(b_serves_l1, 20.0, "B serves from L1 after the node came back")
        # A write after recovery invalidates B's L1.
        status, _, raw = a.request("POST", f"/api/appointments/{booked['id']}/cancel", body={"clientId": tenant})
        assert status == 200, raw
        status, h, body = b.get_json(path)
        assert status == 200
        assert slot in _free(body), f"B's L1 not invalidated after recovery ({h['x-cache']})"
        _until(lambda: b.get_json(path)[1]["x-cache"] == "L1", 10.0, "B caches again")
        status, _, raw = a.request("POST", "/api/appointments",
                                   body={"clientId": tenant, "slotId": slot, "patientId": patient})
        assert status == 201, raw
        status, h, body = b.get_json(path)
        assert slot not in _free(body), f"B's L1 not invalidated by a booking after recovery ({h['x-cache']})"
    finally:
        a.close()
        b.close()
        if victim.proc is None or victim.proc.poll() is not None:
            victim.start()
