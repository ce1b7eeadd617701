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


def test_schedule_management_answers_match_the_document(client, app_env):
    """Each admin route's real answers (success, 400, 409 schedule_conflict, 404) validate
    against the document's schema for their status."""
    import datetime as dt
    import uuid

    from tests.data_finders import new_patient, tenant_today
    from tests.helpers_schedules import every_day, free_slots_of

    headers = {**app_env.headers(1, "admin"), "Content-Type": "application/json"}

    def send(method: str, path: str, document_path: str, body: dict | None = None) -> dict:
        answer = client.http.request(method, path, headers=headers, body=json.dumps(body) if body else b"")
        jsonschema.validate(answer.json_body, _schema_for(document_path, method.lower(), answer.status_code))
        return answer.json_body

    department = send("POST", "/api/admin/departments", "/api/admin/departments",
                      {"clientId": 1, "name": "Doc check"})["department"]["id"]
    send("PATCH", f"/api/admin/departments/{department}", "/api/admin/departments/{id}", {"clientId": 1, "name": "D"})
    doctor = send("POST", "/api/admin/doctors", "/api/admin/doctors",
                  {"clientId": 1, "name": "Dr. Doc", "departmentId": department})["doctor"]["id"]
    send("PATCH", f"/api/admin/doctors/{doctor}", "/api/admin/doctors/{id}", {"clientId": 1, "specialty": "GP"})
    hours_path = f"/api/admin/doctors/{doctor}/working-hours"
    send("PUT", hours_path, "/api/admin/doctors/{id}/working-hours",
         {"clientId": 1, "hours": every_day("09:00", "10:00", 30)})
    send("PUT", hours_path, "/api/admin/doctors/{id}/working-hours", {"clientId": 1, "hours": [{"weekday": 9}]})
    slot = free_slots_of(app_env.sql, doctor, tenant_today(app_env.sql) + dt.timedelta(days=2))[0]
    booked = client.http.post("/api/appointments", headers=headers, body=json.dumps(
        {"clientId": 1, "slotId": slot, "patientId": new_patient(app_env.sql)})).json_body["appointment"]
    absence = {"clientId": 1, "from": booked["startsAt"], "to": booked["endsAt"]}
    absences = f"/api/admin/doctors/{doctor}/absences"
    conflict = send("POST", absences, "/api/admin/doctors/{id}/absences", absence)
    assert conflict["error"]["code"] == "schedule_conflict"
    added = send("POST", absences, "/api/admin/doctors/{id}/absences", {**absence, "cancelAppointments": True})
    removed_path = "/api/admin/doctors/{id}/absences/{absenceId}"
    send("DELETE", f"{absences}/{added['absence']['id']}?clientId=1", removed_path)
    send("DELETE", f"{absences}/{added['absence']['id']}?clientId=1", removed_path)  # 404
    record = uuid.uuid4().hex[:10]
    patient = {"clientId": 1, "name": "Doc Check", "birthDate": "1990-05-05", "recordNumber": record}
    for _ in range(2):  # 201, then 409 duplicate_record_number
        send("POST", "/api/admin/patients", "/api/admin/patients", patient)
    send("PUT", f"/api/admin/patients/by-record/{record}", "/api/admin/patients/by-record/{recordNumber}",
         {"clientId": 1, "name": "Doc Checked", "birthDate": "1990-05-05"})
    rows = [{"name": "B", "birthDate": "1990-05-05", "recordNumber": f"{record}-{i}"} for i in range(3)]
    send("POST", "/api/admin/patients/bulk", "/api/admin/patients/bulk", {"clientId": 1, "patients": rows})
