"""python -m bench [--quick | --full]: floors, tiers, before/after on the large dataset,
multi-process workload with staleness checks (also on a private Redis Cluster and with a
private streaming read replica), Redis health,
HTTP, peers, booking, cold start.

Creates its own databases (hb_bench_small, fresh each run; hb_bench_large, seeded once and
reused) and its own Redis namespace (deleted at the end). Writes bench/results/<stamp>.json,
.md and .png; a run of every section (no --only) also copies the report to
bench/results/latest.md / latest.png and writes its targets into the README. Prints one
PASS/FAIL line per target; the exit status is 1 if any target failed.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
import traceback
from typing import Any, Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench import common  # noqa: E402

# HTTP clients: as many keep-alive threads as this machine's 2 cores in both modes. With more
# clients than cores, the p50 measures queueing (Little's law), not the time per request.
PROFILES = {
    "quick": dict(n=2000, n_l3=40, n_live=6, n_view=30, n_hit=3000, processes=4, duration=20.0, warmup=10.0,
                  redis_n=2000, http_threads=2, http_s=5.0, peer_mem=20000, peer_redis=2000, booking=300, cold_runs=7),
    "full": dict(n=10000, n_l3=200, n_live=21, n_view=150, n_hit=20000, processes=4, duration=60.0, warmup=20.0,
                 redis_n=10000, http_threads=2, http_s=20.0, peer_mem=100000, peer_redis=10000, booking=1500,
                 cold_runs=15),
}
SECTIONS = ("floors", "tiers", "peers", "redis", "booking", "coldstart", "http", "workload", "cluster", "replica",
            "large",
            "fleet")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="short run (default; target < 10 min incl. the large seed)")
    mode.add_argument("--full", action="store_true", help="longer runs and more iterations")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(SECTIONS)}")
    parser.add_argument("--skip-large", action="store_true", help="skip the before/after on the large dataset")
    parser.add_argument("--checker-self-test", action="store_true",
                        help="run only a short workload with invalidation switched off in the workers and"
                             " show that the staleness checker reports violations (exit 0 if it does)")
    args = parser.parse_args(argv)
    if args.checker_self_test:
        return self_test()
    profile_name = "full" if args.full else "quick"
    p = PROFILES[profile_name]
    only = {s.strip() for s in args.only.split(",") if s.strip()} or set(SECTIONS)
    if args.skip_large:
        only.discard("large")

    # The app prints an EMF metrics line every 10 s (observability.py); keep this output readable.
    os.environ.setdefault("METRICS_FLUSH_INTERVAL", "3600")
    import warnings

    warnings.filterwarnings("ignore", message="No application metrics to publish")
    import chalice
    import pg8000
    import redis

    started = time.monotonic()
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    results: dict[str, Any] = {"meta": {
        "mode": profile_name, "complete": only == set(SECTIONS), "timestamp": stamp, "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "chalice": chalice.__version__, "redis_py": redis.__version__, "pg8000": pg8000.__version__,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()], "profile": p, "notes": []}}
    errors: dict[str, str] = {}

    def section(name: str, fn: Callable[[], Any]) -> Any:
        if name not in only:
            return None
        common.say(f"== {name}")
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - report the rest anyway
            errors[name] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
            return None

    common.say(f"mode {profile_name}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
    small = common.ensure_small()
    namespace = common.new_namespace()
    common.use_database(small, namespace)
    common.say(f"Redis namespace {namespace}")

    day = common.next_day_with_free_slots(1)
    common.say(f"slots and lists read for {day}, the first day after today with free slots")
    try:
        tiers = section("tiers", lambda: __import__("bench.tiers", fromlist=["x"]).measure(
            namespace, day, p["n"], p["n_l3"]))
        results["tiers"] = tiers
        slots_body = "x" * 2000
        sample_l2 = b"x" * 2000
        if tiers:
            import app as app_module

            ev = common.api_event("GET", "/api/slots/available", {"clientId": "1", "date": day.isoformat()},
                                  common.token(1))
            slots_body = app_module.app(ev, common.LambdaContext())["body"]
            rc = common.redis_client()
            keys = list(rc.scan_iter(match=f"{namespace}:b:{{t1}}:slots:*", count=1000))
            sample_l2 = rc.get(keys[0]) if keys else slots_body.encode()
        results["meta"]["peer_payload_bytes"] = len(slots_body)
        from bench import floors

        results["floors"] = section("floors", lambda: floors.measure(small, namespace, slots_body, p["n"]))
        from bench.tiers import l1_lookup_callable, l2_lookup_case

        results["peers"] = section("peers", lambda: __import__("bench.peers", fromlist=["x"]).measure(
            namespace, slots_body, p["peer_mem"], p["peer_redis"], ours=l1_lookup_callable(),
            ours_l2=l2_lookup_case(day)))
        results["redis_health"] = section("redis", lambda: __import__("bench.redis_health", fromlist=["x"]).measure(
            namespace, p["redis_n"], sample_l2))
        results["booking"] = section("booking", lambda: __import__("bench.booking", fromlist=["x"]).measure(
            small, p["booking"]))
        results["coldstart"] = section("coldstart", lambda: __import__("bench.coldstart", fromlist=["x"]).measure(
            namespace, p["cold_runs"]))
        results["http"] = section("http", lambda: __import__("bench.http", fromlist=["x"]).measure(
            small, namespace, p["http_threads"], p["http_s"]))
        results["fleet"] = section("fleet", lambda: __import__("bench.fleet", fromlist=["x"]).measure(
            p["n"], 3.0 if profile_name == "quick" else 10.0))
        results["workload"] = section("workload", lambda: __import__("bench.workload", fromlist=["x"]).run(
            small, namespace, p["processes"], p["duration"], p["warmup"]))
        results["workload_cluster"] = section(
            "cluster", lambda: __import__("bench.workload", fromlist=["x"]).run_on_cluster(
                small, common.new_namespace(), p["processes"], p["duration"], p["warmup"]))
        results["workload_replica"] = section(
            "replica", lambda: __import__("bench.workload", fromlist=["x"]).run_with_replica(
                p["processes"], p["duration"], p["warmup"]))

        def large() -> Any:
            info = common.ensure_large()
            results["meta"]["large"] = info
            if not info["reused"]:
                results["meta"]["notes"].append(f"the large dataset was seeded in this run ({info['seed_s']:.0f} s);"
                                                " later runs reuse it")
            large_ns = common.new_namespace()
            try:
                from bench import beforeafter

                return beforeafter.measure(info["database"], large_ns, p["n_live"], p["n_view"], p["n_hit"])
            finally:
                common.delete_namespace(large_ns)
                common.use_database(small, namespace)

        results["beforeafter"] = section("large", large)
    finally:
        removed = common.delete_namespace(namespace)
        common.say(f"deleted {removed} Redis keys of {namespace}")
    results["errors"] = errors
    results["meta"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    results["meta"]["elapsed_s"] = time.monotonic() - started
    from bench import report

    verdicts, md_path = report.write(results)
    copied = " (and bench/results/latest.md, latest.png, README)" if results["meta"]["complete"] else ""
    common.say(f"report: {md_path}{copied}; {results['meta']['elapsed_s']:.0f} s in all")
    for v in verdicts:
        print(f"{v['status']}  {v['target']}: {v['detail']}", flush=True)
    for name, err in errors.items():
        print(f"ERROR  section {name}: {err}", flush=True)
    return 1 if errors or any(v["status"] == "FAIL" for v in verdicts) else 0


def self_test() -> int:
    from bench import workload

    small = common.ensure_small(common.SMALL_DB + "_selftest")
    namespace = common.new_namespace()
    try:
        result = workload.run(small, namespace, 2, 15.0, 2.0, break_invalidation=True)
    finally:
        common.delete_namespace(namespace)
        common.drop_database(small)
    caught = result["violations"] > 0
    print(f"{'PASS' if caught else 'FAIL'}  staleness checker self-test (invalidation off): {result['violations']}"
          f" violations detected in {result['staleness_checks']} checked reads;"
          f" samples {result['violation_samples'][:2]}")
    return 0 if caught else 1


if __name__ == "__main__":
    sys.exit(main())
