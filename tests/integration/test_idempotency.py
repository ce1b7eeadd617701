"""Idempotency-Key rules of API.md against the real database: scoped to the tenant and the
token's subject, kept 24 hours, the same key with another body 422, expired answers
purged by the daily job."""
from __future__ import annotations

import json
import uuid

from chalicelib.auth import issue_token
from tests.conftest import TEST_AUTH_SECRET
from tests.data_finders import new_patient
from tests.helpers_servers import free_future_slots

JSON = {"Content-Type": "application/json"}


def _book(client, sub: str, body: dict, key: str):
    token = issue_token(TEST_AUTH_SECRET, 1, "staff", sub=sub)
    return client.http.post("/api/appointments", body=json.dumps(body),
                            headers={**JSON, "Authorization": f"Bearer {token}", "Idempotency-Key": key})


def _patient(app_env) -> int:
    """A patient without appointments: free at any slot's time."""
    return new_patient(app_env.sql)


def test_the_same_key_of_another_user_is_another_request(client, app_env):
    (slot, _, _), = free_future_slots(app_env, limit=1)
    key = f"shared-{uuid.uuid4()}"
    body = {"clientId": 1, "slotId": slot, "patientId": _patient(app_env)}
    first = _book(client, "desk-anna", body, key)
    assert first.status_code == 201, first.body
    # Another user sending the same key and body does not get Anna's answer: their request
    # runs, and finds the slot taken.
    other = _book(client, "desk-ben", body, key)
    assert other.status_code == 409 and other.json_body["error"]["code"] == "slot_taken", other.body
    # Anna's retry still gets her own first answer.
    again = _book(client, "desk-anna", body, key)
    assert again.status_code == 201 and again.json_body == first.json_body
    assert app_env.sql("SELECT count(*) FROM idempotency_key WHERE tenant_id = 1 AND key = :k", k=key)[0][0] == 2


def test_an_answer_older_than_24_hours_is_not_replayed(client, app_env):
    # Two slots of one doctor: never at the same time, so one patient may hold both.
    (slot, _, _), (other_slot, _, _) = free_future_slots(app_env, limit=2, min_per_group=2)
    key = f"old-{uuid.uuid4()}"
    patient = _patient(app_env)
    first = _book(client, "desk-carl", {"clientId": 1, "slotId": slot, "patientId": patient}, key)
    assert first.status_code == 201, first.body
    app_env.sql("UPDATE idempotency_key SET created_at = now() - interval '24 hours 1 minute' WHERE key = :k", k=key)
    # Past its 24 hours the key is free again: a new body is a new request, not a 422.
    second = _book(client, "desk-carl", {"clientId": 1, "slotId": other_slot, "patientId": patient}, key)
    assert second.status_code == 201, second.body
    assert second.json_body["appointment"]["slotId"] == other_slot
    # ... and it is that new answer that is replayed now.
    replay = _book(client, "desk-carl", {"clientId": 1, "slotId": other_slot, "patientId": patient}, key)
    assert replay.json_body == second.json_body


def test_reuse_with_another_body_is_422_and_creates_nothing(client, app_env):
    # Two slots of one doctor: never at the same time, so one patient may hold both.
    (slot, _, _), (other_slot, _, _) = free_future_slots(app_env, limit=2, min_per_group=2)
    key = f"reuse-{uuid.uuid4()}"
    patient = _patient(app_env)
    assert _book(client, "desk-dora", {"clientId": 1, "slotId": slot, "patientId": patient}, key).status_code == 201
    changed = _book(client, "desk-dora", {"clientId": 1, "slotId": other_slot, "patientId": patient}, key)
    assert changed.status_code == 422, changed.body
    assert changed.json_body["error"]["code"] == "idempotency_key_reused"
    assert app_env.sql("SELECT count(*) FROM appointment WHERE tenant_id = 1 AND slot_id = :s"
                       " AND status <> 'cancelled'", s=other_slot) == [[0]]


def test_the_daily_job_purges_expired_answers(client, app_env):
    from chalicelib.jobs.slots import run_scheduled_extension

    (slot, _, _), = free_future_slots(app_env, limit=1)
    key = f"purge-{uuid.uuid4()}"
    assert _book(client, "desk-emil", {"clientId": 1, "slotId": slot, "patientId": _patient(app_env)},
                 key).status_code == 201
    fresh_key = app_env.sql("SELECT count(*) FROM idempotency_key")[0][0]
    app_env.sql("UPDATE idempotency_key SET created_at = now() - interval '25 hours' WHERE key = :k", k=key)
    from tests.helpers_servers import patched_environ

    with patched_environ(app_env.env):
        result = run_scheduled_extension()
    assert result["idempotencyKeysPurged"] == 1
    assert app_env.sql("SELECT count(*) FROM idempotency_key")[0][0] == fresh_key - 1


def test_malformed_keys_are_400(client, app_env):
    (slot, _, _), = free_future_slots(app_env, limit=1)
    body = {"clientId": 1, "slotId": slot, "patientId": _patient(app_env)}
    for key in ("x" * 201, "caf\u00e9", "tab\there"):
        response = _book(client, "desk-finn", body, key)
        assert response.status_code == 400 and response.json_body["error"]["code"] == "validation_error", key
    assert app_env.sql("SELECT count(*) FROM appointment WHERE tenant_id = 1 AND slot_id = :s"
                       " AND status <> 'cancelled'", s=slot) == [[0]]
