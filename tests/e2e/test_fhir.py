"""FHIR R4 end to end, through real `serve` processes, PostgreSQL and Redis, checked only
with an independent client library's models (fhir.resources 7.1, its R4B package: the
4.0.1-compatible models; its top level is R5)."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Iterator, Optional

import pytest
from fhir.resources.R4B import get_fhir_model_class

from tests.conftest import AppEnv
from tests.data_finders import days_with_free_slots, new_patient
from tests.helpers_servers import ApiServer, running_servers

FHIR_JSON = "application/fhir+json"


def call(server: ApiServer, method: str, path: str, headers: dict[str, str],
         body: Optional[dict[str, Any]] = None) -> tuple[int, dict[str, str], Any]:
    """One request; (status, headers, decoded JSON body or None)."""
    data = json.dumps(body).encode() if body is not None else None
    sent = {**headers, **({"Content-Type": FHIR_JSON} if body is not None else {})}
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=20) as answer:
            status, got, raw = answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as err:
        status, got, raw = err.code, dict(err.headers), err.read()
    return status, got, json.loads(raw) if raw else None


def model(document: dict[str, Any]) -> Any:
    """The document parsed by the library's R4B model of its resourceType (strict: raises)."""
    return get_fhir_model_class(document["resourceType"]).parse_obj(document)


def fhir(server: ApiServer, method: str, path: str, headers: dict[str, str],
         body: Optional[dict[str, Any]] = None, status: int = 200) -> Any:
    """A FHIR call that must answer `status` in FHIR's media type; its body as a model."""
    got_status, got_headers, document = call(server, method, path, headers, body)
    assert got_status == status, document
    assert got_headers["Content-Type"] == FHIR_JSON
    return model(document)


def slots(server: ApiServer, headers: dict[str, str], doctor: int, day: str) -> dict[str, str]:
    """Slot id -> status for one doctor's day, through FHIR (every page)."""
    found: dict[str, str] = {}
    path: Optional[str] = f"/fhir/R4/Slot?schedule=Schedule/{doctor}&start=ge{day}&_count=5"
    while path:
        page = fhir(server, "GET", path, headers)
        found.update({e.resource.id: e.resource.status for e in page.entry or []})
        path = next((link.url for link in page.link if link.relation == "next"), None)
    return found


def native_free(server: ApiServer, headers: dict[str, str], doctor: int, day: str) -> set[int]:
    status, _, document = call(server, "GET", f"/api/slots/available?clientId=1&date={day}&doctorId={doctor}",
                               headers)
    assert status == 200
    return {s["slotId"] for s in document["slots"]}


@pytest.fixture(scope="module")
def servers(app_env: AppEnv) -> Iterator[list[ApiServer]]:
    with running_servers(app_env.env, 2) as started:
        yield started


def test_book_and_cancel_through_fhir_seen_by_both_interfaces(app_env: AppEnv, servers: list[ApiServer]) -> None:
    fhir_server, native_server = servers
    staff = app_env.headers(role="staff")
    capability = fhir(fhir_server, "GET", "/fhir/R4/metadata", {})
    assert capability.fhirVersion == "4.0.1"
    supported = {r.type: r for r in capability.rest[0].resource}
    assert {"create", "patch"} <= {i.code for i in supported["Appointment"].interaction}

    day = days_with_free_slots(app_env.sql, min_free=2)[0]
    doctor = app_env.sql("""SELECT s.doctor_id FROM slot s WHERE s.tenant_id = 1 AND s.day = :d
                            AND s.starts_at > now() AND NOT EXISTS (SELECT 1 FROM appointment a
                              WHERE a.tenant_id = 1 AND a.slot_id = s.id AND a.status <> 'cancelled')
                            ORDER BY s.doctor_id LIMIT 1""", d=day)[0][0]
    schedule = fhir(fhir_server, "GET", f"/fhir/R4/Schedule/{doctor}", staff)
    assert schedule.actor[0].reference == f"Practitioner/{doctor}"
    before = slots(fhir_server, staff, doctor, day)
    free = sorted((sid for sid, status in before.items() if status == "free"), key=int)
    assert free and {int(s) for s in free} == native_free(native_server, staff, doctor, day)
    slot_id, patient = free[0], new_patient(app_env.sql)

    booking = {"resourceType": "Appointment", "status": "booked", "slot": [{"reference": f"Slot/{slot_id}"}],
               "participant": [{"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"}]}
    booked = fhir(fhir_server, "POST", "/fhir/R4/Appointment", staff, booking, status=201)
    assert booked.status == "booked" and booked.slot[0].reference == f"Slot/{slot_id}"
    assert slots(fhir_server, staff, doctor, day)[slot_id] == "busy"
    assert int(slot_id) not in native_free(native_server, staff, doctor, day)
    again = fhir(fhir_server, "POST", "/fhir/R4/Appointment", staff, booking, status=409)
    assert again.issue[0].code == "conflict"

    cancelled = fhir(fhir_server, "PATCH", f"/fhir/R4/Appointment/{booked.id}", staff,
                     {"resourceType": "Appointment", "status": "cancelled"})
    assert cancelled.status == "cancelled"
    assert slots(fhir_server, staff, doctor, day)[slot_id] == "free"
    assert int(slot_id) in native_free(native_server, staff, doctor, day)


def test_every_read_validates_and_is_cached(app_env: AppEnv, servers: list[ApiServer]) -> None:
    server = servers[0]
    staff = app_env.headers(role="staff")
    patient = app_env.sql("SELECT id, record_number FROM patient WHERE tenant_id = 1 ORDER BY id LIMIT 1")[0]
    appointment = app_env.sql("SELECT id FROM appointment WHERE tenant_id = 1 ORDER BY id LIMIT 1")[0][0]
    paths = ["/fhir/R4/Practitioner", "/fhir/R4/Practitioner/1", "/fhir/R4/HealthcareService",
             "/fhir/R4/HealthcareService/1", "/fhir/R4/Schedule?service-type=1", "/fhir/R4/Schedule/1",
             f"/fhir/R4/Patient/{patient[0]}", f"/fhir/R4/Patient?identifier={patient[1]}",
             f"/fhir/R4/Appointment/{appointment}", f"/fhir/R4/Appointment?patient=Patient/{patient[0]}"]
    for path in paths:
        fhir(server, "GET", path, staff)
        status, headers, _ = call(server, "GET", path, staff)
        assert status == 200 and headers["X-Cache"] == "L1", path
        status, _, _ = call(server, "GET", path, {**staff, "If-None-Match": headers["ETag"]})
        assert status == 304, path


def test_tenant_isolation_and_roles(app_env: AppEnv, servers: list[ApiServer]) -> None:
    server = servers[0]
    other_tenant = app_env.headers(tenant=2, role="admin")
    own = app_env.sql("SELECT id FROM appointment WHERE tenant_id = 1 ORDER BY id LIMIT 1")[0][0]
    for path in ("/fhir/R4/Practitioner/1", f"/fhir/R4/Appointment/{own}", "/fhir/R4/Schedule/1"):
        doctor_elsewhere = app_env.sql("SELECT count(*) FROM doctor WHERE tenant_id = 2 AND id = 1")[0][0]
        if "Appointment" in path or not doctor_elsewhere:
            assert fhir(server, "GET", path, other_tenant, status=404).issue[0].code == "not-found"
    patient = app_env.sql("SELECT id FROM patient WHERE tenant_id = 1 ORDER BY id LIMIT 2")
    as_patient = app_env.headers(role="patient", patient_id=patient[0][0])
    fhir(server, "GET", f"/fhir/R4/Patient/{patient[1][0]}", as_patient, status=403)
    fhir(server, "GET", f"/fhir/R4/Appointment?patient=Patient/{patient[1][0]}", as_patient, status=403)
    fhir(server, "GET", "/fhir/R4/Slot?start=ge2026-01-01", {}, status=401)


@pytest.mark.parametrize("path", [
    "/fhir/R4/Slot?start=ge2026-01-01&color=red", "/fhir/R4/Practitioner?family=x", "/fhir/R4/Slot",
    "/fhir/R4/Slot?start=gt2026-01-01", "/fhir/R4/Slot?start=ge2026-02-30", "/fhir/R4/Slot?start=ge2026-01-01&_count=0",
    "/fhir/R4/Appointment?date=ge2026-01-01", "/fhir/R4/Appointment?status=bogus", "/fhir/R4/Patient/abc",
    "/fhir/R4/Schedule?actor=Patient/1", "/fhir/R4/Patient?name=%00", "/fhir/R4/Appointment/99999999999999999999",
])
def test_bad_searches_answer_400(app_env: AppEnv, servers: list[ApiServer], path: str) -> None:
    outcome = fhir(servers[0], "GET", path, app_env.headers(role="staff"), status=400)
    assert outcome.issue[0].code == "invalid"


@pytest.mark.parametrize("body", [
    {"resourceType": "Patient"}, {"resourceType": "Appointment"},
    {"resourceType": "Appointment", "slot": [{"reference": "Slot/x"}], "participant": []},
    {"resourceType": "Appointment", "slot": "Slot/1", "participant": [{"actor": {"reference": "Patient/1"}}]},
    {"resourceType": "Appointment", "status": "noshow", "slot": [{"reference": "Slot/1"}]},
])
def test_malformed_writes_answer_4xx(app_env: AppEnv, servers: list[ApiServer], body: dict[str, Any]) -> None:
    staff = app_env.headers(role="staff")
    for method, path in (("POST", "/fhir/R4/Appointment"), ("PATCH", "/fhir/R4/Appointment/1")):
        status, headers, document = call(servers[0], method, path, staff, body)
        assert 400 <= status < 500 and headers["Content-Type"] == FHIR_JSON, (method, body, document)
        model(document)


def test_reads_carry_their_version_as_a_weak_etag(app_env: AppEnv, servers: list[ApiServer]) -> None:
    first, second = servers
    staff = app_env.headers(role="staff")
    status, headers, document = call(first, "GET", "/fhir/R4/Practitioner/1", staff)
    assert status == 200
    version = model(document).meta.versionId
    assert headers["ETag"] == f'W/"{version}"'
    status, other_headers, other = call(second, "GET", "/fhir/R4/Practitioner/1", staff)
    assert other["meta"]["versionId"] == version and other_headers["ETag"] == headers["ETag"]
    for tag in (f'W/"{version}"', f'"{version}"', f'"nothing", W/"{version}"', "*"):
        assert call(second, "GET", "/fhir/R4/Practitioner/1", {**staff, "If-None-Match": tag})[0] == 304, tag
    assert call(second, "GET", "/fhir/R4/Practitioner/1", {**staff, "If-None-Match": 'W/"other"'})[0] == 200
    listed = fhir(first, "GET", "/fhir/R4/Practitioner?_count=3", staff).entry[0].resource
    assert listed.meta.versionId == fhir(second, "GET", f"/fhir/R4/Practitioner/{listed.id}", staff).meta.versionId
    status, headers, _ = call(first, "GET", "/fhir/R4/Practitioner?_count=3", staff)
    assert headers["ETag"].startswith('W/"')


def test_a_changed_resource_gets_a_new_version(app_env: AppEnv, servers: list[ApiServer]) -> None:
    first, second = servers
    staff = app_env.headers(role="staff")
    before = fhir(second, "GET", "/fhir/R4/HealthcareService/1", staff).meta.versionId
    request = urllib.request.Request(
        f"http://127.0.0.1:{first.port}/api/admin/departments/1", method="PATCH",
        data=json.dumps({"clientId": 1, "name": "Renamed for versions"}).encode(),
        headers={**app_env.headers(role="admin"), "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=20) as answer:
        assert answer.status == 200
    after = fhir(second, "GET", "/fhir/R4/HealthcareService/1", staff)
    assert after.name == "Renamed for versions" and after.meta.versionId != before
    assert call(second, "GET", "/fhir/R4/HealthcareService/1", {**staff, "If-None-Match": f'W/"{before}"'})[0] == 200


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/fhir/R4/Observation", 404), ("GET", "/fhir/R4/Observation/1", 404),
    ("POST", "/fhir/R4/Encounter", 404), ("GET", "/fhir/R4/Practitioner/1/_history", 404),
    ("GET", "/fhir/R4/Practitioner/1/_history/2", 404), ("GET", "/fhir/R4/$export", 404),
    ("DELETE", "/fhir/R4/Appointment/1", 405), ("POST", "/fhir/R4/Slot", 405), ("PUT", "/fhir/R4/Patient/1", 405),
    ("DELETE", "/fhir/R4/metadata", 405), ("POST", "/fhir/R4/$bulk-publish", 404),
])
def test_unsupported_paths_and_methods_answer_operation_outcomes(app_env: AppEnv, servers: list[ApiServer],
                                                                 method: str, path: str, status: int) -> None:
    body = {"resourceType": "Basic"} if method in ("POST", "PUT") else None
    got, headers, document = call(servers[0], method, path, app_env.headers(role="staff"), body)
    assert got == status and headers["Content-Type"] == FHIR_JSON, document
    assert model(document).issue[0].code == ("not-found" if status == 404 else "not-supported")
    if status == 405:
        assert "GET" in headers["Allow"]
