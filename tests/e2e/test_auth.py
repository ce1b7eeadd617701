"""Tokens and tenants: every tenant-scoped route refuses other tenants (403) and any token
that is missing, malformed, forged, expired, unsigned or lacks a claim (401)."""
from __future__ import annotations

import base64
import datetime as dt
import json
import time
import warnings

import jwt
import pytest

from tests.conftest import TEST_AUTH_SECRET

# Any real calendar date: these requests are refused for their token or tenant before any data is read.
# A day inside the slot horizon (slot listings refuse days outside it), found from today.
DAY = dt.datetime.now(dt.timezone.utc).date().isoformat()

# (method, path, body) with tenant 1 in the query or body.
ROUTES = [
    ("GET", "/api/departments?clientId=1", None),
    ("GET", "/api/doctors?clientId=1", None),
    ("GET", "/api/patients?clientId=1&q=a", None),
    ("GET", f"/api/slots/available?clientId=1&date={DAY}", None),
    ("GET", "/api/appointments/list?clientId=1", None),
    ("GET", "/api/dashboard/stats?clientId=1", None),
    ("POST", "/api/appointments", {"clientId": 1, "slotId": 1, "patientId": 1}),
    ("POST", "/api/appointments/1/cancel", {"clientId": 1}),
]
ROUTE_IDS = [f"{m} {p.split('?')[0]}" for m, p, _ in ROUTES]
ALL_ROUTES = ROUTES + [("GET", "/api/cache/stats", None)]
ALL_IDS = ROUTE_IDS + ["GET /api/cache/stats"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _claims(**overrides) -> dict:
    claims = {"sub": "admin-1", "tenant": 1, "role": "admin", "exp": int(time.time()) + 3600}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _unsigned(claims: dict) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def _call(client, method: str, path: str, body, headers: dict):
    if method == "GET":
        return client.http.get(path, headers=headers)
    return client.http.post(path, headers={**headers, "Content-Type": "application/json"}, body=json.dumps(body))


def _assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.body
    error = response.json_body["error"]
    assert error["code"] == code and isinstance(error["message"], str) and error["message"]


BAD_AUTH = {
    "missing": None,
    "empty": "",
    "bearer-only": "Bearer ",
    "basic-scheme": "Basic dXNlcjpwYXNz",
    "no-scheme": "TOKEN",
    "malformed": "Bearer not-a-jwt",
    "two-segments": "Bearer abc.def",
    "garbage-segments": "Bearer a.b.c",
    "forged": "Bearer " + jwt.encode(_claims(), "wrong-secret-0123456789-0123456789", algorithm="HS256"),
    "expired": "Bearer " + jwt.encode(_claims(exp=int(time.time()) - 60), TEST_AUTH_SECRET, algorithm="HS256"),
    "exp-year-3000": "Bearer " + jwt.encode(_claims(exp=32503680000), TEST_AUTH_SECRET, algorithm="HS256"),
    "exp-huge": "Bearer " + jwt.encode(_claims(exp=10**400), TEST_AUTH_SECRET, algorithm="HS256"),
    "exp-string": "Bearer " + jwt.encode(_claims(exp="tomorrow"), TEST_AUTH_SECRET, algorithm="HS256"),
    "exp-bool": "Bearer " + jwt.encode(_claims(exp=True), TEST_AUTH_SECRET, algorithm="HS256"),
    "lifetime-over-24h": "Bearer " + jwt.encode(_claims(iat=int(time.time()) - 60, exp=int(time.time()) + 86400),
                                                TEST_AUTH_SECRET, algorithm="HS256"),
    "iat-in-future": "Bearer " + jwt.encode(_claims(iat=int(time.time()) + 600), TEST_AUTH_SECRET, algorithm="HS256"),
    "iat-huge": "Bearer " + jwt.encode(_claims(iat=-10**400), TEST_AUTH_SECRET, algorithm="HS256"),
    "tenant-huge": "Bearer " + jwt.encode(_claims(tenant=2**70), TEST_AUTH_SECRET, algorithm="HS256"),
    "alg-none": "Bearer " + _unsigned(_claims()),
    "alg-none-upper": "Bearer " + _b64(json.dumps({"alg": "None", "typ": "JWT"}).encode()) + "."
                      + _b64(json.dumps(_claims()).encode()) + ".",
    "alg-hs512": None,  # built below
    "tampered-payload": None,  # built below
    "no-sub": "Bearer " + jwt.encode(_claims(sub=None), TEST_AUTH_SECRET, algorithm="HS256"),
    "no-tenant": "Bearer " + jwt.encode(_claims(tenant=None), TEST_AUTH_SECRET, algorithm="HS256"),
    "no-role": "Bearer " + jwt.encode(_claims(role=None), TEST_AUTH_SECRET, algorithm="HS256"),
    "no-exp": "Bearer " + jwt.encode(_claims(exp=None), TEST_AUTH_SECRET, algorithm="HS256"),
    "unknown-role": "Bearer " + jwt.encode(_claims(role="root"), TEST_AUTH_SECRET, algorithm="HS256"),
    "tenant-as-string": "Bearer " + jwt.encode(_claims(tenant="1"), TEST_AUTH_SECRET, algorithm="HS256"),
    "patient-without-patientId": "Bearer " + jwt.encode(_claims(role="patient"), TEST_AUTH_SECRET,
                                                        algorithm="HS256"),
}
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the short test secret is below HS512's recommended key length
    BAD_AUTH["alg-hs512"] = "Bearer " + jwt.encode(_claims(), TEST_AUTH_SECRET, algorithm="HS512")
_good = jwt.encode(_claims(), TEST_AUTH_SECRET, algorithm="HS256").split(".")
BAD_AUTH["tampered-payload"] = "Bearer " + ".".join(
    [_good[0], _b64(json.dumps(_claims(tenant=2)).encode()), _good[2]])


@pytest.mark.parametrize("method,path,body", ALL_ROUTES, ids=ALL_IDS)
@pytest.mark.parametrize("kind", list(BAD_AUTH))
def test_bad_token_is_401(client, app_env, method, path, body, kind):
    value = BAD_AUTH[kind]
    headers = {} if value is None else {"Authorization": value}
    _assert_error(_call(client, method, path, body, headers), 401, "unauthorized")


@pytest.mark.parametrize("method,path,body", ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("role,patient", [("admin", None), ("staff", None), ("patient", 1)])
def test_other_tenants_client_id_is_403(client, app_env, method, path, body, role, patient):
    # A valid token of tenant 2 naming tenant 1's clientId.
    headers = app_env.headers(2, role, 201 if patient else None)
    _assert_error(_call(client, method, path, body, headers), 403, "forbidden")


@pytest.mark.parametrize("method,path,body", ROUTES, ids=ROUTE_IDS)
def test_no_side_effect_for_rejected_writes(client, app_env, method, path, body):
    before = app_env.sql("SELECT count(*), count(*) FILTER (WHERE status = 'cancelled') FROM appointment")
    _call(client, method, path, body, app_env.headers(3, "admin"))
    _call(client, method, path, body, {"Authorization": BAD_AUTH["forged"]})
    after = app_env.sql("SELECT count(*), count(*) FILTER (WHERE status = 'cancelled') FROM appointment")
    assert before == after


def test_valid_token_accepted_and_cached_token_still_expires(client, app_env):
    """A token verified once (and remembered) is refused once its exp and the 30 s clock
    leeway have passed; within the leeway it is still accepted."""
    token = jwt.encode(_claims(exp=int(time.time()) - 28), TEST_AUTH_SECRET, algorithm="HS256")
    ok = client.http.get("/api/departments?clientId=1", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200, ok.body
    time.sleep(2.1)
    _assert_error(client.http.get("/api/departments?clientId=1", headers={"Authorization": f"Bearer {token}"}),
                  401, "unauthorized")


def test_bearer_scheme_is_case_insensitive(client, app_env):
    token = app_env.token(1, "admin")
    response = client.http.get("/api/departments?clientId=1", headers={"Authorization": f"bearer {token}"})
    assert response.status_code == 200, response.body


def test_tokens_of_a_replaced_secret_are_refused(client, app_env):
    """Verified tokens and read plans are remembered per secret: after a rotation the old
    token is refused even for a request that was answered a moment before."""
    from chalicelib.auth import issue_token
    from tests.helpers_servers import patched_environ

    url = "/api/departments?clientId=1"
    old = {"Authorization": f"Bearer {app_env.token(1, 'admin')}"}
    assert client.http.get(url, headers=old).status_code == 200
    rotated = "rotated-test-secret-0123456789abcdefghijklmnop"
    with patched_environ({"AUTH_SECRET": rotated}):
        _assert_error(client.http.get(url, headers=old), 401, "unauthorized")
        new = {"Authorization": f"Bearer {issue_token(rotated, 1, 'admin')}"}
        assert client.http.get(url, headers=new).status_code == 200


def test_token_of_the_longest_allowed_lifetime_is_accepted(client, app_env):
    now = int(time.time())
    token = jwt.encode(_claims(iat=now, exp=now + 86400), TEST_AUTH_SECRET, algorithm="HS256")
    response = client.http.get("/api/departments?clientId=1", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.body


def test_a_shorter_maximum_lifetime_is_enforced(client, app_env):
    from tests.helpers_servers import patched_environ

    now = int(time.time())
    token = jwt.encode(_claims(iat=now, exp=now + 7200), TEST_AUTH_SECRET, algorithm="HS256")
    with patched_environ({"AUTH_MAX_TOKEN_TTL": "3600"}):
        _assert_error(client.http.get("/api/departments?clientId=1", headers={"Authorization": f"Bearer {token}"}),
                      401, "unauthorized")


def test_a_short_secret_is_refused(client, app_env):
    """A secret under 32 bytes signs nothing the API accepts (503, the service's fault, not
    the caller's), and the operator commands refuse to start with it."""
    import subprocess
    import sys

    from tests.helpers_servers import PROJECT_DIR, patched_environ

    short = "only-26-bytes-of-secret-xx"
    token = jwt.encode(_claims(), short, algorithm="HS256")
    with patched_environ({"AUTH_SECRET": short}):
        _assert_error(client.http.get("/api/departments?clientId=1", headers={"Authorization": f"Bearer {token}"}),
                      503, "misconfigured")
    for command in (["token", "--tenant", "1", "--role", "admin"], ["serve", "--port", "1"]):
        done = subprocess.run([sys.executable, "-m", "chalicelib.cli", *command], cwd=PROJECT_DIR,
                              env={**app_env.env, "PATH": "/usr/bin:/bin", "AUTH_SECRET": short},
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert done.stderr.splitlines() == [
            "AUTH_SECRET: too short; must be at least 32 bytes (for example: openssl rand -base64 32)"]


def test_token_command_refuses_a_lifetime_over_the_maximum(app_env):
    import subprocess
    import sys

    from tests.helpers_servers import PROJECT_DIR

    done = subprocess.run([sys.executable, "-m", "chalicelib.cli", "token", "--tenant", "1", "--role", "admin",
                           "--ttl", "86401"], cwd=PROJECT_DIR, env={**app_env.env, "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "AUTH_MAX_TOKEN_TTL" in done.stderr, done.stderr
