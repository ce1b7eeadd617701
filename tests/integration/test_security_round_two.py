"""The second security audit's findings (docs/security.md), each reproduced against the real
database and Redis: unique principals and authorized replays, bounded state, no patient data
in key names, strict ids, printable subjects, Vary, diagnostics for staff only, fleet
statistics for operators only, and the live-key cap."""
from __future__ import annotations

import datetime as dt
import json
import uuid

import jwt
import pytest
import redis

from chalicelib.auth import issue_token
from chalicelib.booking.idempotency import max_live_keys
from chalicelib.cache.keys import VERSION_TTL_S
from tests.conftest import TEST_AUTH_SECRET
from tests.data_finders import new_patients
from tests.helpers_servers import free_future_slots

JSON = {"Content-Type": "application/json"}


def _bearer(token: str, **extra: str) -> dict[str, str]:
    return {**JSON, "Authorization": f"Bearer {token}", **extra}


def _patient_token(patient: int, sub: str | None = None) -> str:
    return issue_token(TEST_AUTH_SECRET, 1, "patient", sub=sub, patient_id=patient)


def _book_for(client, patient: int, slot: int) -> int:
    """Book `slot` for `patient` with a staff token; the appointment's id."""
    staff = issue_token(TEST_AUTH_SECRET, 1, "staff")
    response = client.http.post("/api/appointments", headers=_bearer(staff),
                                body=json.dumps({"clientId": 1, "slotId": slot, "patientId": patient}))
    assert response.status_code == 201, response.body
    return response.json_body["appointment"]["id"]


def _redis() -> redis.Redis:
    import os

    return redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))


def _namespace_keys(namespace: str) -> list[bytes]:
    return list(_redis().scan_iter(match=f"{namespace}:*", count=1000))


# -- 1. principals are unique and replays are authorized ---------------------------------

def test_cli_patient_tokens_have_distinct_subjects() -> None:
    subjects = {jwt.decode(_patient_token(p), options={"verify_signature": False})["sub"] for p in (5, 6)}
    assert len(subjects) == 2


def test_a_replayed_answer_never_reaches_another_patient_sharing_the_sub(client, app_env):
    """The audit's reproduction: patient 5 reschedules with a key; patient 6, whose token
    carries the same `sub`, sends the same request and key."""
    first, second = new_patients(app_env.sql, count=2)
    # Two slots of one doctor: never at the same time, so one patient may hold both.
    (slot_a, _, _), (slot_b, _, _) = free_future_slots(app_env, limit=2, min_per_group=2)
    appointment = _book_for(client, first, slot_a)
    path = f"/api/appointments/{appointment}/reschedule"
    body = json.dumps({"clientId": 1, "slotId": slot_b})
    key = f"resched-{uuid.uuid4()}"
    mine = client.http.post(path, body=body,
                            headers=_bearer(_patient_token(first, "shared"), **{"Idempotency-Key": key}))
    assert mine.status_code == 200, mine.body
    theirs = client.http.post(path, body=body,
                              headers=_bearer(_patient_token(second, "shared"), **{"Idempotency-Key": key}))
    assert theirs.status_code == 404, theirs.body  # what a fresh request of theirs gets
    assert "appointment" not in theirs.json_body
    # Another principal's key is invisible: another body under it is no 422 oracle.
    other_body = json.dumps({"clientId": 1, "slotId": slot_a})
    probe = client.http.post(path, body=other_body,
                             headers=_bearer(_patient_token(second, "shared"), **{"Idempotency-Key": key}))
    assert probe.status_code == 404, probe.body
    # The owner's retry still gets the first answer.
    again = client.http.post(path, body=body,
                             headers=_bearer(_patient_token(first, "shared"), **{"Idempotency-Key": key}))
    assert again.status_code == 200 and again.json_body == mine.json_body


def test_live_idempotency_keys_per_principal_are_capped(client, app_env):
    patient, = new_patients(app_env.sql, count=1)
    (slot, _, _), = free_future_slots(app_env, limit=1)
    _book_for(client, new_patients(app_env.sql, count=1)[0], slot)  # every keyed attempt below is a 409
    token = _patient_token(patient)
    cap = max_live_keys("patient")
    body = json.dumps({"clientId": 1, "slotId": slot, "patientId": patient})
    for n in range(cap):
        answer = client.http.post("/api/appointments", body=body,
                                  headers=_bearer(token, **{"Idempotency-Key": f"k{n}"}))
        assert answer.status_code == 409, (n, answer.body)
    refused = client.http.post("/api/appointments", body=body,
                               headers=_bearer(token, **{"Idempotency-Key": "one-more"}))
    assert refused.status_code == 429 and refused.json_body["error"]["code"] == "too_many_idempotency_keys"
    assert 0 < int(refused.headers["Retry-After"]) <= 24 * 3600
    # A key already held is still replayed, and a request without a key still runs.
    replay = client.http.post("/api/appointments", body=body, headers=_bearer(token, **{"Idempotency-Key": "k0"}))
    assert replay.status_code == 409
    assert client.http.post("/api/appointments", body=body, headers=_bearer(token)).status_code == 409


# -- 2. bounded state ------------------------------------------------------------------------

def _today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


@pytest.mark.parametrize("query", [
    "/api/slots/available?clientId=1&date=0001-01-01",
    "/api/slots/available?clientId=1&date=9999-12-31",
    "/api/appointments/list?clientId=1&date=0001-01-01",
    "/api/appointments/list?clientId=1&from=9999-01-01&to=9999-12-31",
])
def test_dates_outside_their_window_are_400(client, app_env, query):
    response = client.http.get(query, headers=_bearer(app_env.token(role="staff")))
    assert response.status_code == 400 and response.json_body["error"]["code"] == "validation_error"


def test_ten_thousand_distinct_reads_leave_no_immortal_key_and_bounded_tables(client, app_env):
    from chalicelib import runtime
    from chalicelib.auth import _VERIFIED_MAX, _verified
    from chalicelib.booking.caching import get_cache

    token = _patient_token(new_patients(app_env.sql, count=1)[0])
    day = _today().isoformat()
    r = _redis()
    immortal_before = sum(1 for k in _namespace_keys(app_env.namespace) if r.ttl(k) == -1)
    cache = get_cache()
    cache.coherence.max_known = 2000  # a small bound, so 10,000 reads cross it several times
    for doctor in range(1, 10_001):
        response = client.http.get(f"/api/slots/available?clientId=1&date={day}&doctorId={doctor}",
                                   headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
    keys = _namespace_keys(app_env.namespace)
    ttls = [r.ttl(k) for k in keys]
    assert sum(1 for t in ttls if t == -1) == immortal_before == 0
    version_ttls = [t for k, t in zip(keys, ttls) if b":v:" in k]
    assert len(version_ttls) >= 10_000 and all(0 < t <= VERSION_TTL_S for t in version_ttls)
    assert len(cache.coherence.known) <= 2000
    assert cache.l1.entries <= cache.config.l1_max_entries
    plans = runtime.current().plans
    assert len(plans.plans) <= plans.max_entries
    assert cache.keys.key.cache_info().currsize <= cache.keys.key.cache_info().maxsize
    assert len(_verified) <= _VERIFIED_MAX


def test_a_bump_keeps_version_keys_expiring(client, app_env):
    patient, = new_patients(app_env.sql, count=1)
    (slot, doctor, day), = free_future_slots(app_env, limit=1)
    headers = {"Authorization": f"Bearer {app_env.token(role='staff')}"}
    assert client.http.get(f"/api/slots/available?clientId=1&date={day}&doctorId={doctor}",
                           headers=headers).status_code == 200
    _book_for(client, patient, slot)
    r = _redis()
    version = f"{app_env.namespace}:v:{{t1}}:slots:{day}:d{doctor}"
    assert 0 < r.ttl(version) <= VERSION_TTL_S


# -- 3. no patient data in key names ------------------------------------------------------------

def test_patient_searches_leave_no_name_or_record_number_in_redis(client, app_env):
    name, record = app_env.sql("SELECT name, record_number FROM patient WHERE tenant_id = 1 ORDER BY id LIMIT 1")[0]
    headers = {"Authorization": f"Bearer {app_env.token(role='staff')}"}
    first_name = name.split()[0]
    for term in (name, first_name, record):
        response = client.http.get(f"/api/patients?clientId=1&q={term.replace(' ', '%20')}", headers=headers)
        assert response.status_code == 200 and response.json_body["patients"], response.body
    keys = b"\n".join(_namespace_keys(app_env.namespace)).lower()
    assert b":patients:" in keys  # the searches were cached
    for term in (name, first_name, record):
        assert term.lower().encode() not in keys


# -- 5. the small ones -------------------------------------------------------------------------

@pytest.mark.parametrize("client_id", ["1_0", "1%0D%0A", "1%0A", "%2B1", "%201"])
def test_ids_are_plain_digits(client, app_env, client_id):
    response = client.http.get(f"/api/departments?clientId={client_id}", headers=_bearer(app_env.token()))
    assert response.status_code == 400, response.body


@pytest.mark.parametrize("sub", ["a\x00b", "\ud800", "line\nbreak", ""])
def test_a_subject_must_be_printable(client, app_env, sub):
    token = jwt.encode({"sub": sub, "tenant": 1, "role": "staff", "exp": int(dt.datetime.now().timestamp()) + 600},
                       TEST_AUTH_SECRET, algorithm="HS256")
    (slot, _, _), = free_future_slots(app_env, limit=1)
    response = client.http.post("/api/appointments", headers=_bearer(token, **{"Idempotency-Key": "k"}),
                                body=json.dumps({"clientId": 1, "slotId": slot, "patientId": 1}))
    assert response.status_code == 401 and response.json_body["error"]["code"] == "unauthorized"


def test_private_answers_vary_by_authorization_and_hide_tiers_from_patients(client, app_env):
    patient, = new_patients(app_env.sql, count=1)
    path = "/api/departments?clientId=1"
    for _ in range(2):
        as_patient = client.http.get(path, headers={"Authorization": f"Bearer {_patient_token(patient)}"})
    assert as_patient.status_code == 200
    assert as_patient.headers["Vary"] == "Authorization"
    assert "X-Cache" not in as_patient.headers and "Server-Timing" not in as_patient.headers
    for role in ("staff", "admin"):
        as_staff = client.http.get(path, headers={"Authorization": f"Bearer {app_env.token(role=role)}"})
        assert as_staff.headers["X-Cache"] in ("L1", "L2", "DB") and "Server-Timing" in as_staff.headers
        assert as_staff.headers["Vary"] == "Authorization"


def test_operator_reads_fleet_statistics_but_no_tenant_data(client, app_env):
    operator = issue_token(TEST_AUTH_SECRET, 0, "operator")
    assert client.http.get("/api/cache/stats", headers=_bearer(operator)).status_code == 200
    assert client.http.get("/api/cache/stats", headers=_bearer(app_env.token(role="admin"))).status_code == 403
    refused = client.http.get("/api/departments?clientId=1", headers=_bearer(operator))
    assert refused.status_code == 403 and refused.json_body["error"]["code"] == "forbidden"


def test_the_deployment_template_throttles_the_api_stage() -> None:
    from pathlib import Path

    template = json.loads((Path(__file__).resolve().parents[2] / "infra" / "resources.json").read_text())
    settings, = template["Resources"]["RestAPI"]["Properties"]["MethodSettings"]
    assert settings["ResourcePath"] == "/*" and settings["HttpMethod"] == "*"
    for limit, parameter in (("ThrottlingRateLimit", "ApiThrottleRateLimit"),
                             ("ThrottlingBurstLimit", "ApiThrottleBurstLimit")):
        assert settings[limit] == {"Ref": parameter}
        assert template["Parameters"][parameter]["Default"] > 0
