"""Wrong settings are refused when a process starts, each named precisely: the variable,
its problem and what is allowed, never a secret's value.

Three places see them: `load_settings` (the problem lines), the app as Lambda calls it (a
new process: every route, health included, answers 503 `misconfigured`; the cold start
logs the problems once at ERROR; scheduled functions log them and return) and the
operator commands (exit 2, exactly one stderr line per problem, no traceback).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from chalicelib.settings import SettingsError, load_settings
from tests.e2e.test_http_layer import assert_error_shape
from tests.helpers_servers import PROJECT_DIR, patched_environ

SHORT_SECRET = "short-secret-VALUE-xyz"
DB_PASSWORD = "db-PASSWORD-never-shown"
REDIS_PASSWORD = "redis-PASSWORD-never-shown"
SECRETS = (SHORT_SECRET, DB_PASSWORD, REDIS_PASSWORD)
SECRET_RULE = "must be at least 32 bytes (for example: openssl rand -base64 32)"
RESOURCES = ("APPOINTMENTS, DASHBOARD, DEPARTMENTS, DOCTORS, FHIR_APPOINTMENT, FHIR_APPOINTMENTS, FHIR_BULK,"
             " FHIR_PATIENT, FHIR_PATIENTS, FHIR_PRACTITIONER, FHIR_PRACTITIONERS, FHIR_SCHEDULE, FHIR_SCHEDULES,"
             " FHIR_SERVICE, FHIR_SERVICES, FHIR_SLOTS, PATIENTS, SLOTS")
BOOLEANS = "must be one of 1, true, yes, on, 0, false, no, off"

# (environment, the problem lines it gives)
CASES: dict[str, tuple[dict[str, str], list[str]]] = {
    "unknown-resource": ({"CACHE_TTL_NOPE": "5"},
                         [f"CACHE_TTL_NOPE=5: names no cached resource; the resources are {RESOURCES}"]),
    "unknown-stale-resource": ({"CACHE_STALE_SLOT": "60"},
                               [f"CACHE_STALE_SLOT=60: names no cached resource; the resources are {RESOURCES}"]),
    "pool-size-zero": ({"DB_POOL_SIZE": "0"}, ["DB_POOL_SIZE=0: must be a whole number from 1 to 100"]),
    "timeouts": ({"DB_STATEMENT_TIMEOUT_MS": "-5", "REDIS_CONNECT_TIMEOUT": "soon", "REDIS_READ_TIMEOUT": "nan"},
                 ["DB_STATEMENT_TIMEOUT_MS=-5: must be a whole number from 1 to 3600000",
                  "REDIS_CONNECT_TIMEOUT=soon: must be a number of seconds from 0.001 to 60",
                  "REDIS_READ_TIMEOUT=nan: must be a number of seconds from 0.001 to 60"]),
    "booleans": ({"REDIS_TLS": "maybe", "DB_PREPARED_STATEMENTS": "2", "TRACING": "enabled"},
                 [f"DB_PREPARED_STATEMENTS=2: {BOOLEANS}", f"REDIS_TLS=maybe: {BOOLEANS}",
                  f"TRACING=enabled: {BOOLEANS}"]),
    "short-secret": ({"AUTH_SECRET": SHORT_SECRET}, [f"AUTH_SECRET: too short; {SECRET_RULE}"]),
    "database-url-port": ({"DATABASE_URL": f"postgresql://app:{DB_PASSWORD}@db.internal:99999/hospital"},
                          ["DATABASE_URL: its port must be a whole number from 1 to 65535"]),
    "database-url-scheme": ({"DATABASE_URL": f"mysql://app:{DB_PASSWORD}@db.internal/hospital"},
                            ["DATABASE_URL: must be a postgresql:// URL "
                             "(postgresql://user:password@host:port/database)"]),
    "redis-url-db": ({"REDIS_URL": f"rediss://:{REDIS_PASSWORD}@cache.internal:6379/zero"},
                     ["REDIS_URL: its path must be a database number: a whole number from 0 up"]),
    "ssl-mode-and-port": ({"PGSSLMODE": "verify", "PGPORT": "5432x"},
                          ["PGPORT=5432x: must be a whole number from 1 to 65535",
                           "PGSSLMODE=verify: must be one of disable, allow, prefer, require, verify-full"]),
    "shared-secret-tokens-off-without-provider": (
        {"AUTH_SHARED_SECRET_TOKENS": "0"},
        ["AUTH_SHARED_SECRET_TOKENS=0: needs AUTH_OIDC_ISSUER and AUTH_OIDC_AUDIENCE (an identity provider): without"
         " them no token could be accepted"]),
    "cache-numbers": ({"CACHE_TTL_SLOTS": "-1", "CACHE_NAMESPACE": "hb:x", "STATS_EXPIRY": "0"},
                      ["CACHE_NAMESPACE=hb:x: must be 1 to 64 letters, digits, '_', '-' or '.'",
                       "CACHE_TTL_SLOTS=-1: must be a number of seconds from 0 to 518400",
                       "STATS_EXPIRY=0: must be a number of seconds from 0.05 to 86400"]),
}
COMBINED = [name for name in CASES if name != "database-url-scheme"]  # one DATABASE_URL at a time
EVERY_PROBLEM = {key: value for name in COMBINED for key, value in CASES[name][0].items()}
EVERY_LINE = sorted(line for name in COMBINED for line in CASES[name][1])
# Where a command would go if the settings were not refused: nothing listens there.
NOWHERE = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/hb_test_refused", "REDIS_URL": "redis://127.0.0.1:1/0",
           "AUTH_SECRET": "settings-test-secret-0123456789abcdef"}


def _problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(SettingsError) as refused:
        load_settings(env)
    return sorted(refused.value.problems)


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_wrong_value_is_named_with_what_is_allowed(case: str) -> None:
    env, lines = CASES[case]
    problems = _problems(env)
    assert problems == sorted(lines)
    assert not any(secret in problem for problem in problems for secret in SECRETS)


def test_every_problem_is_reported_at_once() -> None:
    assert _problems(EVERY_PROBLEM) == EVERY_LINE


def test_right_values_pass_and_an_unset_secret_is_not_a_problem_here() -> None:
    settings = load_settings({"DB_POOL_SIZE": "100", "REDIS_TLS": "Yes", "CACHE_TTL_SLOTS": "0",
                              "CACHE_STALE_DASHBOARD": "86400", "REDIS_READ_TIMEOUT": "0.2", "PGSSLMODE": "require"})
    assert (settings.db.pool_size, settings.redis.tls, settings.redis.read_timeout_s) == (100, True, 0.2)
    assert settings.cache.fresh_overrides == {"slots": 0.0} and settings.cache.stale_overrides == {"dashboard": 86400.0}
    assert settings.auth_secret == ""  # refused where tokens are signed or verified (below)


# -- the app, in this process (Chalice's test client) ----------------------------------------

def test_every_route_answers_503_misconfigured_until_the_settings_are_right(client: Any, app_env: Any) -> None:
    headers = app_env.headers()
    body = json.dumps({"clientId": 1, "slotId": 1, "patientId": 1})
    with patched_environ({"DB_POOL_SIZE": "0", "CACHE_TTL_NOPE": "5"}):
        answers = [client.http.get("/api/health"), client.http.get("/api/openapi.json"),
                   client.http.get("/api/departments?clientId=1", headers=headers),
                   client.http.get("/api/cache/stats", headers=headers),
                   client.http.post("/api/appointments", headers={**headers, "Content-Type": "application/json"},
                                    body=body)]
        for answer in answers:
            assert answer.status_code == 503, answer.body
            assert_error_shape(503, {k.lower(): v for k, v in answer.headers.items()}, answer.body, "misconfigured")
            message = json.loads(answer.body)["error"]["message"]
            assert "DB_POOL_SIZE=0: must be a whole number from 1 to 100" in message
            assert f"CACHE_TTL_NOPE=5: names no cached resource; the resources are {RESOURCES}" in message
    assert client.http.get("/api/health").status_code == 200


def test_an_unset_secret_refuses_authenticated_routes_only(client: Any, app_env: Any) -> None:
    headers = app_env.headers()
    with patched_environ({"AUTH_SECRET": ""}):
        answer = client.http.get("/api/departments?clientId=1", headers=headers)
        assert_error_shape(answer.status_code, {k.lower(): v for k, v in answer.headers.items()}, answer.body,
                           "misconfigured")
        assert answer.status_code == 503
        assert f"AUTH_SECRET: not set; {SECRET_RULE}" in json.loads(answer.body)["error"]["message"]
        assert client.http.get("/api/health").status_code == 200


# -- the app as Lambda runs it: a new process, API Gateway and scheduled events -------------

LAMBDA_PROBE = """
import json, sys, types
import app
from tests.e2e.test_http_layer import api_event

context = types.SimpleNamespace(aws_request_id="probe", function_name="hospital-booking-dev")
answers = [app.app(api_event("GET", path, query=query), context)
           for path, query in (("/api/health", None), ("/api/openapi.json", None),
                               ("/api/departments", {"clientId": "1"}), ("/api/health", None))]
schedule = {"detail-type": "Scheduled Event", "source": "aws.events", "time": "2026-01-01T00:00:00Z",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/refresh_views"], "detail": {},
            "id": "probe", "region": "us-east-1", "account": "123456789012", "version": "0"}
jobs = [app.refresh_views(schedule, context), app.extend_slots(schedule, context)]
print("PROBE " + json.dumps({"answers": answers, "jobs": jobs}))
"""


def test_a_cold_start_answers_503_and_logs_the_problems_once() -> None:
    env, lines = CASES["short-secret"]
    bad = {**NOWHERE, **env, "DB_POOL_SIZE": "0"}
    done = subprocess.run([sys.executable, "-c", LAMBDA_PROBE], cwd=PROJECT_DIR, env={**os.environ, **bad},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    expected = ["DB_POOL_SIZE=0: must be a whole number from 1 to 100", *lines]  # in the order they are read
    out = done.stdout.splitlines()
    probe = json.loads(next(line for line in out if line.startswith("PROBE "))[len("PROBE "):])
    for answer in probe["answers"]:
        headers = {k.lower(): v for k, v in answer["headers"].items()}
        assert_error_shape(answer["statusCode"], headers, answer["body"].encode(), "misconfigured")
        assert answer["statusCode"] == 503
        assert all(line in json.loads(answer["body"])["error"]["message"] for line in expected)
    assert probe["jobs"] == [{"status": "misconfigured", "problems": expected}] * 2
    errors = [json.loads(line) for line in out if line.startswith("{") and '"ERROR"' in line]
    assert [e["message"] for e in errors] == ["settings refused: " + "; ".join(expected)], out
    assert not any(secret in done.stdout + done.stderr for secret in SECRETS)


# -- the operator commands ------------------------------------------------------------------

COMMANDS = {
    "migrate": ["migrate"], "seed": ["seed", "--size", "small"], "refresh-views": ["refresh-views"],
    "token": ["token", "--tenant", "1", "--role", "admin"], "serve": ["serve", "--port", "1", "--no-schedules"],
}


def _command(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chalicelib.cli", *COMMANDS[command]], cwd=PROJECT_DIR,
                          env={"PATH": "/usr/bin:/bin", **NOWHERE, **env}, capture_output=True, text=True,
                          timeout=120, check=False)


def _assert_refused(done: subprocess.CompletedProcess[str], lines: list[str]) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert sorted(done.stderr.splitlines()) == sorted(lines), done.stderr
    assert done.stdout == ""
    assert not any(secret in done.stderr for secret in SECRETS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_exits_2_with_one_line_per_problem(command: str) -> None:
    _assert_refused(_command(command, EVERY_PROBLEM), EVERY_LINE)


@pytest.mark.parametrize(("case", "command"), [
    ("unknown-resource", "migrate"), ("pool-size-zero", "seed"), ("timeouts", "refresh-views"),
    ("booleans", "token"), ("short-secret", "serve"), ("database-url-scheme", "migrate"), ("redis-url-db", "seed")])
def test_a_command_names_each_kind_of_problem(case: str, command: str) -> None:
    env, lines = CASES[case]
    _assert_refused(_command(command, env), lines)


@pytest.mark.parametrize("command", ["token", "serve"])
def test_commands_that_sign_tokens_need_the_secret(command: str) -> None:
    _assert_refused(_command(command, {"AUTH_SECRET": ""}), [f"AUTH_SECRET: not set; {SECRET_RULE}"])
