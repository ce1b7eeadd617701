"""Shared plumbing for the benchmark: databases, environment, events, timing helpers."""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import statistics
import sys
import time
from typing import Any, Callable, Iterator, Optional

from chalicelib import runtime
from support import databases, namespaces

REDIS_URL = namespaces.redis_url()
AUTH_SECRET = "bench-secret-not-for-production-0123456789"
SMALL_DB = "hb_bench_small"
LARGE_DB = "hb_bench_large"
# What a complete `seed --size large --seed 1` holds (tenants, appointments at least).
LARGE_TENANTS = 20
LARGE_MIN_APPOINTMENTS = 1_000_000
T0 = time.monotonic()


@contextlib.contextmanager
def server_of(url: str) -> Iterator[None]:
    """Within the block, the bench's PostgreSQL server is `url`'s (for this process and the
    processes it starts); the previous one afterwards."""
    saved = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = saved


def next_day_with_free_slots(tenant: int = 1) -> dt.date:
    """The first day after the tenant's local today that has free slots: the day whose slots
    and appointments the benchmark reads. A fixed "tomorrow" is a Sunday on some weeks, when
    the seed has no slots, and the payload (and every figure built on it) would shrink."""
    from chalicelib.db import connection as db

    day = db.scalar(
        """SELECT min(s.day) FROM slot s JOIN tenant t ON t.id = s.tenant_id
           WHERE s.tenant_id = :t AND s.day > (now() AT TIME ZONE t.time_zone)::date
             AND NOT EXISTS (SELECT 1 FROM appointment a WHERE a.tenant_id = s.tenant_id
                             AND a.slot_id = s.id AND a.status <> 'cancelled')""", t=tenant)
    if day is None:
        raise RuntimeError(f"tenant {tenant} has no free slot after today: seed the database again")
    return day


def say(message: str) -> None:
    """One progress line, with seconds since start."""
    print(f"[bench {time.monotonic() - T0:6.1f}s] {message}", flush=True)


connect = databases.connect
database_url = databases.database_url
drop_database = databases.drop_database
delete_namespace = namespaces.delete_namespace


def ensure_small(name: str = SMALL_DB) -> str:
    """A fresh small database (seconds), recreated every run so runs are comparable."""
    from chalicelib.db.seed import seed

    started = time.monotonic()
    databases.create_named(name, replace=True)
    conn = connect(name)
    try:
        seed(conn, size="small", seed=1)
        conn.run("CREATE TABLE IF NOT EXISTS bench_scratch (id bigserial PRIMARY KEY, v text NOT NULL)")
    finally:
        conn.close()
    say(f"database {name} created and seeded (small) in {time.monotonic() - started:.1f}s")
    return name


def large_counts() -> Optional[tuple[int, int]]:
    """(tenants, appointments) of the large database, or None if it does not exist
    (appointments 0 when the data is too old to use)."""
    if not databases.exists(LARGE_DB):
        return None
    conn = connect(LARGE_DB)
    try:
        tenants = conn.run("SELECT count(*) FROM tenant")[0][0]
        appts = conn.run("SELECT count(*) FROM appointment")[0][0]
        # Data is relative to the day it was seeded: stale once tenant 1 has under a week ahead.
        ahead = conn.run("SELECT max(s.day) - (now() AT TIME ZONE t.time_zone)::date FROM slot s"
                         " JOIN tenant t ON t.id = s.tenant_id WHERE s.tenant_id = 1 GROUP BY t.time_zone")
        if not ahead or ahead[0][0] is None or ahead[0][0] < 8:
            say(f"{LARGE_DB} was seeded too long ago (days of slots ahead: {ahead}); it will be re-seeded")
            return tenants, 0
        return tenants, appts
    except Exception:  # noqa: BLE001 - half-made database
        return None
    finally:
        conn.close()


def ensure_large() -> dict[str, Any]:
    """The large database, reused when it holds the expected rows, else (re)seeded."""
    from chalicelib.db.seed import seed

    counts = large_counts()
    if counts and counts[0] == LARGE_TENANTS and counts[1] >= LARGE_MIN_APPOINTMENTS:
        say(f"reusing {LARGE_DB}: {counts[0]} tenants, {counts[1]:,} appointments")
        return {"database": LARGE_DB, "reused": True, "seed_s": 0.0, "appointments": counts[1]}
    say(f"seeding {LARGE_DB} (size large; takes minutes, done once and reused)")
    started = time.monotonic()
    databases.create_named(LARGE_DB, replace=True)
    conn = connect(LARGE_DB)
    try:
        result = seed(conn, size="large", seed=1, force=True, progress=lambda line: say("  seed " + line))
    finally:
        conn.close()
    elapsed = time.monotonic() - started
    say(f"{LARGE_DB} seeded in {elapsed:.0f}s: {result}")
    return {"database": LARGE_DB, "reused": False, "seed_s": elapsed, "appointments": result.get("appointment")}


def use_database(database: str, namespace: str) -> None:
    """Point the app (this process) at `database` and a private Redis namespace."""
    os.environ.update({"DATABASE_URL": database_url(database), "REDIS_URL": REDIS_URL,
                       "AUTH_SECRET": AUTH_SECRET, "CACHE_NAMESPACE": namespace})
    os.environ.pop("REDIS_DISABLED", None)
    runtime.reset()


def new_namespace() -> str:
    return namespaces.new_namespace("hbbench")


def redis_client():  # type: ignore[no-untyped-def]
    import redis

    return redis.Redis.from_url(REDIS_URL)


def token(tenant: int, role: str = "admin") -> str:
    from chalicelib.auth import issue_token

    return issue_token(AUTH_SECRET, tenant, role, ttl_s=6 * 3600)


class LambdaContext:
    """The attributes Lambda's context object has (and Powertools reads)."""

    function_name = "hospital-booking-dev"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:hospital-booking-dev"
    memory_limit_in_mb = 1024
    aws_request_id = "0f5b1c4e-bench-0000-0000-000000000000"
    log_group_name = "/aws/lambda/hospital-booking-dev"
    log_stream_name = "2026/01/01/[$LATEST]bench"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def api_event(method: str, path: str, query: Optional[dict[str, str]] = None, token_value: Optional[str] = None,
              body: Any = None, resource: Optional[str] = None,
              path_params: Optional[dict[str, str]] = None, headers: Optional[dict[str, str]] = None) -> dict:
    """An API Gateway (REST, proxy integration) event as Lambda receives it."""
    h = {"Accept": "application/json", "Host": "abc123.execute-api.us-east-1.amazonaws.com",
         "User-Agent": "bench/1.0", "X-Forwarded-For": "203.0.113.10", "X-Forwarded-Port": "443",
         "X-Forwarded-Proto": "https"}
    if token_value:
        h["Authorization"] = f"Bearer {token_value}"
    raw = None
    if body is not None:
        raw = body if isinstance(body, str) else json.dumps(body)
        h["Content-Type"] = "application/json"
    h.update(headers or {})
    resource = resource or path
    return {
        "resource": resource, "path": path, "httpMethod": method, "headers": h,
        "multiValueHeaders": {k: [v] for k, v in h.items()},
        "queryStringParameters": dict(query) if query else None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": path_params, "stageVariables": None,
        "requestContext": {
            "resourceId": "abc123", "resourcePath": resource, "httpMethod": method,
            "extendedRequestId": "bench=", "requestTime": "01/Jan/2026:00:00:00 +0000",
            "path": f"/api{path}", "accountId": "123456789012", "protocol": "HTTP/1.1", "stage": "api",
            "domainPrefix": "abc123", "requestTimeEpoch": 1767225600000, "requestId": "bench-req",
            "identity": {"sourceIp": "203.0.113.10", "userAgent": "bench/1.0", "accessKey": None,
                         "accountId": None, "caller": None, "user": None, "userArn": None,
                         "cognitoIdentityId": None, "cognitoIdentityPoolId": None},
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com", "apiId": "abc123"},
        "body": raw, "isBase64Encoded": False,
    }


# -- timing -----------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def summary(samples_s: list[float]) -> dict[str, float]:
    """Median / p99 / mean in microseconds."""
    us = [x * 1e6 for x in samples_s]
    return {"n": len(us), "p50_us": statistics.median(us), "p99_us": pct(us, 0.99),
            "mean_us": statistics.fmean(us)}


def time_calls(fn: Callable[[], Any], n: int, setup: Optional[Callable[[], Any]] = None) -> list[float]:
    """Per-call wall times (seconds); `setup` runs before each call, untimed."""
    out = []
    perf = time.perf_counter
    if setup is None:
        for _ in range(n):
            t = perf()
            fn()
            out.append(perf() - t)
    else:
        for _ in range(n):
            setup()
            t = perf()
            fn()
            out.append(perf() - t)
    return out


def interleaved(cases: dict[str, tuple[Callable[[], Any], Optional[Callable[[], Any]]]], n: int,
                rounds: int = 8, warmup: int = 50) -> dict[str, dict[str, float]]:
    """Time several cases in alternating blocks so a floor and its target see the same
    machine load (other processes share these 2 cores). Returns summary() per case."""
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for fn, setup in cases.values():
        time_calls(fn, warmup, setup)
    per_round = max(1, n // rounds)
    for _ in range(rounds):
        for name, (fn, setup) in cases.items():
            samples[name].extend(time_calls(fn, per_round, setup))
    return {k: summary(v) for k, v in samples.items()}


def tight_loop(fn: Callable[[], Any], n: int, repeats: int = 7) -> dict[str, float]:
    """Per-call average over a tight loop (no per-call clock), best-of and median of repeats."""
    perf = time.perf_counter
    rng = range(n)
    for _ in range(min(n, 1000)):
        fn()
    per = []
    for _ in range(repeats):
        t = perf()
        for _ in rng:
            fn()
        per.append((perf() - t) / n)
    return {"n": n * repeats, "p50_us": statistics.median(per) * 1e6, "min_us": min(per) * 1e6,
            "p99_us": max(per) * 1e6}


def alternating_tight(cases: dict[str, Callable[[], Any]], n: int, repeats: int = 7) -> dict[str, dict[str, float]]:
    """tight_loop() for several callables in alternating rounds (same machine load for all)."""
    perf = time.perf_counter
    rng = range(n)
    for fn in cases.values():
        for _ in range(min(n, 1000)):
            fn()
    per: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            t = perf()
            for _ in rng:
                fn()
            per[name].append((perf() - t) / n)
    return {k: {"n": n * repeats, "p50_us": statistics.median(v) * 1e6, "min_us": min(v) * 1e6,
                "p99_us": max(v) * 1e6} for k, v in per.items()}


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "ensure-large":
    print(ensure_large())
