"""Strict parsing of ids, cursors and search terms (issue 11): crafted input that once gave
500s answers 400 in the error shape, cursors are signed, and patient search answers the
same whatever the casing or spacing asked first."""
from __future__ import annotations

import base64
import json

import pytest

from chalicelib.booking import cursor
from tests.conftest import TEST_AUTH_SECRET


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.body
    assert response.headers["Content-Type"] == "application/json"
    error = response.json_body["error"]
    assert error["code"] == code and error["message"], error
    return error


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _list(client, app_env, query: str):
    return client.http.get(f"/api/appointments/list?clientId=1&{query}", headers=app_env.headers(1, "staff"))


UNSIGNED_CURSORS = {
    "overflowing-timestamp": _b64("9999-12-31T23:59:59.999999+00:00|1"),  # old, unsigned form
    "year-zero": _b64("0000-01-01T00:00:00+00:00|1"),
    "huge-id": _b64("2026-01-01T00:00:00+00:00|" + "9" * 5000)[:100],
    "not-base64": "%%%%",
    "empty-mac": _b64("1|1") + ".",
    "forged-mac": _b64("1764547200000000|5") + "." + "A" * 22,
}


@pytest.mark.parametrize("kind", list(UNSIGNED_CURSORS))
def test_forged_cursors_are_400(client, app_env, kind):
    _error(_list(client, app_env, f"cursor={UNSIGNED_CURSORS[kind]}"), 400, "validation_error")


def test_a_signed_cursor_with_an_overflowing_position_is_400_not_500(client, app_env):
    """Even a correctly signed cursor (only the server can make one) that names a time
    past year 9999 is refused as input, not crashed on."""
    payload = f"{10**18}|1".encode()
    text = f"{cursor._b64(payload)}.{cursor._b64(cursor._mac(TEST_AUTH_SECRET, 1, payload))}"
    _error(_list(client, app_env, f"cursor={text}"), 400, "validation_error")


def test_cursors_are_bound_to_their_tenant_and_secret(client, app_env):
    first = _list(client, app_env, "limit=1")
    assert first.status_code == 200, first.body
    token = first.json_body["nextCursor"]
    assert token
    assert _list(client, app_env, f"limit=1&cursor={token}").status_code == 200
    # The same cursor for another tenant's list: refused.
    other = client.http.get(f"/api/appointments/list?clientId=2&limit=1&cursor={token}",
                            headers=app_env.headers(2, "staff"))
    _error(other, 400, "validation_error")
    # One character changed, in the signature or in the position, or only the unused bits
    # of the last character: refused.
    for index in (len(token) - 5, len(token) - 1, 2):
        flipped = token[:index] + ("A" if token[index] != "A" else "B") + token[index + 1:]
        _error(_list(client, app_env, f"limit=1&cursor={flipped}"), 400, "validation_error")
    # Signed with another secret: refused.
    foreign = cursor.sign("another-secret-of-at-least-32-bytes!!", 1, cursor.read(TEST_AUTH_SECRET, 1, token))
    _error(_list(client, app_env, f"limit=1&cursor={foreign}"), 400, "validation_error")


def test_pages_follow_the_signed_cursor_without_gaps(client, app_env):
    seen: list[int] = []
    page = _list(client, app_env, "limit=7&status=booked")
    for _ in range(4):
        assert page.status_code == 200, page.body
        seen += [a["id"] for a in page.json_body["appointments"]]
        if not page.json_body["nextCursor"]:
            break
        page = _list(client, app_env, f"limit=7&status=booked&cursor={page.json_body['nextCursor']}")
    expected = [r[0] for r in app_env.sql(
        "SELECT id FROM appointment WHERE tenant_id = 1 AND status = 'booked' ORDER BY starts_at, id LIMIT :n",
        n=len(seen))]
    assert seen == expected and len(seen) > 7


@pytest.mark.parametrize("segment", ["9" * 5000, "1" * 20, "9223372036854775808", "0", "007", "-1", "1e3",
                                     "%C2%B9", "\u0661"])
def test_oversized_and_odd_path_ids_are_400(client, app_env, segment):
    response = client.http.post(f"/api/appointments/{segment}/cancel", body=json.dumps({"clientId": 1}),
                                headers={**app_env.headers(1, "staff"), "Content-Type": "application/json"})
    _error(response, 400, "validation_error")


def test_the_largest_id_is_a_404_not_a_400(client, app_env):
    response = client.http.post("/api/appointments/9223372036854775807/cancel", body=json.dumps({"clientId": 1}),
                                headers={**app_env.headers(1, "staff"), "Content-Type": "application/json"})
    _error(response, 404, "not_found")


def _search(client, app_env, q: str):
    from urllib.parse import quote

    return client.http.get(f"/api/patients?clientId=1&q={quote(q)}", headers=app_env.headers(1, "staff"))


def test_record_number_search_is_the_same_whatever_the_casing_asked_first(client, app_env):
    number, name = app_env.sql("SELECT record_number, name FROM patient WHERE tenant_id = 1 ORDER BY id"
                               " OFFSET 5 LIMIT 1")[0]
    lower_first = _search(client, app_env, number.lower())
    assert lower_first.status_code == 200, lower_first.body
    assert [p["name"] for p in lower_first.json_body["patients"]] == [name]
    for variant in (number.upper(), number, f"  {number.lower()}  "):
        again = _search(client, app_env, variant)
        assert again.status_code == 200 and again.json_body == lower_first.json_body, variant
        assert again.headers["X-Cache"] in ("L1", "L2"), "one normalization: one cache entry"


def test_name_search_ignores_case_and_extra_spaces(client, app_env):
    name = app_env.sql("SELECT name FROM patient WHERE tenant_id = 1 AND name LIKE '% %' ORDER BY id LIMIT 1")[0][0]
    first, last = name.split(" ", 1)
    plain = _search(client, app_env, f"{first} {last[:2]}")
    assert plain.status_code == 200 and name in [p["name"] for p in plain.json_body["patients"]]
    shouted = _search(client, app_env, f"  {first.upper()}   {last[:2].upper()} ")
    assert shouted.json_body == plain.json_body


@pytest.mark.parametrize("q", [" ", "   ", "\t", "\u00a0\u2003"])
def test_whitespace_only_search_is_400(client, app_env, q):
    _error(_search(client, app_env, q), 400, "validation_error")
