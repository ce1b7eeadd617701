"""`serve` against the findings of the security audit, over raw sockets to a real process
started with a short client timeout (`serve --client-timeout 2`):

- a declared body over 64 KiB (256 KiB for the bulk import) answers 413 before any of it is read, and the connection
  closes (ten 10 MB bodies: no memory kept, the rest of each body refused by the socket);
- a request not whole within the client timeout answers 408 and the connection closes,
  even while the client keeps trickling bytes; each request of a keep-alive connection
  gets the whole timeout;
- any Transfer-Encoding answers 501 (400 beside a Content-Length) and closes, so a chunked
  body is never parsed as a second request;
- a request line without an HTTP version gets an HTTP/1.x 400, never a bare body;
- a connection the client resets is one INFO log line, without its address or a traceback.
"""
from __future__ import annotations

import http.client
import inspect
import json
import select
import socket
import struct
import time
from typing import Any, Iterator

import pytest

from chalicelib.cli import build_parser
from chalicelib.local_handler import BULK_BODY_BYTES, BULK_PATH, MAX_BODY_BYTES
from chalicelib.local_server import BacklogHTTPServer, serve
from tests.helpers_http import assert_error_shape, parse_reply, raw_exchange, read_until_closed, request_bytes
from tests.helpers_servers import ApiServer

CLIENT_TIMEOUT_S = 2.0
DECLARED_BODY = 10_000_000  # under the old 10 MiB limit: the old server read such bodies whole


@pytest.fixture(scope="module")
def server(app_env: Any) -> Iterator[ApiServer]:
    """`serve --client-timeout 2` on the test database."""
    started = ApiServer(app_env.env, serve_args=("--client-timeout", str(CLIENT_TIMEOUT_S))).start()
    try:
        started.wait_healthy()
        yield started
    finally:
        started.stop()


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def log_text(server: ApiServer) -> str:
    with open(server.log_path, "rb") as log:
        return log.read().decode(errors="replace")


def resident_bytes(pid: int) -> int:
    """The process's resident memory (VmRSS)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def send_until_refused(sock: socket.socket, total: int) -> int:
    """Send up to `total` bytes in 64 KiB pieces; the bytes the socket accepted before the
    server refused the rest (a reset or broken pipe). Fails if it took them all."""
    piece = b"x" * 65536
    sent = 0
    try:
        while sent < total:
            sent += sock.send(piece)
    except (ConnectionResetError, BrokenPipeError):
        return sent
    raise AssertionError(f"the server accepted all {total} bytes of a refused body")


# -- 1. bodies over 64 KiB ---------------------------------------------------------------------

def test_ten_10mb_bodies_are_refused_unread(server: ApiServer) -> None:
    """Unauthenticated 10 MB bodies: 413 as soon as the headers are in, the connection
    closed, at most a small part of each body taken by the socket, no memory kept (the old
    server read each body whole before the token check: +102 MB for ten)."""
    assert server.proc is not None
    before = resident_bytes(server.proc.pid)
    head = request_bytes("POST", "/api/appointments", {"Content-Type": "application/json",
                                                      "Content-Length": str(DECLARED_BODY)}, close=False)
    for _ in range(10):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)  # no multi-MB send buffer
            sock.settimeout(10)
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(head)
            status, headers, body = parse_reply(read_until_closed(sock))  # the server closed
            assert (status, headers["connection"]) == (413, "close")
            assert_error_shape(status, headers, body, "payload_too_large")
            assert send_until_refused(sock, DECLARED_BODY) < 2 * 1024 * 1024
    assert resident_bytes(server.proc.pid) - before < 8 * 1024 * 1024


@pytest.mark.parametrize(("path", "length", "status", "code"), [
    ("/api/appointments", MAX_BODY_BYTES, 401, "unauthorized"),
    ("/api/appointments", MAX_BODY_BYTES + 1, 413, "payload_too_large"),
    (BULK_PATH, BULK_BODY_BYTES, 401, "unauthorized"),
    (BULK_PATH, BULK_BODY_BYTES + 1, 413, "payload_too_large"),
])
def test_body_limit_is_64_kib_and_256_kib_for_the_bulk_import(server: ApiServer, path: str, length: int,
                                                              status: int, code: str) -> None:
    """A body of exactly the limit is read and reaches the route (which wants a token
    first); one byte more is refused by the server. Only the bulk import takes 256 KiB."""
    assert MAX_BODY_BYTES == 64 * 1024
    head = request_bytes("POST", path, {"Content-Type": "application/json", "Content-Length": str(length)})
    got, headers, body = raw_exchange(server.port, head + b" " * length)
    assert got == status
    assert_error_shape(got, headers, body, code)


# -- 2. slow clients ----------------------------------------------------------------------------

def await_answer_while_trickling(sock: socket.socket, trickle: bytes, limit_s: float) -> tuple[bytes, float]:
    """Send `trickle` one byte every 0.25 s until the server answers; (the answer up to the
    server's close, seconds until it began)."""
    started = time.monotonic()
    for byte in trickle:
        readable, _, _ = select.select([sock], [], [], 0.25)
        if readable:
            break
        assert time.monotonic() - started < limit_s, "no answer while the client trickles"
        sock.send(bytes([byte]))
    took = time.monotonic() - started
    return read_until_closed(sock), took


def test_idle_connection_gets_408_then_closes(server: ApiServer) -> None:
    with connect(server.port) as sock:
        started = time.monotonic()
        reply = read_until_closed(sock)
        took = time.monotonic() - started
    status, headers, body = parse_reply(reply)
    assert (status, headers["connection"]) == (408, "close")
    assert_error_shape(status, headers, body, "request_timeout")
    assert CLIENT_TIMEOUT_S - 0.2 <= took < CLIENT_TIMEOUT_S + 5, took


@pytest.mark.parametrize("prefix", [
    b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",  # headers that never end
    b"POST /api/appointments HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 400\r\n\r\n{",  # a body
    b"GET /api/heal",  # a request line
])
def test_trickling_client_gets_408_within_the_timeout(server: ApiServer, prefix: bytes) -> None:
    """A byte every 0.25 s never lets a read wait long, yet the request must be whole
    within the timeout (the old server waited for as long as bytes came)."""
    with connect(server.port) as sock:
        sock.sendall(prefix)
        reply, took = await_answer_while_trickling(sock, b"a" * 200, limit_s=CLIENT_TIMEOUT_S + 8)
    status, headers, body = parse_reply(reply)
    assert status == 408
    assert_error_shape(status, headers, body, "request_timeout")
    assert took < CLIENT_TIMEOUT_S + 5, took


def test_each_keep_alive_request_gets_the_whole_timeout(server: ApiServer) -> None:
    """The timeout counts per request: a keep-alive connection used for longer than it, a
    request every 0.5 s, is answered throughout."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        started = time.monotonic()
        answered = 0
        while time.monotonic() - started < CLIENT_TIMEOUT_S * 2:
            conn.request("GET", "/api/health")
            response = conn.getresponse()
            assert (response.status, json.loads(response.read())["db"]) == (200, "ok")
            answered += 1
            time.sleep(0.5)
        assert conn.sock is not None  # one connection throughout: never closed by the server
        assert answered >= 4
    finally:
        conn.close()


def test_the_client_timeout_defaults_to_30_seconds() -> None:
    parser = build_parser()
    assert parser.parse_args(["serve"]).client_timeout == 30.0
    assert parser.parse_args(["serve", "--client-timeout", "2.5"]).client_timeout == 2.5
    assert inspect.signature(serve).parameters["client_timeout_s"].default == 30.0
    assert inspect.signature(BacklogHTTPServer.__init__).parameters["client_timeout_s"].default == 30.0
    serve_help = parser._subparsers._group_actions[0].choices["serve"].format_help()  # type: ignore[union-attr]
    assert "--client-timeout S" in serve_help and "408" in serve_help
    for bad in ("0", "-1", "soon", "inf"):
        with pytest.raises(SystemExit):
            parser.parse_args(["serve", "--client-timeout", bad])


# -- 3. Transfer-Encoding ---------------------------------------------------------------------

SMUGGLED = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.mark.parametrize(("method", "framing", "status", "code"), [
    ("POST", {"Transfer-Encoding": "chunked"}, 501, "not_implemented"),
    ("POST", {"Transfer-Encoding": "chunked", "Content-Length": "5"}, 400, "bad_request"),
    ("GET", {"Transfer-Encoding": "identity"}, 501, "not_implemented"),
    ("POST", {"Transfer-Encoding": "gzip, chunked"}, 501, "not_implemented"),
    ("PROPFIND", {"Transfer-Encoding": "chunked"}, 501, "not_implemented"),
])
def test_transfer_encoding_is_refused_and_its_body_never_runs(server: ApiServer, method: str,
                                                             framing: dict[str, str], status: int,
                                                             code: str) -> None:
    """A keep-alive request whose chunked body holds a second request: one answer, the
    refusal, then the connection closes (the old server answered the first request as if
    it had no body, then parsed the chunks as more requests)."""
    chunked = f"{len(SMUGGLED):x}\r\n".encode() + SMUGGLED + b"\r\n0\r\n\r\n"
    head = request_bytes(method, "/api/appointments", {"Content-Type": "application/json", **framing}, close=False)
    with connect(server.port) as sock:
        sock.sendall(head + chunked + SMUGGLED)
        reply = read_until_closed(sock)
    assert reply.count(b"HTTP/1.") == 1, reply
    got, headers, body = parse_reply(reply)
    assert (got, headers["connection"]) == (status, "close")
    assert_error_shape(got, headers, body, code)


def test_differing_content_lengths_are_refused(server: ApiServer) -> None:
    head = request_bytes("POST", "/api/appointments", {"Content-Length": "2"}, close=False)
    status, headers, body = raw_exchange(server.port, head.replace(b"\r\n\r\n", b"\r\nContent-Length: 40\r\n\r\n")
                                         + b"{}")
    assert status == 400
    assert_error_shape(status, headers, body, "bad_request")


# -- 4. HTTP/0.9 ------------------------------------------------------------------------------

@pytest.mark.parametrize("line", [b"GET /api/health\r\n", b"GET /api/departments?clientId=1\r\n\r\n",
                                  b"GET /nope\r\n"])
def test_request_line_without_a_version_gets_an_http_1_answer(server: ApiServer, line: bytes) -> None:
    """The old server answered these as HTTP/0.9: the body alone, no status line."""
    with connect(server.port) as sock:
        sock.sendall(line)
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1."), reply[:200]
    status, headers, body = parse_reply(reply)
    assert (status, headers["connection"]) == (400, "close")
    assert_error_shape(status, headers, body, "bad_request")


# -- 5. connection resets ------------------------------------------------------------------

def test_a_reset_connection_is_one_info_line_without_the_address(server: ApiServer) -> None:
    """A client resets its connection mid-request: one INFO line, no traceback, not the
    client's address or port (the old server printed socketserver's traceback with both)."""
    with connect(server.port) as sock:
        client_port = sock.getsockname()[1]
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        time.sleep(0.3)  # the server is reading the rest of the headers
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
    deadline = time.monotonic() + 10
    while "ConnectionResetError" not in log_text(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    text = log_text(server)
    lines = [line for line in text.splitlines() if "ConnectionResetError" in line]
    assert len(lines) == 1, text
    record = json.loads(lines[0])
    assert record["level"] == "INFO" and record["error_type"] == "ConnectionResetError", record
    assert "Traceback" not in text and "Exception occurred" not in text, text
    assert str(client_port) not in text, text
