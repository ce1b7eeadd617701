"""Floors: what the cheapest possible version of each operation costs on this machine,
now. Every target is judged as a ratio against one of these, measured in the same run."""
from __future__ import annotations

from typing import Any, Callable, Optional

from bench import common
from bench.trivial_app import BODY
from bench.trivial_app import app as trivial


def trivial_route_call(body: str, query: Optional[dict[str, str]] = None) -> Callable[[], Any]:
    """app(event, context) on the trivial route returning `body`; the event carries the same
    headers and, when given, the same query string as the request it is the floor for."""
    BODY["value"] = body
    event = common.api_event("GET", "/api/ping", query, token_value=common.token(1))
    ctx = common.LambdaContext()

    def call() -> Any:
        return trivial(event, ctx)

    result = call()
    assert result["statusCode"] == 200 and result["body"] == body, result
    return call


def raw_redis_get(size: int, namespace: str) -> Callable[[], Any]:
    """redis-py GET of a `size`-byte value (own client: same library, hiredis parser)."""
    client = common.redis_client()
    key = f"{namespace}:floor:{size}"
    client.set(key, b"x" * size, px=600_000)
    return lambda: client.get(key)


class PgFloors:
    """pg8000 `SELECT 1` and a bare one-row INSERT transaction (BEGIN; INSERT; COMMIT)."""

    def __init__(self, database: str) -> None:
        self.conn = common.connect(database)
        self.conn.run("CREATE TABLE IF NOT EXISTS bench_scratch (id bigserial PRIMARY KEY, v text NOT NULL)")

    def select1(self) -> Any:
        return self.conn.run("SELECT 1")

    def insert_txn(self) -> None:
        self.conn.run("BEGIN")
        self.conn.run("INSERT INTO bench_scratch (v) VALUES (:v)", v="bench")
        self.conn.run("COMMIT")

    def close(self) -> None:
        self.conn.run("TRUNCATE bench_scratch")
        self.conn.close()


def measure(database: str, namespace: str, body: str, n: int) -> dict[str, Any]:
    """The floors on their own (the tier and booking measurements re-measure their floor
    interleaved with the target; these are the headline figures)."""
    pg = PgFloors(database)
    try:
        cases = {
            "trivial_route": (trivial_route_call(body), None),
            "redis_get": (raw_redis_get(len(body), namespace), None),
            "pg_select1": (pg.select1, None),
            "pg_insert_txn": (pg.insert_txn, None),
        }
        out = common.interleaved(cases, n)
        out["insert_txn"] = out["pg_insert_txn"]
    finally:
        pg.close()
    out["body_bytes"] = {"n": len(body)}
    for name, s in out.items():
        if "p50_us" in s:
            common.say(f"floor {name}: p50 {s['p50_us']:.1f} us, p99 {s['p99_us']:.1f} us")
    return out
