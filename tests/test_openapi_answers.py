"""The OpenAPI document describes what the routes really answer: responses of real requests
(admin token, seeded data) validate against the schema the document gives their status."""
from __future__ import annotations

import json

import jsonschema
import pytest

from chalicelib.openapi import document
from tests.data_finders import days_with_free_slots


def _schema_for(path: str, method: str, status: int) -> dict:
    doc = document()
    answer = doc["paths"][path][method]["responses"][str(status)]
    schema = answer["content"]["application/json"]["schema"]
    return {**schema, "components": doc["components"]}


@pytest.mark.parametrize("path,query", [
    ("/api/health", ""), ("/api/departments", "clientId=1"), ("/api/doctors", "clientId=1"),
    ("/api/patients", "clientId=1&q=a"), ("/api/appointments/list", "clientId=1&limit=5"),
    ("/api/dashboard/stats", "clientId=1"), ("/api/cache/stats", ""), ("/api/audit", "clientId=1&limit=5"),
    ("/api/audit", "clientId=1&limit=0"),
    ("/api/departments", "clientId=9999"), ("/api/departments", "clientId=x"), ("/api/doctors", "clientId=2"),
])
def test_get_answers_match_the_document(client, app_env, path, query):
    response = client.http.get(f"{path}?{query}", headers=app_env.headers(1, "admin"))
    jsonschema.validate(json.loads(response.body), _schema_for(path, "get", response.status_code))


def test_slots_and_booking_answers_match_the_document(client, app_env):
    day = days_with_free_slots(app_env.sql, 1)[0]
    slots = client.http.get(f"/api/slots/available?clientId=1&date={day}", headers=app_env.headers(1, "staff"))
    jsonschema.validate(slots.json_body, _schema_for("/api/slots/available", "get", 200))
    patient = app_env.sql("SELECT max(id) FROM patient WHERE tenant_id = 1")[0][0]
    body = json.dumps({"clientId": 1, "slotId": slots.json_body["slots"][-1]["slotId"], "patientId": patient})
    headers = {**app_env.headers(1, "staff"), "Content-Type": "application/json"}
    for _ in range(2):  # 201, then 409 (taken, or the patient is busy then)
        booked = client.http.post("/api/appointments", headers=headers, body=body)
        jsonschema.validate(booked.json_body, _schema_for("/api/appointments", "post", booked.status_code))
