"""Cold start: new processes, as a new Lambda container starts, in alternating rounds.

- floor: `python -c "import chalice"` (bare Chalice, same interpreter and venv);
- `python -c "import app"`;
- first answer: a new process that imports app and answers one GET /api/departments with a
  valid token through `app.app(event, context)`, from the database: each run has its own
  Redis namespace, so the read misses L1 and L2 (`X-Cache: DB` is checked), and it opens
  the process's first PostgreSQL and Redis connections.

Each figure is the median wall time from starting the process to reading the line it
prints when done (interpreter start included; its exit is not: a Lambda container does not
exit after its first answer). The first-answer process also reports its own split.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from bench import common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DONE = "cold-start-done"  # the line that ends the timing (the app's log lines go to stdout too)
# The child imports nothing of the bench (bench.common imports pg8000) before `import app`.
FIRST_ANSWER = """\
import json, sys, time
started = time.perf_counter()
import app
imported = time.perf_counter()

class Context:
    function_name = "hospital-booking-dev"
    aws_request_id = "bench-cold-start"
    memory_limit_in_mb = 1024
    def get_remaining_time_in_millis(self): return 10_000

response = app.app(json.loads(sys.argv[1]), Context())
done = time.perf_counter()
print(%r, json.dumps({"status": response["statusCode"], "x_cache": response["headers"].get("X-Cache"),
                     "import_ms": (imported - started) * 1000, "answer_ms": (done - imported) * 1000}), flush=True)
""" % DONE
CASES = {"floor_import_chalice": f"import chalice\nprint('{DONE} {{}}', flush=True)",
         "import_app": f"import app\nprint('{DONE} {{}}', flush=True)", "first_answer": FIRST_ANSWER}


def _run(code: str, args: list[str], env: dict[str, str]) -> tuple[float, Any]:
    """Seconds from starting `python -c code args...` (in the project root) to its DONE
    line, and the JSON on that line."""
    started = time.perf_counter()
    with subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        line = ""
        for line in child.stdout:
            if line.startswith(DONE):
                break
        elapsed = time.perf_counter() - started
        _, errors = child.communicate(timeout=60)
    if child.returncode != 0 or not line.startswith(DONE):
        raise RuntimeError(f"cold-start child failed: {errors[-2000:]}")
    return elapsed, json.loads(line[len(DONE):])


def measure(namespace: str, runs: int) -> dict[str, Any]:
    """Medians (ms) of `runs` alternating rounds of the three cases, after one warm-up round
    (so every case finds the files in the page cache)."""
    event = json.dumps(common.api_event("GET", "/api/departments", {"clientId": "1"}, common.token(1)))
    walls: dict[str, list[float]] = {name: [] for name in CASES}
    splits: list[dict[str, Any]] = []
    namespaces = []
    try:
        for round_no in range(runs + 1):
            for name, code in CASES.items():
                env = dict(os.environ)
                args = []
                if name == "first_answer":
                    env["CACHE_NAMESPACE"] = f"{namespace}c{round_no}"  # cold in L1 and L2
                    namespaces.append(env["CACHE_NAMESPACE"])
                    args = [event]
                elapsed, reported = _run(code, args, env)
                if name == "first_answer" and (reported["status"], reported["x_cache"]) != (200, "DB"):
                    raise RuntimeError(f"the first answer was not a 200 from the database: {reported}")
                if round_no:
                    walls[name].append(elapsed)
                    if name == "first_answer":
                        splits.append(reported)
    finally:
        for ns in namespaces:
            common.delete_namespace(ns)
    out: dict[str, Any] = {name: {"n": len(v), "p50_ms": statistics.median(v) * 1000,
                                  "min_ms": min(v) * 1000, "max_ms": max(v) * 1000} for name, v in walls.items()}
    out["first_answer_split"] = {key: statistics.median(s[key] for s in splits) for key in ("import_ms", "answer_ms")}
    floor = out["floor_import_chalice"]["p50_ms"]
    for name in ("import_app", "first_answer"):
        common.say(f"cold start {name}: p50 {out[name]['p50_ms']:.1f} ms = {out[name]['p50_ms'] / floor:.2f}x"
                   f" bare import chalice ({floor:.1f} ms)")
    return out
