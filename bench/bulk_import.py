"""Bulk patient import: POST /api/admin/patients/bulk with 1,000 patients through
`app.app(event, ctx)` (as Lambda runs it: HTTP parsing, auth, validation of every row, one
upsert statement, invalidation), on a fresh database with one tenant. Five imports of new
patients, then five that update the same 1,000. Target: under 2 s each.

Run: `eval "$(.venv/bin/python tools/localenv.py)" && .venv/bin/python -m bench.bulk_import`
"""
from __future__ import annotations

import statistics
import time

from bench import common
from chalicelib import runtime
from support import databases

DATABASE = "hb_bench_bulk"
PATIENTS = 1000
ROUNDS = 5
TARGET_S = 2.0


def _event(token: str, prefix: str) -> dict:
    rows = [{"name": f"Imported Patient {i}", "birthDate": "1980-01-01", "recordNumber": f"{prefix}-{i:04d}"}
            for i in range(PATIENTS)]
    return common.api_event("POST", "/api/admin/patients/bulk", token_value=token,
                            body={"clientId": 1, "patients": rows})


def _timed_imports(app: object, token: str, prefixes: list[str]) -> list[float]:
    seconds = []
    for prefix in prefixes:
        started = time.perf_counter()
        answer = app(_event(token, prefix), common.LambdaContext())  # type: ignore[operator]
        seconds.append(time.perf_counter() - started)
        assert answer["statusCode"] == 200, answer["body"]
    return seconds


def main() -> None:
    databases.create_named(DATABASE, replace=True)
    conn = common.connect(DATABASE)
    conn.run("INSERT INTO tenant (id, name, time_zone) VALUES (1, 'Bench', 'Europe/Berlin')")
    conn.close()
    namespace = common.new_namespace()
    common.use_database(DATABASE, namespace)
    import app as app_module

    token = common.token(1, "admin")
    try:
        _timed_imports(app_module.app, token, ["warm"])  # imports, connections, prepared statements
        created = _timed_imports(app_module.app, token, [f"new{r}" for r in range(ROUNDS)])
        updated = _timed_imports(app_module.app, token, [f"new{r}" for r in range(ROUNDS)])
    finally:
        runtime.reset()
        common.delete_namespace(namespace)
        common.drop_database(DATABASE)
    for label, seconds in (("new patients", created), ("updates", updated)):
        verdict = "PASS" if max(seconds) < TARGET_S else "FAIL"
        print(f"bulk import of {PATIENTS} {label}: median {statistics.median(seconds) * 1000:.0f} ms,"
              f" max {max(seconds) * 1000:.0f} ms (target < {TARGET_S:.0f} s): {verdict}")


if __name__ == "__main__":
    main()
