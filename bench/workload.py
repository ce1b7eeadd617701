"""Workload: N processes stand in for warm Lambda containers sharing Redis and PostgreSQL.
Each calls `app.app(event, ctx)` with Zipf-distributed reads over tenants, days and doctors
and ~1% writes (book a free slot; cancel, reschedule, check in or complete one of its
bookings), for a fixed time.

Staleness check: after each write returns, the writer records (slot, state, time, id) in a
Redis hash per (tenant, day): `booked`, `checked_in`, `completed` (the slot is taken and the
day's list shows the appointment in that status), `cancelled` (listed as cancelled) or
`moved` (rescheduled away: no longer listed on that day). After each slots /
appointment-list read of (tenant, day), the reader compares what it was served with every
write recorded there that completed before the read started; a mismatch is confirmed
against PostgreSQL (the truth: the write is still the latest for that slot and the row
still says so) before it counts as a violation.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import random
import time
from collections import Counter
from typing import Any

from bench import common

MIX = (("slots", 0.45), ("appointments", 0.80), ("departments", 0.88), ("doctors", 0.93), ("dashboard", 1.0))
# States of a slot's latest write in which the slot is taken by that appointment.
TAKEN = ("booked", "checked_in", "completed")
# The status a desk moves an appointment to next, by its current status.
NEXT_STATUS = {"booked": "checked_in", "checked_in": "completed"}


def holds(state: str, slot: int, row: tuple[str, int] | None) -> bool:
    """Whether PostgreSQL's row (status, slot id) of the appointment still says `state` of `slot`."""
    if row is None:
        return False
    status, slot_id = row
    if state == "moved":
        return slot_id != slot
    if state == "cancelled":
        return status == "cancelled"
    return status == state and slot_id == slot


def zipf_cum(n: int, s: float = 1.1) -> list[float]:
    acc, out = 0.0, []
    for rank in range(1, n + 1):
        acc += 1.0 / rank ** s
        out.append(acc)
    return out


def world(database: str) -> dict[str, Any]:
    """Tenants with their local today, doctors and patients (from PostgreSQL)."""
    conn = common.connect(database)
    try:
        tenants = {}
        for tid, today in conn.run("SELECT id, (now() AT TIME ZONE time_zone)::date FROM tenant ORDER BY id"):
            doctors = [r[0] for r in conn.run("SELECT id FROM doctor WHERE tenant_id = :t AND active ORDER BY id",
                                              t=tid)]
            patients = [r[0] for r in conn.run("SELECT id FROM patient WHERE tenant_id = :t ORDER BY id", t=tid)]
            tenants[tid] = {"today": today.isoformat(), "doctors": doctors, "patients": patients}
        return {"tenants": tenants}
    finally:
        conn.close()


def _worker(idx: int, env: dict[str, str], info: dict[str, Any], ns: str, warmup_s: float, duration_s: float,
            ready: Any, go: Any, results: Any) -> None:
    os.environ.update(env)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # the app's periodic EMF metric lines: not part of this report
    import warnings

    warnings.filterwarnings("ignore", message="No application metrics to publish")
    import datetime as dt

    import orjson

    import app as app_module
    from bench.tiers import x_cache

    handler = app_module.app
    if env.get("BENCH_BREAK_INVALIDATION") == "1":
        # Checker self-test only: writes stop invalidating, so stale reads must be reported.
        from chalicelib.booking import service

        service.after_write = lambda *a, **k: None
    ctx = common.LambdaContext()
    redis = common.redis_client()
    rng = random.Random(1000 + idx)
    truth = common.connect(env["BENCH_DB"])
    tenants = sorted(int(t) for t in info["tenants"])
    t_cum = zipf_cum(len(tenants))
    days = 29
    d_cum = zipf_cum(days)
    tokens = {t: common.token(t, "admin") for t in tenants}
    my_bookings: list[dict[str, Any]] = []  # {"t", "appt", "slot", "day", "status"}
    state: dict[str, Any] = {}

    def reset_stats() -> None:
        state.update(sources=Counter(), routes=Counter(), lat=[], violations=[], checks=0, reads=0,
                     writes=Counter(), errors=Counter(), suspects=0, cold=0)

    def pick_day(ti: dict) -> str:
        offset = 1 + rng.choices(range(days), cum_weights=d_cum)[0]
        return (dt.date.fromisoformat(ti["today"]) + dt.timedelta(days=offset)).isoformat()

    def pick() -> tuple[int, str, dict]:
        t = tenants[rng.choices(range(len(tenants)), cum_weights=t_cum)[0]]
        ti = info["tenants"][str(t)]
        return t, pick_day(ti), ti

    def request(method: str, path: str, t: int, query: dict | None = None, body: Any = None,
                resource: str | None = None, path_params: dict | None = None, record: bool = True) -> dict:
        ev = common.api_event(method, path, query, tokens[t], body=body, resource=resource, path_params=path_params)
        t0 = time.perf_counter()
        resp = handler(ev, ctx)
        if record:
            state["lat"].append((time.perf_counter() - t0) * 1e6)
        return resp

    def read(route: str, t: int, day: str, ti: dict) -> dict | None:
        q: dict[str, str] = {"clientId": str(t)}
        if route == "slots":
            q["date"] = day
            if rng.random() < 0.5:
                doctors = ti["doctors"]
                q["doctorId"] = str(doctors[rng.choices(range(len(doctors)), cum_weights=zipf_cum(len(doctors)))[0]])
            path = "/api/slots/available"
        elif route == "appointments":
            q["date"] = day
            q["limit"] = "200"
            path = "/api/appointments/list"
        else:
            path = {"departments": "/api/departments", "doctors": "/api/doctors",
                    "dashboard": "/api/dashboard/stats"}[route]
        started_wall = time.time()
        resp = request("GET", path, t, q)
        state["reads"] += 1
        state["routes"][route] += 1
        if resp["statusCode"] != 200:
            state["errors"][f"{route}:{resp['statusCode']}"] += 1
            return None
        source = x_cache(resp) or "?"
        state["sources"][source] += 1
        if source == "DB":
            # First load of this key by any process in this run (a cold miss), or a re-load?
            if redis.sadd(f"{ns}:bench:loaded", f"{path}?{sorted(q.items())}"):
                state["cold"] += 1
        if route in ("slots", "appointments"):
            check(route, t, day, started_wall, resp["body"])
        return resp

    def check(route: str, t: int, day: str, started_wall: float, body: str) -> None:
        raw = redis.hgetall(f"{ns}:bw:{t}:{day}")
        if not raw:
            return
        doc = orjson.loads(body)
        state["checks"] += 1
        if route == "slots":
            free = {s["slotId"] for s in doc["slots"]}
            for field, value in raw.items():
                st, when, appt = value.decode().split("|")
                slot = int(field)
                if float(when) < started_wall and st in TAKEN and slot in free:
                    confirm(route, t, day, slot, int(appt), st, when, value, started_wall)
        else:
            seen = {a["id"]: (a["status"], a["slotId"]) for a in doc["appointments"]}
            complete = doc.get("nextCursor") is None
            for field, value in raw.items():
                st, when, appt = value.decode().split("|")
                appt_id, slot = int(appt), int(field)
                if float(when) >= started_wall:
                    continue
                listed = seen.get(appt_id)
                if ((st in TAKEN and ((complete and listed is None) or (listed is not None and listed[0] != st)))
                        or (st == "cancelled" and listed is not None and listed[0] != st)
                        or (st == "moved" and listed is not None and listed[1] == slot)):
                    confirm(route, t, day, slot, appt_id, st, when, value, started_wall)

    def confirm(route: str, t: int, day: str, slot: int, appt: int, st: str, when: str, value: bytes,
                started_wall: float) -> None:
        state["suspects"] += 1
        # Still the latest write for that slot, and PostgreSQL agrees with it?
        if redis.hget(f"{ns}:bw:{t}:{day}", str(slot)) != value:
            return
        rows = truth.run("SELECT status, slot_id FROM appointment WHERE tenant_id = :t AND id = :a", t=t, a=appt)
        if holds(st, slot, (rows[0][0], rows[0][1]) if rows else None):
            state["violations"].append({"route": route, "tenant": t, "day": day, "slot": slot,
                                        "appointment": appt, "written": st,
                                        "write_done_before_read_s": round(started_wall - float(when), 4)})

    def record(t: int, day: str, slot: int, state: str, appt: int) -> None:
        redis.hset(f"{ns}:bw:{t}:{day}", str(slot), f"{state}|{time.time():.6f}|{appt}")

    def appointment_post(mine: dict[str, Any], action: str, body: dict[str, Any]) -> dict:
        return request("POST", f"/api/appointments/{mine['appt']}/{action}", mine["t"],
                       body={"clientId": mine["t"], **body}, resource=f"/api/appointments/{{appointment_id}}/{action}",
                       path_params={"appointment_id": str(mine["appt"])})

    def free_slot(t: int, day: str, ti: dict) -> int | None:
        resp = read("slots", t, day, ti)
        if resp is None:
            return None
        slots = orjson.loads(resp["body"])["slots"]
        if not slots:
            state["writes"]["no_free_slot"] += 1
            return None
        return rng.choice(slots)["slotId"]

    def cancel(mine: dict[str, Any]) -> None:
        resp = appointment_post(mine, "cancel", {})
        if resp["statusCode"] == 200:
            record(mine["t"], mine["day"], mine["slot"], "cancelled", mine["appt"])
            my_bookings.remove(mine)
            state["writes"]["cancel"] += 1
        else:
            state["writes"][f"cancel_{resp['statusCode']}"] += 1

    def reschedule(mine: dict[str, Any]) -> None:
        t, ti = mine["t"], info["tenants"][str(mine["t"])]
        day = pick_day(ti)
        slot = free_slot(t, day, ti)
        if slot is None:
            return
        resp = appointment_post(mine, "reschedule", {"slotId": slot})
        if resp["statusCode"] == 200:
            record(t, mine["day"], mine["slot"], "moved", mine["appt"])
            record(t, day, slot, "booked", mine["appt"])
            mine.update(slot=slot, day=day)
            state["writes"]["reschedule"] += 1
        else:
            state["writes"][f"reschedule_{resp['statusCode']}"] += 1

    def advance(mine: dict[str, Any]) -> None:
        new_status = NEXT_STATUS[mine["status"]]
        resp = appointment_post(mine, "status", {"status": new_status})
        if resp["statusCode"] == 200:
            record(mine["t"], mine["day"], mine["slot"], new_status, mine["appt"])
            mine["status"] = new_status
            if new_status not in NEXT_STATUS:
                my_bookings.remove(mine)  # completed: nothing more to do with it
            state["writes"]["status"] += 1
        else:
            state["writes"][f"status_{resp['statusCode']}"] += 1

    def book(t: int, day: str, ti: dict) -> None:
        slot = free_slot(t, day, ti)
        if slot is None:
            return
        patient = rng.choice(ti["patients"])
        resp = request("POST", "/api/appointments", t, body={"clientId": t, "slotId": slot, "patientId": patient})
        if resp["statusCode"] == 201:
            appt = orjson.loads(resp["body"])["appointment"]["id"]
            record(t, day, slot, "booked", appt)
            my_bookings.append({"t": t, "appt": appt, "slot": slot, "day": day, "status": "booked"})
            state["writes"]["book"] += 1
        else:
            state["writes"][f"book_{resp['statusCode']}"] += 1

    def write(t: int, day: str, ti: dict) -> None:
        """Half the writes book; the rest cancel, reschedule or advance one of this worker's
        appointments (cancel and reschedule only while it is booked)."""
        if not my_bookings or rng.random() < 0.5:
            book(t, day, ti)
            return
        mine = rng.choice(my_bookings)
        r = rng.random()
        if mine["status"] == "booked" and r < 0.5:
            cancel(mine)
        elif mine["status"] == "booked" and r < 0.8:
            reschedule(mine)
        else:
            advance(mine)

    def step() -> None:
        t, day, ti = pick()
        if rng.random() < 0.01:
            write(t, day, ti)
            return
        r = rng.random()
        route = next(name for name, edge in MIX if r < edge)
        read(route, t, day, ti)

    reset_stats()
    ready.put(idx)
    go.wait()
    end_warm = time.monotonic() + warmup_s
    while time.monotonic() < end_warm:
        step()
    reset_stats()
    started = time.monotonic()
    end = started + duration_s
    while time.monotonic() < end:
        step()
    elapsed = time.monotonic() - started
    from chalicelib.booking.caching import get_cache

    stats = get_cache().stats
    results.put({"idx": idx, "elapsed_s": elapsed, "sources": dict(state["sources"]), "routes": dict(state["routes"]),
                 "lat": state["lat"], "violations": state["violations"], "checks": state["checks"],
                 "suspects": state["suspects"], "cold": state["cold"], "reads": state["reads"],
                 "writes": dict(state["writes"]),
                 "errors": dict(state["errors"]), "invalidations_received": stats.invalidations_received,
                 "lock_waits": stats.lock_waits, "stale_served": stats.stale_served})
    truth.close()


def run_on_cluster(database: str, namespace: str, processes: int, duration_s: float,
                   warmup_s: float) -> dict[str, Any]:
    """The same workload with the app's L2 on a private three-primary Redis Cluster."""
    from support.cluster import running_cluster

    with running_cluster() as cluster:
        out = run(database, namespace, processes, duration_s, warmup_s,
                  app_env={"REDIS_URL": cluster.url, "REDIS_CLUSTER": "1"})
    out["setup"] = "Redis Cluster, 3 primaries (local, private ports)"
    return out


def run_with_replica(processes: int, duration_s: float, warmup_s: float) -> dict[str, Any]:
    """The same workload on a private primary (seeded small) whose loaders read a streaming
    replica (DATABASE_READ_URL), in a namespace of its own (the other workloads' entries
    describe another database); the checker confirms against the primary."""
    from support.replica import DATABASE, PrimaryAndReplica

    pair = PrimaryAndReplica()
    namespace = common.new_namespace()
    try:
        pair.start()
        assert pair.primary is not None and pair.replica is not None
        before = pair.replica_transactions()
        with common.server_of(pair.primary.url("postgres")):
            out = run(DATABASE, namespace, processes, duration_s, warmup_s,
                      app_env={"DATABASE_READ_URL": pair.replica.url()})
        out["replica_transactions"] = pair.replica_transactions() - before
    finally:
        pair.close()
        common.delete_namespace(namespace)
    out["setup"] = "a streaming read replica (local primary and replica)"
    out["note"] = f"{out['replica_transactions']:,} transactions ran on the replica"
    return out


def _xact(database: str) -> int:
    conn = common.connect("postgres")
    try:
        conn.run("SELECT pg_stat_clear_snapshot()")
        return int(conn.run("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = :d",
                            d=database)[0][0])
    finally:
        conn.close()


def run(database: str, namespace: str, processes: int, duration_s: float, warmup_s: float,
        break_invalidation: bool = False, app_env: dict[str, str] | None = None) -> dict[str, Any]:
    """The workload against `database`; `app_env` overrides the app's environment (another
    Redis, a Redis Cluster, a read replica). The checker's records stay in the bench's Redis."""
    info = world(database)
    info["tenants"] = {str(k): v for k, v in info["tenants"].items()}
    env = {"DATABASE_URL": common.database_url(database), "REDIS_URL": common.REDIS_URL,
           "AUTH_SECRET": common.AUTH_SECRET, "CACHE_NAMESPACE": namespace, "BENCH_DB": database,
           "BENCH_BREAK_INVALIDATION": "1" if break_invalidation else "0", **(app_env or {})}
    ctx = mp.get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_worker, args=(i, env, info, namespace, warmup_s, duration_s, ready, go, results),
                         daemon=True) for i in range(processes)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=120)
    common.say(f"workload: {processes} processes ready; warm-up {warmup_s:.0f}s, then {duration_s:.0f}s measured")
    go.set()
    time.sleep(warmup_s)
    x0 = _xact(database)
    time.sleep(duration_s)
    parts = [results.get(timeout=duration_s + 120) for _ in procs]
    time.sleep(1.1)  # backends flush their transaction counters at most once a second
    x1 = _xact(database)
    for p in procs:
        p.join(timeout=30)
    sources: Counter = Counter()
    routes: Counter = Counter()
    writes: Counter = Counter()
    errors: Counter = Counter()
    lat: list[float] = []
    violations: list = []
    for part in parts:
        sources.update(part["sources"])
        routes.update(part["routes"])
        writes.update(part["writes"])
        errors.update(part["errors"])
        lat.extend(part["lat"])
        violations.extend(part["violations"])
    reads = sum(p["reads"] for p in parts)
    served = sum(sources.values())
    db_loads = sources.get("DB", 0)
    hits = sources.get("L1", 0) + sources.get("L2", 0) + sources.get("STALE", 0)
    n_writes = sum(writes.get(kind, 0) for kind in ("book", "cancel", "reschedule", "status"))
    cold = sum(p["cold"] for p in parts)
    elapsed = max(p["elapsed_s"] for p in parts)
    out = {
        "processes": processes, "duration_s": duration_s, "warmup_s": warmup_s, "reads": reads,
        "requests": len(lat), "throughput_rps": len(lat) / elapsed,
        "sources": dict(sources), "routes": dict(routes), "writes": dict(writes), "errors": dict(errors),
        "hit_rate": hits / served if served else 0.0,
        "cold_loads": cold, "reloads": db_loads - cold,
        "hit_rate_excl_cold": hits / (served - cold) if served > cold else 0.0,
        "l1_rate": sources.get("L1", 0) / served if served else 0.0,
        "l2_rate": sources.get("L2", 0) / served if served else 0.0,
        "db_rate": db_loads / served if served else 0.0,
        # Uncached, every read is one query (plus the same writes).
        "queries_cached": db_loads + n_writes, "queries_uncached": reads + n_writes,
        "query_reduction": 1 - (db_loads + n_writes) / (reads + n_writes) if reads else 0.0,
        "pg_xacts_per_request": (x1 - x0) / max(1, len(lat)),
        "pg_xacts": x1 - x0,
        "latency": {"p50_us": common.pct(lat, 0.5), "p99_us": common.pct(lat, 0.99), "n": len(lat)},
        "staleness_checks": sum(p["checks"] for p in parts), "staleness_suspects": sum(p["suspects"] for p in parts),
        "violations": len(violations), "violation_samples": violations[:10],
        "invalidations_received": sum(p["invalidations_received"] for p in parts),
        "lock_waits": sum(p["lock_waits"] for p in parts),
    }
    common.say(f"workload: {len(lat)} requests ({out['throughput_rps']:.0f}/s), hit rate {out['hit_rate']:.2%}"
               f" (L1 {out['l1_rate']:.2%}, L2 {out['l2_rate']:.2%}, DB {out['db_rate']:.2%}),"
               f" DB loads {db_loads} = {cold} first-ever + {db_loads - cold} re-loads,"
               f" queries -{out['query_reduction']:.2%} vs uncached, p50 {out['latency']['p50_us']:.0f} us"
               f" p99 {out['latency']['p99_us']:.0f} us, writes {dict(writes)}, checks {out['staleness_checks']},"
               f" violations {len(violations)}")
    return out
