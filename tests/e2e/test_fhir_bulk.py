"""SMART Scheduling Links through `/fhir/R4/$bulk-publish`, on two real `serve` processes:
the manifest and its NDJSON files parse as R4 resources of an independent library
(fhir.resources' R4B models), a tenant publishes only when its admin says so, a booking on
one process shows in the other's Slot file at once, and a file's weak ETag answers 304."""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Iterator

import pytest

from tests.conftest import AppEnv
from tests.data_finders import days_with_free_slots, new_patient
from tests.e2e.test_fhir import FHIR_JSON, call, model
from tests.helpers_servers import ApiServer, running_servers

MANIFEST = "/fhir/R4/$bulk-publish"
EXTENSIONS = "http://fhir-registry.smarthealthit.org/StructureDefinition/"
LINK = "https://portal.example.org/book?slot={slot}"
PHONE = "+49 30 1234 5678"


@pytest.fixture(scope="module")
def servers(app_env: AppEnv) -> Iterator[list[ApiServer]]:
    with running_servers(app_env.env, 2) as started:
        yield started


def native(server: ApiServer, method: str, path: str, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
    """A call of the native JSON API: (status, decoded body)."""
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", data=json.dumps(body).encode(),
                                     method=method, headers={**headers, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=20) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def publish(server: ApiServer, app_env: AppEnv, public: bool, **extra: Any) -> dict[str, Any]:
    status, answer = native(server, "PUT", "/api/admin/slot-publication", app_env.headers(role="admin"),
                            {"clientId": 1, "public": public, **extra})
    assert status == 200, answer
    return answer["publication"]


def ndjson(server: ApiServer, url: str, headers: dict[str, str]) -> list[Any]:
    """Every line of one bulk file, parsed by the library's model of its resourceType."""
    path = urllib.parse.urlsplit(url).path
    status, got, _ = call_raw(server, path, headers)
    assert status == 200 and got[0]["Content-Type"] == "application/fhir+ndjson"
    return [model(json.loads(line)) for line in got[1].splitlines()]


def call_raw(server: ApiServer, path: str, headers: dict[str, str]) -> tuple[int, tuple[dict[str, str], str], None]:
    """A GET whose body is returned as text (NDJSON is not one JSON document)."""
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=20) as answer:
            return answer.status, (dict(answer.headers), answer.read().decode()), None
    except urllib.error.HTTPError as err:
        return err.code, (dict(err.headers), err.read().decode()), None


def slot_statuses(server: ApiServer, manifest: dict[str, Any]) -> dict[str, str]:
    url = next(o["url"] for o in manifest["output"] if o["type"] == "Slot")
    return {slot.id: slot.status for slot in ndjson(server, url, {})}


def test_a_tenant_publishes_only_when_its_admin_says_so(app_env: AppEnv, servers: list[ApiServer]) -> None:
    first, second = servers
    publish(first, app_env, public=False)
    for server in servers:
        status, headers, outcome = call(server, "GET", f"{MANIFEST}?clientId=1", {})
        assert status == 404 and headers["Content-Type"] == FHIR_JSON
        assert model(outcome).issue[0].code == "not-found"
    status, _, manifest = call(first, "GET", MANIFEST, app_env.headers(role="staff"))
    assert status == 200 and {o["type"] for o in manifest["output"]} == {"Location", "Schedule", "Slot"}

    assert publish(first, app_env, public=True, bookingLink=LINK, bookingPhone=PHONE)["public"] is True
    status, headers, manifest = call(second, "GET", f"{MANIFEST}?clientId=1", {})
    assert status == 200 and headers["Content-Type"] == "application/json", manifest
    assert manifest["transactionTime"] and manifest["error"] == []
    assert all(o["url"].startswith(f"http://127.0.0.1:{second.port}/fhir/R4/") for o in manifest["output"])

    files = {o["type"]: ndjson(second, o["url"], {}) for o in manifest["output"]}
    (location,) = files["Location"]
    assert location.name and location.telecom[0].value == PHONE
    active = {row[0] for row in app_env.sql("SELECT id FROM doctor WHERE tenant_id = 1 AND active")}
    assert {int(s.id) for s in files["Schedule"]} == active
    assert all(s.actor[0].reference == f"Location/{location.id}" for s in files["Schedule"])
    assert files["Slot"], "the seeded tenant has future slots"
    for slot in files["Slot"][:50]:
        links = {e.url.rsplit("/", 1)[1]: e for e in slot.extension}
        assert links["booking-deep-link"].valueUrl == LINK.replace("{slot}", slot.id)
        assert links["booking-phone"].valueString == PHONE
        assert slot.meta.versionId

    publish(first, app_env, public=False)
    for server in servers:
        assert call(server, "GET", f"{MANIFEST}?clientId=1", {})[0] == 404
        slot_file = f"{MANIFEST}/1/Slot.ndjson"
        assert call_raw(server, slot_file, {})[0] == 404
        assert call_raw(server, slot_file,
                        app_env.headers(role="patient", patient_id=new_patient(app_env.sql)))[0] == 200


def test_a_booking_on_one_process_shows_in_the_other_s_slot_file(app_env: AppEnv, servers: list[ApiServer]) -> None:
    first, second = servers
    publish(first, app_env, public=True)
    status, _, manifest = call(second, "GET", f"{MANIFEST}?clientId=1", {})
    assert status == 200
    before = slot_statuses(second, manifest)
    day = days_with_free_slots(app_env.sql, min_free=1)[0]
    free = app_env.sql("""SELECT s.id FROM slot s JOIN doctor d ON d.tenant_id = s.tenant_id AND d.id = s.doctor_id
                          WHERE s.tenant_id = 1 AND s.day = :d AND s.starts_at > now() + interval '1 hour'
                            AND d.active AND s.withdrawn_at IS NULL AND NOT EXISTS (
                              SELECT 1 FROM appointment a WHERE a.tenant_id = 1 AND a.slot_id = s.id
                                AND a.status <> 'cancelled') ORDER BY s.id LIMIT 1""", d=day)[0][0]
    assert before[str(free)] == "free"
    status, booked = native(first, "POST", "/api/appointments", app_env.headers(role="staff"),
                            {"clientId": 1, "slotId": free, "patientId": new_patient(app_env.sql)})
    assert status == 201, booked
    assert slot_statuses(second, manifest)[str(free)] == "busy"
    status, _ = native(first, "POST", f"/api/appointments/{booked['appointment']['id']}/cancel",
                       app_env.headers(role="staff"), {"clientId": 1})
    assert status == 200
    assert slot_statuses(second, manifest)[str(free)] == "free"


def test_files_answer_304_to_their_weak_etag(app_env: AppEnv, servers: list[ApiServer]) -> None:
    server = servers[0]
    publish(server, app_env, public=True)
    path = f"{MANIFEST}/1/Schedule.ndjson"
    status, (headers, _), _ = call_raw(server, path, {})
    assert status == 200 and headers["ETag"].startswith('W/"')
    assert call_raw(server, path, {"If-None-Match": headers["ETag"]})[0] == 304
    assert call_raw(server, path, {"If-None-Match": headers["ETag"][2:]})[0] == 304


@pytest.mark.parametrize("path, status", [
    (f"{MANIFEST}/1/Patient.ndjson", 404), (f"{MANIFEST}/1/Slot.json", 404), (f"{MANIFEST}/abc/Slot.ndjson", 400),
    (f"{MANIFEST}?clientId=1&_since=2026-01-01", 400), (f"{MANIFEST}?clientId=x", 400), (MANIFEST, 401),
    (f"{MANIFEST}?clientId=999999", 404),
])
def test_bad_bulk_requests_answer_operation_outcomes(app_env: AppEnv, servers: list[ApiServer], path: str,
                                                    status: int) -> None:
    got, (headers, body), _ = call_raw(servers[0], path, {})
    assert got == status and headers["Content-Type"] == FHIR_JSON
    model(json.loads(body))


def test_other_tenants_and_the_operator_are_refused(app_env: AppEnv, servers: list[ApiServer]) -> None:
    server = servers[0]
    publish(server, app_env, public=True)
    assert call(server, "GET", f"{MANIFEST}?clientId=1", app_env.headers(tenant=2, role="admin"))[0] == 403
    operator = {"Authorization": f"Bearer {app_env.token(tenant=0, role='operator')}"}
    assert call(server, "GET", MANIFEST, operator)[0] == 403
