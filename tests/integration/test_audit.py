"""The audit trail (docs/audit.md): writes record who did what in their own transaction,
refused writes and replayed Idempotency-Keys record nothing, patient-data reads are
buffered and flushed, and GET /api/audit pages them for the tenant's admins only."""
from __future__ import annotations

import json
import time

import pytest

from chalicelib import runtime
from chalicelib.auth import default_subject
from chalicelib.booking.resources import search_digest
from chalicelib.observability import logger
from tests.data_finders import new_doctor_slots, new_patient

JSON = {"Content-Type": "application/json"}


def _post(client, app_env, path: str, body: dict, role: str = "staff", patient_id: int | None = None,
          key: str | None = None):
    headers = {**app_env.headers(1, role, patient_id), **JSON}
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.http.post(path, headers=headers, body=json.dumps({"clientId": 1, **body}))


def _audit(client, app_env, query: str, role: str = "admin", tenant: int = 1):
    return client.http.get(f"/api/audit?clientId=1{query}", headers=app_env.headers(tenant, role))


def _events(client, app_env, query: str) -> list[dict]:
    response = _audit(client, app_env, query)
    assert response.status_code == 200, response.body
    assert response.headers["Cache-Control"] == "no-store"
    return response.json_body["events"]


def _event_count(app_env) -> int:
    return app_env.sql("SELECT count(*) FROM audit_event")[0][0]


def _wait_for_flush() -> None:
    """Let the buffered read events come due (the next request's start writes them)."""
    time.sleep(runtime.current().read_log.max_age_s + 0.05)


@pytest.fixture()
def two_slots(app_env) -> list[int]:
    """Two future slots of a new doctor that no other test touches."""
    return [row[0] for row in new_doctor_slots(app_env.sql, doctors=1, instants=2)]


def test_a_booking_life_reads_back_newest_first_with_its_actors(client, app_env, two_slots, caplog):
    patient = new_patient(app_env.sql)
    caplog.clear()
    booked = _post(client, app_env, "/api/appointments", {"slotId": two_slots[0], "patientId": patient,
                                                          "reason": "Quist-private-reason"})
    assert booked.status_code == 201, booked.body
    ident = booked.json_body["appointment"]["id"]
    steps = [_post(client, app_env, f"/api/appointments/{ident}/reschedule", {"slotId": two_slots[1]}),
             _post(client, app_env, f"/api/appointments/{ident}/status", {"status": "checked_in"}),
             _post(client, app_env, f"/api/appointments/{ident}/status", {"status": "completed"}, role="admin")]
    assert [s.status_code for s in steps] == [200, 200, 200], [s.body for s in steps]

    events = _events(client, app_env, f"&appointmentId={ident}")
    assert [(e["action"], e["actor"]["role"]) for e in events] == [
        ("status", "admin"), ("status", "staff"), ("reschedule", "staff"), ("book", "staff")]
    assert {e["actor"]["sub"] for e in events[1:]} == {default_subject(1, "staff")}
    assert events[0]["actor"]["sub"] == default_subject(1, "admin")
    assert [e["details"] for e in events] == [
        {"fromSlotId": two_slots[1], "toSlotId": two_slots[1], "fromStatus": "checked_in", "toStatus": "completed"},
        {"fromSlotId": two_slots[1], "toSlotId": two_slots[1], "fromStatus": "booked", "toStatus": "checked_in"},
        {"fromSlotId": two_slots[0], "toSlotId": two_slots[1], "fromStatus": "booked", "toStatus": "booked"},
        {"fromSlotId": None, "toSlotId": two_slots[0], "fromStatus": None, "toStatus": "booked"}]
    assert all(e["patientId"] == patient and e["appointmentId"] == ident for e in events)
    assert len({e["requestId"] for e in events}) == 4 and all(e["requestId"] for e in events)
    assert [e["at"] for e in events] == sorted((e["at"] for e in events), reverse=True)
    issuers = app_env.sql("SELECT DISTINCT actor_issuer FROM audit_event WHERE appointment_id = :a", a=ident)
    assert len(issuers) == 1 and issuers[0][0]
    lines = [logger.registered_formatter.format(record) for record in caplog.records]
    assert not [line for line in lines if "Quist" in line], lines


def test_a_patient_booking_and_cancelling_is_recorded_as_the_patient(client, app_env, two_slots):
    patient = new_patient(app_env.sql)
    booked = _post(client, app_env, "/api/appointments", {"slotId": two_slots[0], "patientId": patient},
                   role="patient", patient_id=patient)
    assert booked.status_code == 201, booked.body
    ident = booked.json_body["appointment"]["id"]
    cancelled = _post(client, app_env, f"/api/appointments/{ident}/cancel", {}, role="patient", patient_id=patient)
    assert cancelled.status_code == 200, cancelled.body

    events = _events(client, app_env, f"&patientId={patient}")
    assert [(e["action"], e["actor"]) for e in events] == [
        ("cancel", {"sub": default_subject(1, "patient", patient), "role": "patient"}),
        ("book", {"sub": default_subject(1, "patient", patient), "role": "patient"})]
    assert events[0]["details"]["toStatus"] == "cancelled" and events[0]["details"]["fromStatus"] == "booked"


def test_filters_and_pages_cover_every_event_once(client, app_env, two_slots):
    patient = new_patient(app_env.sql)
    booked = _post(client, app_env, "/api/appointments", {"slotId": two_slots[0], "patientId": patient})
    ident = booked.json_body["appointment"]["id"]
    for slot in (two_slots[1], two_slots[0], two_slots[1]):
        assert _post(client, app_env, f"/api/appointments/{ident}/reschedule", {"slotId": slot}).status_code == 200
    everything = _events(client, app_env, f"&appointmentId={ident}&limit=200")
    assert [e["action"] for e in everything] == ["reschedule"] * 3 + ["book"]

    pages, cursor = [], ""
    while True:
        response = _audit(client, app_env, f"&appointmentId={ident}&limit=1{cursor}")
        assert response.status_code == 200, response.body
        pages.append(response.json_body["events"])
        if response.json_body["nextCursor"] is None:
            break
        cursor = f"&cursor={response.json_body['nextCursor']}"
    assert [e for page in pages for e in page] == everything and all(len(p) == 1 for p in pages)

    assert _events(client, app_env, f"&appointmentId={ident}&action=book") == everything[-1:]
    staff = default_subject(1, "staff")
    assert _events(client, app_env, f"&patientId={patient}&actor={staff}") == everything
    assert _events(client, app_env, f"&patientId={patient}&actor=somebody-else") == []
    newest, oldest = everything[0]["at"].replace("+00:00", "Z"), everything[-1]["at"].replace("+00:00", "Z")
    assert _events(client, app_env, f"&patientId={patient}&from={newest}") == everything[:1]
    assert _events(client, app_env, f"&patientId={patient}&to={newest}") == everything[1:]
    assert _events(client, app_env, f"&patientId={patient}&from={oldest}&to={oldest}") == []


def test_a_refused_write_records_nothing(client, app_env, two_slots):
    first, second = new_patient(app_env.sql), new_patient(app_env.sql)
    booked = _post(client, app_env, "/api/appointments", {"slotId": two_slots[0], "patientId": first})
    ident = booked.json_body["appointment"]["id"]
    before = _event_count(app_env)
    refused = [
        _post(client, app_env, "/api/appointments", {"slotId": two_slots[0], "patientId": second}),  # 409 taken
        _post(client, app_env, "/api/appointments", {"slotId": 10**15, "patientId": second}),  # 404 slot
        _post(client, app_env, f"/api/appointments/{ident}/status", {"status": "completed"}),  # 409 transition
        _post(client, app_env, f"/api/appointments/{ident}/cancel", {}, role="patient", patient_id=second),  # 404
        _post(client, app_env, f"/api/appointments/{10**15}/reschedule", {"slotId": two_slots[1]}),  # 404
    ]
    assert [r.status_code for r in refused] == [409, 404, 409, 404, 404], [r.body for r in refused]
    assert _post(client, app_env, f"/api/appointments/{ident}/cancel", {}).status_code == 200
    assert _post(client, app_env, f"/api/appointments/{ident}/cancel", {}).status_code == 409
    assert _event_count(app_env) == before + 1


def test_a_replayed_idempotency_key_records_one_event(client, app_env, two_slots):
    patient = new_patient(app_env.sql)
    answers = [_post(client, app_env, "/api/appointments", {"slotId": two_slots[0], "patientId": patient},
                     key="audit-replay-1") for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 201]
    ident = answers[0].json_body["appointment"]["id"]
    moved = [_post(client, app_env, f"/api/appointments/{ident}/reschedule", {"slotId": two_slots[1]},
                   key="audit-replay-2") for _ in range(2)]
    assert [m.status_code for m in moved] == [200, 200]
    assert [e["action"] for e in _events(client, app_env, f"&appointmentId={ident}")] == ["reschedule", "book"]


def test_patient_search_and_patient_lists_are_recorded_without_the_term(client, app_env, caplog):
    patient = new_patient(app_env.sql)
    term = app_env.sql("SELECT name FROM patient WHERE tenant_id = 1 AND id = :p", p=patient)[0][0]
    staff = app_env.headers(1, "staff")
    caplog.clear()
    for _ in range(2):  # the second answer is an L1 hit: recorded too
        assert client.http.get(f"/api/patients?clientId=1&q={term}", headers=staff).status_code == 200
    listed = client.http.get(f"/api/appointments/list?clientId=1&patientId={patient}&status=booked", headers=staff)
    assert listed.status_code == 200
    own = client.http.get("/api/appointments/list?clientId=1", headers=app_env.headers(1, "patient", patient))
    assert own.status_code == 200
    _wait_for_flush()

    response = _audit(client, app_env, "&action=patient_search&limit=2")
    searches = response.json_body["events"]
    assert [e["details"] for e in searches] == [{"termDigest": search_digest(term), "limit": 20}] * 2
    assert all(e["actor"]["sub"] == default_subject(1, "staff") and e["requestId"] for e in searches)
    assert searches[0]["requestId"] != searches[1]["requestId"]
    reads = _events(client, app_env, f"&patientId={patient}&action=patient_read")
    assert len(reads) == 1, reads  # the patient's own list is not recorded
    assert reads[0]["details"] == {"resource": "appointments", "filters": {"status": "booked", "limit": 50}}
    assert term not in response.body.decode() and term.lower() not in response.body.decode()
    assert not app_env.sql("SELECT 1 FROM audit_event WHERE lower(details::text) LIKE lower(:t)", t=f"%{term}%")
    lines = [logger.registered_formatter.format(record) for record in caplog.records]
    assert not [line for line in lines if term in line], lines


def test_a_failed_flush_keeps_the_events_and_logs_no_detail(client, app_env, caplog):
    term = app_env.sql("SELECT name FROM patient WHERE tenant_id = 1 AND id = :p", p=new_patient(app_env.sql))[0][0]
    app_env.sql("""CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$
                   BEGIN RAISE EXCEPTION 'refused %', NEW.details USING ERRCODE = 'P0001'; END $$""")
    app_env.sql("CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_event FOR EACH ROW EXECUTE FUNCTION refuse_audit()")
    try:
        caplog.clear()
        searched = client.http.get(f"/api/patients?clientId=1&q={term}", headers=app_env.headers(1, "staff"))
        assert searched.status_code == 200
        _wait_for_flush()
        assert client.http.get("/api/health").status_code == 200  # its start flushes, and fails
        lines = [logger.registered_formatter.format(record) for record in caplog.records]
        assert [line for line in lines if "patient-read events not written" in line], lines
        assert not [line for line in lines if term in line or search_digest(term) in line], lines
        assert runtime.current().read_log.pending
    finally:
        app_env.sql("DROP TRIGGER refuse_audit ON audit_event")
        app_env.sql("DROP FUNCTION refuse_audit()")
    runtime.current().read_log.retry_at = 0.0  # skip the pause after a failure
    searches = _events(client, app_env, "&action=patient_search&limit=1")
    assert searches[0]["details"]["termDigest"] == search_digest(term)


def test_only_the_tenants_admins_read_the_trail(client, app_env):
    assert _audit(client, app_env, "", role="staff").status_code == 403
    assert _audit(client, app_env, "", role="admin", tenant=2).status_code == 403
    assert client.http.get("/api/audit?clientId=1", headers=app_env.headers(1, "patient", 1)).status_code == 403
    assert client.http.get("/api/audit?clientId=1").status_code == 401
    assert client.http.get("/api/audit?clientId=2", headers=app_env.headers(2, "admin")).status_code == 200


@pytest.mark.parametrize("query", [
    "&limit=0", "&limit=201", "&limit=x", "&action=delete", "&from=2026-01-01", "&from=yesterday",
    "&to=1700000000", "&cursor=not-a-cursor", "&appointmentId=0", "&patientId=-1", "&colour=blue",
    "&from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", "&from=2026-02-30T00:00:00Z", "&actor=",
    "&from=0001-01-01T00:00:00%2B14:00",
])
def test_bad_query_parameters_are_400_in_the_error_shape(client, app_env, query):
    response = _audit(client, app_env, query)
    assert response.status_code == 400, response.body
    assert set(response.json_body) == {"error"} and response.json_body["error"]["code"] == "validation_error"


def test_the_read_buffer_is_bounded():
    from chalicelib.audit.actor import Actor
    from chalicelib.audit.read_log import ReadEvent, ReadLog

    buffer = ReadLog(capacity=2)
    event = ReadEvent(Actor("s", "staff", "i", 1), "patient_search", None, "{}")
    for _ in range(3):
        buffer.record(event)
    assert len(buffer.pending) == 2 and buffer.dropped == 1
