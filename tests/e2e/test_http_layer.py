"""The HTTP layer's own answers are in the error shape, and `serve` logs no query strings.

Two layers are exercised for real: the Chalice handler as Lambda calls it
(`app.app(event, context)` with API Gateway proxy events) and a `serve` process spoken to
over raw sockets (malformed requests cannot be sent with an HTTP client). Every error body
is `{"error": {"code", "message"}}` as application/json and repeats nothing of the request.
"""
from __future__ import annotations

import http.client
import inspect
import json
import re
import threading
import time
from typing import Any, Iterator, Optional

import pytest
from chalice import BadRequestError, Chalice, NotFoundError, Response
from chalice.local import LocalChalice
from chalice.test import Client

from chalicelib.api_app import RouteMethods, ShapedErrorsChalice
from chalicelib.http import error_response, json_response
from chalicelib.local_server import thread_local_requests
from tests.helpers_http import assert_error_shape, raw_exchange, request_bytes
from tests.helpers_servers import PROJECT_DIR, ApiServer, KeepAlive

TOKEN_MARK = "TOKEN-MUST-NOT-BE-ECHOED-4f9c2a"


# -- the Chalice handler, as Lambda sees it -------------------------------------------------

class _Context:
    """The parts of a Lambda context the app reads."""

    function_name = "hospital-booking-dev"
    aws_request_id = "test-request"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:hospital-booking-dev"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def api_event(method: str, resource: str, path: Optional[str] = None, query: Optional[dict[str, str]] = None,
              headers: Optional[dict[str, str]] = None, body: Optional[str] = None) -> dict[str, Any]:
    """An API Gateway REST proxy event: `resource` is the matched route, `path` the request's."""
    path = path or resource
    sent = {"Host": "abc123.execute-api.us-east-1.amazonaws.com", "Accept": "application/json", **(headers or {})}
    return {
        "resource": resource, "path": path, "httpMethod": method, "headers": sent,
        "multiValueHeaders": {k: [v] for k, v in sent.items()},
        "queryStringParameters": dict(query) if query else None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": None, "stageVariables": None,
        "requestContext": {"resourcePath": resource, "httpMethod": method, "path": f"/api{path}",
                           "requestId": "test-request", "stage": "api", "identity": {"sourceIp": "203.0.113.10"}},
        "body": body, "isBase64Encoded": False,
    }


def lambda_call(app: Chalice, event: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    """Invoke the handler; (status, lower-cased single-value headers, body bytes)."""
    response = app(event, _Context())
    headers = {k.lower(): str(v) for k, v in (response.get("headers") or {}).items()}
    return response["statusCode"], headers, (response.get("body") or "").encode()


@pytest.fixture(scope="module")
def lambda_app(app_env: Any) -> Chalice:
    """The real app (app.py), its settings bound to the test database."""
    import app as app_module

    return app_module.app


def test_app_is_the_shaped_chalice(lambda_app: Chalice) -> None:
    assert isinstance(lambda_app, ShapedErrorsChalice)


def test_seam_is_chalice_call_statement_for_statement() -> None:
    """ShapedErrorsChalice.__call__ repeats Chalice.__call__ (to avoid a wrapper's cost on
    every request): if Chalice's changes, the copy must be checked again."""
    lines = [line.strip() for line in inspect.getsource(Chalice.__call__).splitlines()]
    code = [line for line in lines if line and not line.startswith("#")]
    assert code == [
        "def __call__(self, event: Any, context: Any) -> Dict[str, Any]:",
        "self.lambda_context: 'LambdaContext' = context",
        "handler = RestAPIEventHandler(",
        "self.routes, self.api, self.log, self.debug,",
        "middleware_handlers=self._get_middleware_handlers('http'),",
        ")",
        "self.current_request: \\",
        "Optional[Request] = handler.create_request_object(event, context)",
        "return handler(event, context)",
    ]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_lambda_wrong_method_is_405_with_allow(lambda_app: Chalice, method: str) -> None:
    auth = f"Bearer {TOKEN_MARK}"
    status, headers, body = lambda_call(lambda_app, api_event(method, "/api/departments", query={"clientId": "1"},
                                                              headers={"Authorization": auth}))
    assert status == 405
    assert headers["allow"] == "GET"
    assert_error_shape(status, headers, body, "method_not_allowed", echoed=(TOKEN_MARK, method))


def test_lambda_wrong_method_on_a_post_route(lambda_app: Chalice) -> None:
    status, headers, body = lambda_call(lambda_app, api_event("GET", "/api/appointments"))
    assert (status, headers["allow"]) == (405, "POST")
    assert_error_shape(status, headers, body, "method_not_allowed")


@pytest.mark.parametrize(("path", "allow"), [("/api/departments?clientId=1", "GET"), ("/api/appointments", "POST"),
                                            ("/api/appointments/5/cancel", "POST"), ("/monitor", "GET")])
def test_chalice_test_client_options_is_405_with_allow(lambda_app: Chalice, path: str, allow: str) -> None:
    """Chalice's LocalGateway (chalice.test.Client, `serve`) answered OPTIONS 200 itself, as
    a CORS preflight; the API has no CORS, so OPTIONS is a wrong method like any other."""
    with Client(lambda_app, project_dir=PROJECT_DIR) as client:
        response = client.http.options(path, headers={"Authorization": f"Bearer {TOKEN_MARK}"})
    headers = {k.lower(): str(v) for k, v in response.headers.items()}
    assert (response.status_code, headers.get("allow")) == (405, allow)
    assert_error_shape(response.status_code, headers, response.body, "method_not_allowed", echoed=(TOKEN_MARK,))


def test_options_is_not_one_of_a_routes_methods(lambda_app: Chalice) -> None:
    """The 405 view for OPTIONS is found by lookup, never listed: not in Allow, not in the
    deployed API (tests/integration/test_gateway_responses.py)."""
    for path, methods in lambda_app.routes.items():
        assert "OPTIONS" not in list(methods) and "OPTIONS" in methods, path
    assert "OPTIONS" not in RouteMethods()  # a path without views has no OPTIONS either


def test_lambda_head_answers_405_without_a_body(lambda_app: Chalice) -> None:
    status, headers, body = lambda_call(lambda_app, api_event("HEAD", "/api/departments", query={"clientId": "1"}))
    assert (status, headers["allow"], body) == (405, "GET", b"")


def test_lambda_unknown_resource_is_404(lambda_app: Chalice) -> None:
    """API Gateway never sends an event for a resource the app lacks; if one came, 404."""
    status, headers, body = lambda_call(lambda_app, api_event("GET", "/api/nope", headers={
        "Authorization": f"Bearer {TOKEN_MARK}"}))
    assert status == 404 and "allow" not in headers
    assert_error_shape(status, headers, body, "not_found", echoed=(TOKEN_MARK,))
    assert "/api/nope" not in lambda_app.routes  # Chalice's defaultdict lookup left no entry


def test_lambda_route_errors_keep_their_own_shape(lambda_app: Chalice, app_env: Any) -> None:
    """The app's own errors (here 401 and 400 validation_error) pass through unchanged."""
    status, headers, body = lambda_call(lambda_app, api_event("GET", "/api/departments", query={"clientId": "1"}))
    assert_error_shape(status, headers, body, "unauthorized")
    status, headers, body = lambda_call(lambda_app, api_event(
        "GET", "/api/departments", query={"clientId": "abc"}, headers=app_env.headers()))
    assert status == 400
    assert_error_shape(status, headers, body, "validation_error")


def test_lambda_success_is_untouched(lambda_app: Chalice, app_env: Any) -> None:
    event = api_event("GET", "/api/departments", query={"clientId": "1"}, headers=app_env.headers())
    status, headers, body = lambda_call(lambda_app, event)
    assert status == 200 and "departments" in json.loads(body)


def _chalice_errors_app(debug: bool = False) -> ShapedErrorsChalice:
    """A small app of the same class whose views make Chalice answer by itself."""
    demo = ShapedErrorsChalice(app_name="shaped-errors-demo", configure_logs=False)
    demo.debug = debug

    @demo.route("/view-error")
    def view_error() -> Response:
        raise NotFoundError(f"no such thing: {demo.current_request.headers.get('authorization')}")

    @demo.route("/bad-request")
    def bad_request() -> Response:
        raise BadRequestError("Error Parsing JSON")

    @demo.route("/crash")
    def crash() -> Response:
        raise RuntimeError("boom")

    @demo.route("/json-only", methods=["POST"], content_types=["application/json"])
    def json_only() -> Response:
        return json_response({"ok": True})

    @demo.route("/binary")
    def binary() -> Response:
        return Response(body=b"\x00\x01", headers={"Content-Type": "application/octet-stream"})

    @demo.route("/degraded")
    def degraded() -> Response:
        return json_response({"status": "degraded", "db": "down"}, status=503)

    @demo.route("/own-error")
    def own_error() -> Response:
        return error_response(409, "slot_taken", "That slot is already booked.")

    return demo


@pytest.mark.parametrize(("path", "method", "headers", "status", "code"), [
    ("/view-error", "GET", {}, 404, "not_found"),
    ("/bad-request", "GET", {}, 400, "bad_request"),
    ("/crash", "GET", {}, 500, "internal_error"),
    ("/json-only", "POST", {"Content-Type": f"text/{TOKEN_MARK.lower()}"}, 415, "unsupported_media_type"),
    ("/json-only", "GET", {}, 405, "method_not_allowed"),
    ("/binary", "GET", {"Accept": "application/json"}, 400, "bad_request"),
])
def test_chalice_own_errors_become_the_shape(path: str, method: str, headers: dict[str, str], status: int,
                                             code: str) -> None:
    demo = _chalice_errors_app()
    sent = {"Authorization": f"Bearer {TOKEN_MARK}", **headers}
    got_status, got_headers, body = lambda_call(demo, api_event(method, path, headers=sent, body="{}"))
    assert got_status == status, body
    assert_error_shape(got_status, got_headers, body, code, echoed=(TOKEN_MARK, TOKEN_MARK.lower(), "boom"))
    assert b"Code" not in body


def test_chalice_debug_traceback_becomes_the_shape() -> None:
    status, headers, body = lambda_call(_chalice_errors_app(debug=True), api_event("GET", "/crash"))
    assert status == 500
    assert_error_shape(status, headers, body, "internal_error", echoed=("Traceback", "boom"))


def test_answers_of_the_app_itself_are_kept() -> None:
    demo = _chalice_errors_app()
    status, _, body = lambda_call(demo, api_event("GET", "/degraded"))
    assert (status, json.loads(body)) == (503, {"status": "degraded", "db": "down"})
    status, headers, body = lambda_call(demo, api_event("GET", "/own-error"))
    assert status == 409
    assert_error_shape(status, headers, body, "slot_taken")


# -- a `serve` process ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(app_env: Any) -> Iterator[ApiServer]:
    """`python -m chalicelib.cli serve` on the test database; its stderr goes to server.log_path."""
    started = ApiServer(app_env.env).start()
    try:
        started.wait_healthy()
        yield started
    finally:
        started.stop()


@pytest.mark.parametrize("target", ["/nope", "/api/nope?clientId=1", "/", "/api/appointments/1/cancel/extra"])
def test_serve_unknown_path_is_404_without_the_token(server: ApiServer, target: str) -> None:
    auth = f"Bearer {TOKEN_MARK}"
    status, headers, body = raw_exchange(server.port, request_bytes("GET", target, {"Authorization": auth}))
    assert status == 404
    assert_error_shape(status, headers, body, "not_found", echoed=(TOKEN_MARK, "Credential", "nope", "extra"))


def test_serve_unknown_path_without_authorization(server: ApiServer) -> None:
    status, headers, body = raw_exchange(server.port, request_bytes("POST", "/api/nope"))
    assert status == 404
    assert_error_shape(status, headers, body, "not_found", echoed=("Missing Authentication Token",))


@pytest.mark.parametrize(("method", "target", "allow"), [
    ("DELETE", "/api/health", "GET"),
    ("PUT", "/api/departments?clientId=1", "GET"),
    ("GET", "/api/appointments", "POST"),
    ("PATCH", "/api/appointments/5/cancel", "POST"),
    ("OPTIONS", "/api/departments?clientId=1", "GET"),
    ("OPTIONS", "/api/appointments/5/status", "POST"),
])
def test_serve_wrong_method_is_405_with_allow(server: ApiServer, method: str, target: str, allow: str) -> None:
    status, headers, body = raw_exchange(server.port, request_bytes(method, target, {
        "Authorization": f"Bearer {TOKEN_MARK}"}))
    assert (status, headers.get("allow")) == (405, allow)
    assert_error_shape(status, headers, body, "method_not_allowed", echoed=(TOKEN_MARK,))


@pytest.mark.parametrize(("target", "status"), [("/api/departments?clientId=1", 405), ("/api/health", 405),
                                                ("/nope", 404)])
def test_serve_head_answers_without_a_body(server: ApiServer, target: str, status: int) -> None:
    got_status, headers, body = raw_exchange(server.port, request_bytes("HEAD", target))
    assert (got_status, body) == (status, b"")
    assert headers["content-type"] == "application/json"
    if status == 405:
        assert headers["allow"] == "GET"


def test_serve_head_keeps_a_keep_alive_connection_in_step(server: ApiServer) -> None:
    """After a HEAD answer the next request on the same connection is read correctly."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("HEAD", "/api/health")
        head = conn.getresponse()
        assert (head.status, head.read()) == (405, b"")
        conn.request("GET", "/api/health")
        after = conn.getresponse()
        assert after.status == 200 and json.loads(after.read())["db"] == "ok"
    finally:
        conn.close()


@pytest.mark.parametrize(("method", "target", "status", "code"), [
    ("TRACE", "/api/health", 405, "method_not_allowed"), ("PROPFIND", "/api/health", 405, "method_not_allowed"),
    ("PUT", "/api/slots/available?clientId=1", 405, "method_not_allowed"),
    ("CONNECT", "127.0.0.1:443", 404, "not_found"), ("BREW", "/", 404, "not_found"),
    ("OPTIONS", "/api/nope", 404, "not_found"), ("OPTIONS", "*", 404, "not_found")])
def test_serve_other_methods_are_405_on_known_paths_else_404(server: ApiServer, method: str, target: str,
                                                              status: int, code: str) -> None:
    got, headers, body = raw_exchange(server.port, request_bytes(method, target, {
        "Authorization": f"Bearer {TOKEN_MARK}", "X-Probe": "probe-value-7"}))
    assert got == status
    assert_error_shape(got, headers, body, code, echoed=(TOKEN_MARK, "probe-value-7", method))
    if status == 405:
        assert headers.get("allow") == "GET", headers
    assert b"<html" not in body.lower()


@pytest.mark.parametrize(("data", "status", "code"), [
    (b"GARBAGE\r\n\r\n", 400, "bad_request"),
    (b"GET /api/health HTTP/x.y\r\n\r\n", 400, "bad_request"),
    (b"GET /api/health HTTP/1.1 extra\r\n\r\n", 400, "bad_request"),
    (b"POST /api/appointments\r\n\r\n", 400, "bad_request"),  # HTTP/0.9 allows only GET
    (b"GET /api/health HTTP/2.0\r\n\r\n", 505, "http_version_not_supported"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 tls hello\r\n\r\n", 400, "bad_request"),
])
def test_serve_malformed_request_line(server: ApiServer, data: bytes, status: int, code: str) -> None:
    got_status, headers, body = raw_exchange(server.port, data)
    assert got_status == status
    assert_error_shape(got_status, headers, body, code, echoed=("GARBAGE", "extra", "HTTP/x.y", "tls hello"))
    assert headers["connection"] == "close"


def test_serve_request_line_over_64k_is_414(server: ApiServer) -> None:
    target = "/api/patients?clientId=1&q=" + "Q" * 70_000
    status, headers, body = raw_exchange(server.port, request_bytes("GET", target))
    assert status == 414
    assert_error_shape(status, headers, body, "uri_too_long", echoed=("QQQQ",))


def test_serve_header_line_over_64k_is_431(server: ApiServer) -> None:
    status, headers, body = raw_exchange(server.port, request_bytes("GET", "/api/health", {
        "Authorization": f"Bearer {TOKEN_MARK}" + "x" * 70_000}))
    assert status == 431
    assert_error_shape(status, headers, body, "headers_too_large", echoed=(TOKEN_MARK, "xxxx"))


def test_serve_over_100_headers_is_431(server: ApiServer) -> None:
    many = {f"X-Filler-{i}": f"filler-{i}" for i in range(120)}
    status, headers, body = raw_exchange(server.port, request_bytes("GET", "/api/health", {
        "Authorization": f"Bearer {TOKEN_MARK}", **many}))
    assert status == 431
    assert_error_shape(status, headers, body, "headers_too_large", echoed=(TOKEN_MARK, "filler-1"))


@pytest.mark.parametrize(("length", "status", "code"), [("abc", 400, "bad_request"), ("-5", 400, "bad_request"),
                                                        ("99999999999", 413, "payload_too_large")])
def test_serve_bad_content_length(server: ApiServer, length: str, status: int, code: str) -> None:
    got_status, headers, body = raw_exchange(server.port, request_bytes("POST", "/api/appointments", {
        "Content-Type": "application/json", "Content-Length": length}))
    assert got_status == status
    assert_error_shape(got_status, headers, body, code, echoed=(length,) if length != "-5" else ())


def test_serve_still_answers_after_the_malformed_requests(server: ApiServer) -> None:
    assert server.proc is not None and server.proc.poll() is None
    status, _, body = raw_exchange(server.port, request_bytes("GET", "/api/health"))
    assert status == 200 and json.loads(body)["db"] == "ok"


def _log_text(server: ApiServer, must_contain: str, timeout_s: float = 5.0) -> str:
    """The server's log once it contains `must_contain`."""
    deadline = time.monotonic() + timeout_s
    while True:
        with open(server.log_path, "rb") as f:
            text = f.read().decode(errors="replace")
        if must_contain in text or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


def test_serve_access_log_has_no_query_string(server: ApiServer, app_env: Any) -> None:
    """A patient search by name and by record number is logged as method, path, status and
    duration: no search term, no query string, no token."""
    name, record = app_env.sql("SELECT name, record_number FROM patient WHERE tenant_id = 1 ORDER BY id LIMIT 1")[0]
    prefix = name.split()[0]
    token = app_env.token(role="staff")
    for term in (prefix, record):
        target = f"/api/patients?clientId=1&q={term.replace(' ', '%20')}&limit=5"
        status, _, body = raw_exchange(server.port, request_bytes("GET", target, {"Authorization": f"Bearer {token}"}))
        assert status == 200, body
        assert json.loads(body)["patients"]
    raw_exchange(server.port, request_bytes("GET", f"/api/nope?q={prefix}"))
    raw_exchange(server.port, f"GET /api/patients?q={prefix} HTTP/x\r\n\r\n".encode())  # malformed, 400

    text = _log_text(server, "GET /api/nope 404")
    assert re.search(r"^GET /api/patients 200 \d+\.\dms$", text, re.MULTILINE), text[-2000:]
    assert re.search(r"^GET /api/nope 404 \d+\.\dms$", text, re.MULTILINE), text[-2000:]
    assert re.search(r"^- - 400 ", text, re.MULTILINE), text[-2000:]
    for secret in (prefix, record, "q=", token, TOKEN_MARK, "Credential"):
        assert secret not in text, (secret, text[-2000:])
    access_lines = [line for line in text.splitlines() if re.match(r"^(-|[A-Z]+) (-|/)\S* ", line)]
    assert len(access_lines) >= 4
    for line in access_lines:  # every line of every earlier test of this module too
        assert re.fullmatch(r"(-|[A-Z]+) (-|/\S*) (\d{3} (\d+\.\dms|-)|error: .*)", line), line
        assert "?" not in line, line


# -- one request per thread under `serve` --------------------------------------------------

def test_thread_local_requests_keeps_each_threads_request_apart() -> None:
    """Chalice keeps current_request on the app; `serve` answers connections in threads."""
    demo = thread_local_requests(ShapedErrorsChalice(app_name="thread-local-demo", configure_logs=False))
    assert isinstance(demo, LocalChalice) and isinstance(demo, ShapedErrorsChalice)
    assert thread_local_requests(demo).__class__ is demo.__class__  # idempotent
    seen: dict[str, Any] = {}
    set_here, set_there = threading.Event(), threading.Event()

    def other_thread() -> None:
        demo.current_request = "there"
        set_there.set()
        set_here.wait(5)
        seen["there"] = demo.current_request

    worker = threading.Thread(target=other_thread)
    worker.start()
    set_there.wait(5)
    demo.current_request = "here"
    set_here.set()
    worker.join(5)
    assert (demo.current_request, seen["there"]) == ("here", "there")


def test_serve_concurrent_tenants_get_their_own_answers(server: ApiServer, app_env: Any) -> None:
    """Keep-alive clients of two tenants at once: every answer is for the asking tenant
    (with one shared current_request, about 1 in 6000 answered the other tenant's query)."""
    wrong: list[tuple[int, int, bytes]] = []

    def client(tenant: int) -> None:
        conn = KeepAlive(server.port, app_env.headers(tenant=tenant, role="admin"))
        try:
            for _ in range(1000):
                status, _, body = conn.request("GET", f"/api/departments?clientId={tenant}")
                if status != 200 or json.loads(body)["clientId"] != tenant:
                    wrong.append((tenant, status, body[:100]))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(tenant,)) for tenant in (1, 2, 1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert wrong == []
