"""A property-based fuzz of every FHIR route on a real `serve` process (hypothesis draws
methods, paths, search parameters, bodies, conditional headers and callers of two tenants):
no answer is a 5xx; every error is an OperationOutcome in FHIR's media type that the
independent R4B models accept; and no caller ever reads a resource of another tenant."""
from __future__ import annotations

import http.client
import json
from typing import Any, Iterator, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import AppEnv
from tests.e2e.test_fhir import FHIR_JSON, model
from tests.helpers_servers import ApiServer, running_servers

TYPES = ("Practitioner", "HealthcareService", "Schedule", "Slot", "Appointment", "Patient", "Observation",
         "$bulk-publish", "metadata", "_history", "")
PARAMS = ("name", "identifier", "schedule", "start", "status", "service-type", "_count", "_offset", "patient",
          "practitioner", "date", "actor", "clientId", "_id", "_format", "_since", "family")
VALUES = st.one_of(
    st.sampled_from(["1", "2", "0", "-1", "99999999999999999999", "Patient/1", "Schedule/2", "ge2026-12-05",
                     "lt2027-01-01", "eq2026-12-05", "gt2026-01-01", "free", "busy", "booked", "cancelled", "%00",
                     "", "x" * 300, "Practitioner/abc", "2026-02-30"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20))
SEGMENT = st.one_of(st.sampled_from(["1", "2", "3", "abc", "_history", "Slot.ndjson", "Location.ndjson", "0",
                                     "99999999999999999999", "%24bulk-publish", "..", "%2F"]),
                    st.from_regex(r"[A-Za-z0-9._$-]{1,12}", fullmatch=True))
BODIES = st.one_of(
    st.none(),
    st.fixed_dictionaries({"resourceType": st.sampled_from(["Appointment", "Patient", "Slot", ""])},
                          optional={"status": st.sampled_from(["booked", "cancelled", "noshow", "arrived", 7]),
                                    "slot": st.one_of(st.lists(st.fixed_dictionaries({"reference": VALUES}),
                                                               max_size=2), VALUES),
                                    "participant": st.lists(st.fixed_dictionaries(
                                        {"actor": st.fixed_dictionaries({"reference": VALUES})}), max_size=3),
                                    "id": VALUES}),
    st.text(max_size=40))


@pytest.fixture(scope="module")
def server(app_env: AppEnv) -> Iterator[ApiServer]:
    with running_servers(app_env.env, 1) as started:
        yield started[0]


@pytest.fixture(scope="module")
def callers(app_env: AppEnv) -> dict[str, dict[str, str]]:
    patient = app_env.sql("SELECT id FROM patient WHERE tenant_id = 1 ORDER BY id LIMIT 1")[0][0]
    return {"staff1": app_env.headers(role="staff"), "admin2": app_env.headers(tenant=2, role="admin"),
            "patient1": app_env.headers(role="patient", patient_id=patient), "none": {},
            "garbage": {"Authorization": "Bearer not.a.token"}}


@pytest.fixture(scope="module")
def owners(app_env: AppEnv) -> dict[tuple[str, str], set[int]]:
    """(resource type, id) -> the tenants that have it (ids are unique across tenants)."""
    found: dict[tuple[str, str], set[int]] = {}
    for kind, table in (("Practitioner", "doctor"), ("Schedule", "doctor"), ("HealthcareService", "department"),
                        ("Patient", "patient"), ("Appointment", "appointment")):
        for tenant, ident in app_env.sql(f"SELECT tenant_id, id FROM {table} WHERE id <= 3"):
            found.setdefault((kind, str(ident)), set()).add(tenant)
    return found


def send(server: ApiServer, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        data = None if body is None else (body if isinstance(body, str) else json.dumps(body)).encode()
        sent = {**headers, **({"Content-Type": FHIR_JSON} if data is not None else {})}
        connection.request(method, path, body=data, headers=sent)
        answer = connection.getresponse()
        return answer.status, dict(answer.getheaders()), answer.read()
    finally:
        connection.close()


def _query(pairs: list[tuple[str, str]]) -> str:
    from urllib.parse import urlencode

    return ("?" + urlencode(pairs)) if pairs else ""


@settings(max_examples=1500, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(method=st.sampled_from(["GET", "GET", "GET", "POST", "PUT", "PATCH", "DELETE"]),
       kind=st.sampled_from(TYPES), segments=st.lists(SEGMENT, max_size=3),
       pairs=st.lists(st.tuples(st.sampled_from(PARAMS), VALUES), max_size=4),
       caller=st.sampled_from(["staff1", "admin2", "patient1", "none", "garbage"]),
       if_none_match=st.one_of(st.none(), st.sampled_from(['W/"x"', "*", '"abc"', "W/", ""])), body=BODIES)
def test_fhir_routes_never_fail_and_never_cross_tenants(server: ApiServer, callers: dict[str, dict[str, str]],
                                                        owners: dict[tuple[str, str], set[int]], method: str,
                                                        kind: str, segments: list[str],
                                                        pairs: list[tuple[str, str]], caller: str,
                                                        if_none_match: Optional[str], body: Any) -> None:
    path = "/".join(["/fhir/R4", kind, *segments]).rstrip("/") + _query(pairs)
    headers = {**callers[caller], **({"If-None-Match": if_none_match} if if_none_match is not None else {})}
    status, answer_headers, raw = send(server, method, path, headers, body if method != "GET" else None)
    assert status < 500, (method, path, status, raw[:300])
    media = answer_headers.get("Content-Type", "")
    if status >= 400:
        assert media == FHIR_JSON, (method, path, status, media)
        assert type(model(json.loads(raw))).__name__ == "OperationOutcome"
        return
    if status != 200 or method != "GET" or not raw:
        return
    if media == FHIR_JSON:
        document = json.loads(raw)
        model(document)
        if len(segments) == 1 and kind == document.get("resourceType"):
            tenants = owners.get((kind, document["id"]))
            assert tenants is None or (2 if caller == "admin2" else 1) in tenants, (path, caller)
