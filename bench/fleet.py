"""The cost of publishing fleet statistics (chalicelib.cache.fleet), and that it stays off
the L1-hit path.

- publish: the runtime's `fleet.publish(cache)` alone (fold of the pending latency samples, JSON,
  one pipelined round trip), with as many pending samples as an interval of L1 hits leaves;
- requests per publish: L1-hit requests through `app.app(event, ctx)` for a few seconds at
  the default STATS_PUBLISH_INTERVAL, counting publishes;
- the L1-hit request with publishing due every request's end (interval 0) and never
  (interval 1e9), in alternating blocks; `RequestScope.exit()` alone when nothing is due.

`python -m bench.fleet` runs this piece alone (small dataset, own namespace) and prints
JSON; `python -m bench --only fleet` runs it inside the report.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from bench import common


def _l1_hit_call() -> tuple[Any, Any]:
    """An L1-hit GET /api/departments through the handler, and the context."""
    import app as app_module

    event = common.api_event("GET", "/api/departments", {"clientId": "1"}, common.token(1, "admin"))
    ctx = common.LambdaContext()

    def call() -> dict:
        return app_module.app(event, ctx)

    for _ in range(3):
        assert call()["statusCode"] == 200
    assert call()["headers"]["X-Cache"] == "L1"
    return call, ctx


def measure(n: int = 2000, run_s: float = 6.0) -> dict[str, Any]:
    """Publish cost, requests per publish, and the L1-hit request with/without publishing."""
    from chalicelib import runtime
    from chalicelib.cache import fleet
    from chalicelib.observability import request_scope

    call, _ = _l1_hit_call()
    container = runtime.current()
    cache, publisher = container.cache, container.fleet
    out: dict[str, Any] = {"interval_s": fleet.publish_interval_s(), "expiry_s": fleet.expiry_s()}
    saved = request_scope.publish_interval

    # Requests per publish at the default interval, L1 hits as fast as one thread goes.
    request_scope.publish_interval = fleet.publish_interval_s()
    request_scope.next_publish = request_scope.next_due = time.monotonic()
    before, requests = publisher.published, 0
    deadline = time.monotonic() + run_s
    while time.monotonic() < deadline:
        for _ in range(200):
            call()
        requests += 200
    publishes = publisher.published - before
    out["requests_per_publish"] = {"requests": requests, "publishes": publishes, "seconds": run_s,
                                   "per_publish": requests / publishes if publishes else None,
                                   "rps": requests / run_s}

    # One publish alone, with the pending samples of one interval of such traffic.
    from chalicelib.cache.stats import PENDING_SAMPLES

    pending = min(PENDING_SAMPLES, int(out["requests_per_publish"]["rps"] * fleet.publish_interval_s()))
    request_scope.publish_interval = 1e9
    request_scope.next_publish = request_scope.next_due = time.monotonic() + 1e9

    def fill() -> None:
        cache.stats.l1.latencies_us.extend([0.4] * pending)

    empty = common.summary(common.time_calls(lambda: publisher.publish(cache), max(n // 10, 50)))
    full = common.summary(common.time_calls(lambda: publisher.publish(cache), max(n // 20, 30), fill))
    out["publish_no_pending"] = empty
    out["publish_with_pending"] = {**full, "pending_samples": pending}
    snapshot = fleet.container_snapshot(cache, container.container_id)
    out["payload_bytes"] = len(json.dumps(snapshot, separators=(",", ":")))
    per_publish = out["requests_per_publish"]["per_publish"]
    out["amortized_us_per_request"] = full["p50_us"] / per_publish if per_publish else None

    # The L1-hit request when a publish is due at every request's end, and when never.
    def due_always() -> None:
        request_scope.publish_interval = 0.0
        request_scope.next_publish = request_scope.next_due = 0.0

    def due_never() -> None:
        request_scope.publish_interval = 1e9
        request_scope.next_publish = request_scope.next_due = time.monotonic() + 1e9

    out["l1_hit"] = common.interleaved({"publish_never": (call, due_never),
                                        "publish_every_request": (call, due_always)}, n)
    due_never()
    out["scope_exit_not_due"] = common.tight_loop(request_scope.exit, 200_000)
    request_scope.publish_interval = saved
    request_scope.next_publish = request_scope.next_due = time.monotonic()
    common.say(f"fleet publish: {empty['p50_us']:.0f} us alone, {full['p50_us']:.0f} us with {pending:,} pending"
               f" samples; {per_publish or 0:,.0f} L1-hit requests per publish at {out['interval_s']:g} s"
               f" -> {out['amortized_us_per_request'] or 0:.3f} us per request;"
               f" L1 hit {out['l1_hit']['publish_never']['p50_us']:.1f} us (never due) vs"
               f" {out['l1_hit']['publish_every_request']['p50_us']:.1f} us (due every request);"
               f" RequestScope.exit() not due {out['scope_exit_not_due']['p50_us'] * 1000:.0f} ns")
    return out


def main() -> int:
    os.environ.setdefault("METRICS_FLUSH_INTERVAL", "3600")
    small = common.ensure_small()
    namespace = common.new_namespace()
    common.use_database(small, namespace)
    try:
        result = measure()
    finally:
        common.delete_namespace(namespace)
    print(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
