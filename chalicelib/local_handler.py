"""The request handler of `serve`: Chalice's local handler, keep-alive safe, with every
answer of its own in the API's error shape and an access log without query strings.

- Nagle off and a buffered writer: status line, headers and body leave in one send (with
  Nagle on, a keep-alive client's delayed ACK costs ~40 ms per request).
- Errors http.server answers itself (`send_error`: malformed request line 400, request line
  over 64 KiB 414, a header line over 64 KiB or over 100 headers 431, HTTP/2+ 505) and those of the local gateway (no
  route for the path: 404, where Chalice's LocalGateway answers 403 and repeats the
  Authorization header) are JSON `{"error": {"code", "message"}}` with a fixed message.
- HEAD: the status and headers of the answer, no body (no route answers HEAD: a known path
  answers 405 with Allow, an unknown one 404). Any other method without a handler in
  http.server (TRACE, PROPFIND, ...) goes to the app too: 405 with Allow, or 404.
- Hardening: a body over 64 KiB (256 KiB for the bulk patient import), declared by
  Content-Length, answers 413 unread; a request
  line, headers and body not all in within the client timeout (30 s) answer 408; any
  Transfer-Encoding answers 501 (400 beside a Content-Length); a request line without an
  HTTP version answers 400, never a bare HTTP/0.9 body. Each of these closes the connection.
- Access log (stderr): `METHOD /path STATUS 1.2ms`, one line per answer; never the query
  string (patient searches carry names and record numbers), the client address or a header.
"""
from __future__ import annotations

import socket
import sys
import time
from email.message import Message
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, BinaryIO, Dict, Optional, Tuple, Union

from chalice.app import Chalice
from chalice.config import Config
from chalice.local import ChaliceRequestHandler, LocalGateway, LocalGatewayException

from chalicelib.http_errors import error_bytes
from chalicelib.request_deadline import DEFAULT_CLIENT_TIMEOUT_S, ClientTimeout, DeadlineReader, buffered_reader

# The largest body read (the routes take JSON of at most 16 KiB): a larger Content-Length
# answers 413 before any of the body is read, whoever sends it. Only the bulk patient import
# takes more (1,000 patients, about 80 KiB of JSON), up to BULK_BODY_BYTES.
MAX_BODY_BYTES = 64 * 1024
BULK_BODY_BYTES = 256 * 1024
BULK_PATH = "/api/admin/patients/bulk"

_MAX_LOGGED_METHOD = 16
_MAX_LOGGED_PATH = 256
_CONTROL_CHARS = str.maketrans({c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))})
_NO_BODY_STATUSES = frozenset({204, 205, 304})
# After an error that ends the connection, unread input (the rest of an over-long line,
# headers, a refused body) is read and dropped, up to this much for at most this long, so
# that closing does not reset the connection before the client has read the answer.
_LINGER_BYTES = 64 * 1024
_LINGER_SECONDS = 1.0


class HttpLayerError(LocalGatewayException):
    """An answer of the local server itself (no route for the path, a bad Content-Length):
    the status and its body in the error shape."""

    def __init__(self, status: int) -> None:
        super().__init__(headers={"Content-Type": "application/json"}, body=error_bytes(status))
        self.CODE = status


class ShapedLocalGateway(LocalGateway):
    """Chalice's LocalGateway, answering a path no route matches with 404 not_found (its
    own answer is API Gateway's 403 "Missing Authentication Token", or one that repeats the
    Authorization header)."""

    def _generate_lambda_event(self, method: str, path: str, headers: Dict[str, Any],
                               body: Optional[bytes]) -> Dict[str, Any]:
        try:
            return super()._generate_lambda_event(method, path, headers, body)
        except ValueError:  # RouteMatcher: "No matching route found for: <path>"
            raise HttpLayerError(404) from None


def _drain_and_half_close(sock: socket.socket) -> None:
    """Send FIN, then read and drop what the client still sends (bounded in bytes and time)
    until it closes too: closing with unread input would answer the client with a reset,
    which can discard the error answer before the client has read it."""
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + _LINGER_SECONDS
        dropped = 0
        while dropped < _LINGER_BYTES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            sock.settimeout(remaining)
            chunk = sock.recv(65536)
            if not chunk:
                return
            dropped += len(chunk)
    except OSError:  # the client has gone already, or the timeout passed
        return


def _body_length(headers: Message, limit: int) -> int:
    """The body length the headers announce (0: none). Transfer-Encoding of any kind is
    refused, so that no body is ever framed in a way this server does not read (a chunked
    body left unread would be parsed as the next request): 501, or 400 beside a
    Content-Length (RFC 9112, 6.3). Content-Length: 400 when it is not a number or is
    repeated with other values, 413 when it is over `limit`."""
    lengths = headers.get_all("content-length") or []
    if "transfer-encoding" in headers:
        raise HttpLayerError(400 if lengths else 501)
    if not lengths:
        return 0
    if len(set(lengths)) > 1:
        raise HttpLayerError(400)
    return _content_length(lengths[0], limit)


def _content_length(value: str, limit: int) -> int:
    """The body length a Content-Length header announces; 400 when it is not a number, 413
    when it is over `limit`."""
    value = value.strip()
    if not (value.isascii() and value.isdigit()):
        raise HttpLayerError(400)
    length = int(value)
    if length > limit:
        raise HttpLayerError(413)
    return length


def _is_method_token(method: str) -> bool:
    """A plausible HTTP method name (letters only, short), as opposed to garbage."""
    return 0 < len(method) <= _MAX_LOGGED_METHOD and method.isascii() and method.isalpha()


class KeepAliveRequestHandler(ChaliceRequestHandler):
    """Chalice's handler with TCP_NODELAY, a buffered writer, JSON errors and a query-free
    access log (see the module docstring)."""

    disable_nagle_algorithm = True
    wbufsize = 1 << 16
    error_content_type = "application/json"
    _linger = False  # set by answer_error: drain the input before the connection closes
    deadline: DeadlineReader
    rfile: BinaryIO

    def __init__(self, request: Any, client_address: Tuple[str, int], server: HTTPServer,
                 app_object: Chalice, config: Config) -> None:
        # As ChaliceRequestHandler.__init__, with the shaped gateway: the base __init__
        # serves the whole connection, so the gateway must exist before it runs.
        self.local_gateway = ShapedLocalGateway(app_object, config)
        BaseHTTPRequestHandler.__init__(self, request, client_address, server)

    # -- requests -----------------------------------------------------------------------

    def setup(self) -> None:
        """http.server's set-up, reading requests through a per-request deadline (the
        server's `client_timeout_s`, which also bounds each write)."""
        super().setup()
        self.rfile.close()  # the socket file http.server opened: releases its reference
        timeout_s = getattr(self.server, "client_timeout_s", DEFAULT_CLIENT_TIMEOUT_S)
        self.deadline, self.rfile = buffered_reader(self.connection, timeout_s)

    def handle(self) -> None:
        """Serve the connection's requests; a request refused before it reached the gateway
        (a bad Content-Length, a Transfer-Encoding, one not all in before the deadline) is
        answered in the error shape and ends the connection."""
        try:
            super().handle()
        except HttpLayerError as exc:
            self.answer_error(exc.CODE)
        except ClientTimeout:
            self.answer_error(408)

    def handle_one_request(self) -> None:
        """One request, which must arrive whole within the client timeout."""
        self.command = None  # nothing of the previous request describes this one yet
        self.request_version = self.default_request_version
        self.deadline.start_request()
        super().handle_one_request()

    def parse_request(self) -> bool:
        """http.server's parsing, starting the clock of the access log's duration; a request
        line without an HTTP version (HTTP/0.9, whose answer is a bare body) answers 400."""
        self._started = time.perf_counter()
        if len(self.raw_requestline.split()) == 2:  # METHOD TARGET, no version: HTTP/0.9
            self.send_error(400)
            return False
        return super().parse_request()

    def _parse_payload(self) -> Tuple[Dict[str, Any], Optional[bytes]]:
        """The request's headers and body (as Chalice's, with the framing checked)."""
        limit = (BULK_BODY_BYTES if self.command == "POST" and self.path.split("?", 1)[0] == BULK_PATH
                 else MAX_BODY_BYTES)
        length = _body_length(self.headers, limit)
        body = self.rfile.read(length) if length > 0 else None
        return dict(self.headers), body

    def do_HEAD(self) -> None:
        """HEAD: the answer's status and headers without its body."""
        self._send_http_response = self._send_head_response  # type: ignore[method-assign]  # this request only
        try:
            self._generic_handle()
        finally:
            del self._send_http_response

    def _send_head_response(self, code: int, headers: Dict[str, Any], body: Optional[Union[str, bytes]]) -> None:
        ChaliceRequestHandler._send_http_response(self, code, headers, None)

    # -- http.server's own errors ---------------------------------------------------------

    def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None) -> None:
        """http.server's error answer as JSON in the error shape, then close the connection.
        `message` and `explain` are ignored: http.server puts the request line or the method
        in them, and nothing of the request is repeated back (or written to the log).

        A method http.server has no handler for (TRACE, PUT, PROPFIND, ...) is passed to the
        app like any other, so a known path answers 405 with Allow, an unknown one 404, as
        API.md says, rather than http.server's 501."""
        status = int(code)
        if status == 501 and _is_method_token(getattr(self, "command", None) or "") and not self._linger:
            self._generic_handle()
            return
        self.answer_error(status)

    def answer_error(self, status: int) -> None:
        """Answer `status` in the error shape with Connection: close, as HTTP/1.x."""
        if self.request_version == "HTTP/0.9":
            # A request line http.server could not read leaves the default, HTTP/0.9, which
            # would send the body alone: answer with a status line and headers instead.
            self.request_version = "HTTP/1.0"
        self.send_response(status)
        self.send_header("Connection", "close")
        body = b"" if status < 200 or status in _NO_BODY_STATUSES else error_bytes(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
        self.wfile.flush()
        self._linger = True

    def finish(self) -> None:
        """Flush the answer; after an error answer, close gracefully (see _LINGER_BYTES)."""
        super().finish()
        if self._linger:
            _drain_and_half_close(self.connection)

    # -- the access log -------------------------------------------------------------------

    def log_request(self, code: Union[int, str] = "-", size: Union[int, str] = "-") -> None:
        """One line per answer: method, path without its query string, status, duration."""
        started = self.__dict__.pop("_started", None)
        took = "-" if started is None else f"{(time.perf_counter() - started) * 1000:.1f}ms"
        self._write_log(f"{int(code) if isinstance(code, int) else code} {took}")

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        """http.server's error notes, without their arguments (they quote the request line).
        send_error above logs through log_request; this is left for "Request timed out"."""
        self._write_log("error: " + format.split("%", 1)[0].rstrip(" :("))

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        """Any other note of http.server, without its arguments."""
        self._write_log(format.split("%", 1)[0].rstrip(" :("))

    def _write_log(self, tail: str) -> None:
        command = getattr(self, "command", None)
        if command:
            method = command[:_MAX_LOGGED_METHOD]
            path = self.path.split("?", 1)[0].split("#", 1)[0][:_MAX_LOGGED_PATH]
        else:  # the request line was not understood: neither is known (self.path may be stale)
            method, path = "-", "-"
        line = f"{method} {path} {tail}"
        if not line.isprintable():  # control characters are written escaped, as http.server does
            line = line.translate(_CONTROL_CHARS)
        sys.stderr.write(line + "\n")
