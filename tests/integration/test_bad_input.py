"""Malformed input gets a 4xx JSON error {"error": {"code", "message"}}, never a 500."""
from __future__ import annotations

import json

import pytest

from tests.data_finders import latest_free_slot

# Any real calendar date: every request using it is refused for another part of the input.
DAY = "2026-03-02"
BIG = 2**40
HUGE = "99999999999999999999"
SQLI = "' OR 1=1--"

# (id, path, expected status) for GET routes; the token is admin of tenant 1.
GETS = [
    ("clientId-abc", "/api/departments?clientId=abc", 400),
    ("clientId-empty", "/api/departments?clientId=", 400),
    ("clientId-missing-departments", "/api/departments", 400),
    ("clientId-missing-slots", f"/api/slots/available?date={DAY}", 400),
    ("clientId-missing-list", "/api/appointments/list", 400),
    ("clientId-missing-dashboard", "/api/dashboard/stats", 400),
    ("clientId-float", "/api/departments?clientId=1.5", 400),
    ("clientId-negative", "/api/departments?clientId=-1", 400),
    ("clientId-zero", "/api/departments?clientId=0", 400),
    ("clientId-int4-overflow", f"/api/departments?clientId={BIG}", 400),
    ("clientId-huge", f"/api/departments?clientId={HUGE}", 400),
    ("clientId-sql", "/api/departments?clientId=1%20OR%201=1", 400),
    ("departmentId-abc", "/api/doctors?clientId=1&departmentId=abc", 400),
    ("departmentId-int4-overflow", f"/api/doctors?clientId=1&departmentId={BIG}", 400),
    ("departmentId-unknown", "/api/doctors?clientId=1&departmentId=999999", 200),
    ("doctorId-int4-overflow", f"/api/slots/available?clientId=1&date={DAY}&doctorId={BIG}", 400),
    ("unknown-param-departments", "/api/departments?clientId=1&foo=bar", 400),
    ("unknown-param-slots", f"/api/slots/available?clientId=1&date={DAY}&sort=desc", 400),
    ("unknown-param-list", "/api/appointments/list?clientId=1&offset=10", 400),
    ("date-feb-30", "/api/slots/available?clientId=1&date=2026-02-30", 400),
    ("date-month-13", "/api/slots/available?clientId=1&date=2026-13-01", 400),
    ("date-tomorrow", "/api/slots/available?clientId=1&date=tomorrow", 400),
    ("date-empty", "/api/slots/available?clientId=1&date=", 400),
    ("date-with-time", "/api/slots/available?clientId=1&date=2026-03-01T00:00:00", 400),
    ("date-year-0", "/api/slots/available?clientId=1&date=0000-01-01", 400),
    ("date-sql", "/api/slots/available?clientId=1&date=2026-03-01%27%3B--", 400),
    ("list-date-feb-30", "/api/appointments/list?clientId=1&date=2026-02-30", 400),
    ("list-from-month-13", "/api/appointments/list?clientId=1&from=2026-13-01", 400),
    ("list-to-tomorrow", "/api/appointments/list?clientId=1&to=tomorrow", 400),
    ("list-to-before-from", "/api/appointments/list?clientId=1&from=2026-03-02&to=2026-03-01", 400),
    ("list-range-too-long", "/api/appointments/list?clientId=1&from=2020-01-01&to=2026-01-01", 400),
    ("list-date-and-from", "/api/appointments/list?clientId=1&date=2026-03-01&from=2026-03-01", 400),
    ("list-status-unknown", "/api/appointments/list?clientId=1&status=deleted", 400),
    ("limit-abc", "/api/appointments/list?clientId=1&limit=abc", 400),
    ("limit-0", "/api/appointments/list?clientId=1&limit=0", 400),
    ("limit-201", "/api/appointments/list?clientId=1&limit=201", 400),
    ("limit-negative", "/api/appointments/list?clientId=1&limit=-1", 400),
    ("limit-huge", f"/api/appointments/list?clientId=1&limit={HUGE}", 400),
    ("limit-float", "/api/appointments/list?clientId=1&limit=1.5", 400),
    ("patients-limit-0", "/api/patients?clientId=1&q=a&limit=0", 400),
    ("patients-limit-huge", f"/api/patients?clientId=1&q=a&limit={HUGE}", 400),
    ("patientId-int4-overflow", f"/api/appointments/list?clientId=1&patientId={BIG}", 400),
    ("cursor-sql", "/api/appointments/list?clientId=1&cursor=%27%20OR%201%3D1--", 400),
    ("cursor-garbage", "/api/appointments/list?clientId=1&cursor=abc", 400),
    ("cursor-base64-garbage", "/api/appointments/list?clientId=1&cursor=Zm9vfGJhcg", 400),
    ("cursor-no-tz", "/api/appointments/list?clientId=1&cursor=MjAyNi0wMS0wMVQwMDowMDowMHwx", 400),
    ("cursor-empty", "/api/appointments/list?clientId=1&cursor=", 400),
    ("cursor-long", "/api/appointments/list?clientId=1&cursor=" + "A" * 500, 400),
    ("q-empty", "/api/patients?clientId=1&q=", 400),
    ("q-too-long", "/api/patients?clientId=1&q=" + "a" * 101, 400),
    ("unknown-tenant", "/api/departments?clientId=999", 403),
]


def _assert_json_error(response, status: int | None = None) -> dict:
    assert 400 <= response.status_code < 500, (response.status_code, response.body)
    if status is not None:
        assert response.status_code == status, response.body
    assert response.headers.get("Content-Type", "").startswith("application/json"), response.headers
    body = json.loads(response.body)
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert b"Traceback" not in response.body
    return error


@pytest.mark.parametrize("path,status", [(p, s) for _, p, s in GETS], ids=[i for i, _, _ in GETS])
def test_bad_query(client, app_env, path, status):
    response = client.http.get(path, headers=app_env.headers(1, "admin"))
    if status == 200:
        assert response.status_code == 200, response.body
        return
    error = _assert_json_error(response, status)
    if status == 400:
        assert error["code"] == "validation_error"


@pytest.mark.parametrize("q", [SQLI, "%", "_", "\\", "a%", "a_", "'; DROP TABLE patient;--", "\u03a9", "MRN-%"])
def test_patient_search_text_is_literal(client, app_env, q):
    """LIKE wildcards and SQL in q are plain text: no name or record number matches them."""
    from urllib.parse import quote

    response = client.http.get(f"/api/patients?clientId=1&q={quote(q)}", headers=app_env.headers(1, "staff"))
    assert response.status_code == 200, response.body
    assert response.json_body["patients"] == []
    assert app_env.sql("SELECT count(*) FROM patient")[0][0] > 0


def test_patient_search_nul_character_is_400(client, app_env):
    _assert_json_error(client.http.get("/api/patients?clientId=1&q=a%00b", headers=app_env.headers(1, "staff")),
                       400)


def _future_slot(app_env) -> int:
    """A slot that a valid body could book: free, on a day after the tenant's today."""
    return latest_free_slot(app_env.sql, 1)


def _book_bodies(slot: int) -> list[tuple[str, object, int]]:
    return [
        ("slotId-string", {"clientId": 1, "slotId": str(slot), "patientId": 1}, 400),
        ("clientId-string", {"clientId": "1", "slotId": slot, "patientId": 1}, 400),
        ("patientId-string", {"clientId": 1, "slotId": slot, "patientId": "1"}, 400),
        ("slotId-float", {"clientId": 1, "slotId": 1.5, "patientId": 1}, 400),
        ("slotId-float-integral", {"clientId": 1, "slotId": float(slot), "patientId": 1}, 400),
        ("slotId-bool", {"clientId": 1, "slotId": True, "patientId": 1}, 400),
        ("slotId-null", {"clientId": 1, "slotId": None, "patientId": 1}, 400),
        ("slotId-list", {"clientId": 1, "slotId": [slot], "patientId": 1}, 400),
        ("slotId-zero", {"clientId": 1, "slotId": 0, "patientId": 1}, 400),
        ("slotId-negative", {"clientId": 1, "slotId": -5, "patientId": 1}, 400),
        ("slotId-int8-overflow", {"clientId": 1, "slotId": 2**63, "patientId": 1}, 400),
        ("slotId-huge", {"clientId": 1, "slotId": 10**30, "patientId": 1}, 400),
        ("slotId-big-unknown", {"clientId": 1, "slotId": BIG, "patientId": 1}, 404),
        ("slotId-unknown", {"clientId": 1, "slotId": 8_888_888_888, "patientId": 1}, 404),
        ("patientId-unknown", {"clientId": 1, "slotId": slot, "patientId": 999_999}, 404),
        ("patientId-int4-overflow", {"clientId": 1, "slotId": slot, "patientId": BIG}, 400),
        ("clientId-int4-overflow", {"clientId": BIG, "slotId": slot, "patientId": 1}, 400),
        ("clientId-missing", {"slotId": slot, "patientId": 1}, 400),
        ("slotId-missing", {"clientId": 1, "patientId": 1}, 400),
        ("patientId-missing", {"clientId": 1, "slotId": slot}, 400),
        ("unknown-field", {"clientId": 1, "slotId": slot, "patientId": 1, "status": "completed"}, 400),
        ("reason-too-long", {"clientId": 1, "slotId": slot, "patientId": 1, "reason": "x" * 501}, 400),
        ("reason-number", {"clientId": 1, "slotId": slot, "patientId": 1, "reason": 5}, 400),
        ("reason-nul-char", {"clientId": 1, "slotId": slot, "patientId": 1, "reason": "a\u0000b"}, 400),
        ("empty-object", {}, 400),
        ("array", [{"clientId": 1, "slotId": slot, "patientId": 1}], 400),
        ("string", "hello", 400),
        ("number", 42, 400),
        ("null", None, 400),
    ]


BOOK_IDS = [i for i, _, _ in _book_bodies(1)]


@pytest.mark.parametrize("index", range(len(BOOK_IDS)), ids=BOOK_IDS)
def test_bad_booking_body(client, app_env, index):
    slot = _future_slot(app_env)
    _, body, status = _book_bodies(slot)[index]
    before = app_env.sql("SELECT count(*) FROM appointment")[0][0]
    response = client.http.post("/api/appointments", headers={**app_env.headers(1, "staff"),
                                                              "Content-Type": "application/json"},
                                body=json.dumps(body))
    error = _assert_json_error(response, status)
    if status == 400:
        assert error["code"] == "validation_error"
    assert app_env.sql("SELECT count(*) FROM appointment")[0][0] == before


RAW_BODIES = [
    ("not-json", b"clientId=1&slotId=2", 400),
    ("truncated-json", b'{"clientId": 1, "slotId":', 400),
    ("empty", b"", 400),
    ("whitespace", b"   ", 400),
    ("single-quotes", b"{'clientId': 1}", 400),
    ("trailing-garbage", b'{"clientId": 1} x', 400),
    ("nan", b'{"clientId": NaN, "slotId": 1, "patientId": 1}', 400),
    ("invalid-utf8", b'{"clientId": 1, "reason": "\xff\xfe"}', 400),
    ("deep-nesting", b"[" * 5000 + b"]" * 5000, 400),
    ("huge-1mb", b'{"clientId": 1, "slotId": 1, "patientId": 1, "reason": "' + b"x" * (1024 * 1024) + b'"}', 413),
]


@pytest.mark.parametrize("raw,status", [(r, s) for _, r, s in RAW_BODIES], ids=[i for i, _, _ in RAW_BODIES])
@pytest.mark.parametrize("route", ["book", "cancel"])
def test_bad_raw_body(client, app_env, raw, status, route):
    path = "/api/appointments" if route == "book" else "/api/appointments/1/cancel"
    response = client.http.post(path, headers={**app_env.headers(1, "staff"), "Content-Type": "application/json"},
                                body=raw)
    _assert_json_error(response, status)


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/xml", "text/html",
                                          "application/octet-stream"])
@pytest.mark.parametrize("route", ["book", "cancel"])
def test_wrong_content_type(client, app_env, content_type, route):
    path = "/api/appointments" if route == "book" else "/api/appointments/1/cancel"
    headers = app_env.headers(1, "staff")
    if content_type is not None:
        headers["Content-Type"] = content_type
    body = json.dumps({"clientId": 1, "slotId": _future_slot(app_env), "patientId": 1})
    before = app_env.sql("SELECT count(*) FROM appointment")[0][0]
    response = client.http.post(path, headers=headers, body=body)
    _assert_json_error(response, 415)
    assert app_env.sql("SELECT count(*) FROM appointment")[0][0] == before


def test_json_content_type_with_charset_is_accepted(client, app_env):
    response = client.http.post("/api/appointments/9000000000/cancel",
                                headers={**app_env.headers(1, "staff"),
                                         "Content-Type": "application/json; charset=utf-8"},
                                body='{"clientId": 1}')
    _assert_json_error(response, 404)


CANCEL_PATHS = [
    ("abc", 400), ("1.5", 400), ("-1", 400), ("0", 400), ("1e3", 400), ("%20", 400), ("0x10", 400),
    (str(2**63), 400), (HUGE, 400), ("%27%20OR%201%3D1--", 400), ("\u0661", 400),
    (str(BIG), 404), ("8888888888", 404),
]


@pytest.mark.parametrize("segment,status", CANCEL_PATHS, ids=[s for s, _ in CANCEL_PATHS])
def test_cancel_path_id(client, app_env, segment, status):
    response = client.http.post(f"/api/appointments/{segment}/cancel",
                                headers={**app_env.headers(1, "staff"), "Content-Type": "application/json"},
                                body='{"clientId": 1}')
    _assert_json_error(response, status)


@pytest.mark.parametrize("body,status", [
    ({"clientId": "1"}, 400), ({"clientId": BIG}, 400), ({}, 400), ({"clientId": 1, "reason": 7}, 400),
    ({"clientId": 1, "reason": "x" * 501}, 400), ({"clientId": 1, "extra": True}, 400),
    ({"clientId": 1, "reason": "a\u0000b"}, 400), ({"clientId": 2}, 403),
], ids=["clientId-string", "clientId-overflow", "clientId-missing", "reason-number", "reason-long",
        "unknown-field", "reason-nul-char", "other-tenant"])
def test_bad_cancel_body(client, app_env, body, status):
    response = client.http.post("/api/appointments/1/cancel",
                                headers={**app_env.headers(1, "staff"), "Content-Type": "application/json"},
                                body=json.dumps(body))
    _assert_json_error(response, status)


@pytest.mark.parametrize("key", ["", "x" * 201, "tab\there"])
def test_bad_idempotency_key(client, app_env, key):
    response = client.http.post("/api/appointments", headers={**app_env.headers(1, "staff"),
                                                              "Content-Type": "application/json",
                                                              "Idempotency-Key": key},
                                body=json.dumps({"clientId": 1, "slotId": _future_slot(app_env), "patientId": 1}))
    _assert_json_error(response, 400)
