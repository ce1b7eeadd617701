"""Test helpers for the HTTP layer: raw requests over sockets (malformed requests cannot be
sent with an HTTP client), parsing the raw reply, and checking the API's error shape."""
from __future__ import annotations

import json
import re
import socket
from typing import Optional

SNAKE_CASE = re.compile(r"^[a-z]+(_[a-z]+)*$")


def assert_error_shape(status: int, headers: dict[str, str], body: bytes, code: str,
                       echoed: tuple[str, ...] = ()) -> None:
    """`body` is one JSON error document with `code`, sent as application/json, and none
    of the `echoed` request fragments appears in it."""
    assert headers.get("content-type", "").startswith("application/json"), (status, headers)
    document = json.loads(body)
    assert set(document) == {"error"}, document
    assert set(document["error"]) <= {"code", "message", "details"}, document
    assert document["error"]["code"] == code, (status, document)
    assert SNAKE_CASE.match(code) and document["error"]["message"]
    for fragment in echoed:
        assert fragment.encode() not in body, (fragment, body)
        assert all(fragment not in value for value in headers.values()), (fragment, headers)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or resets it)."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def parse_reply(reply: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased headers, body) of one HTTP/1.x answer."""
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    match = re.match(r"HTTP/1\.[01] (\d{3}) ", lines[0])
    assert match, reply[:300]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(match.group(1)), headers, body


def raw_exchange(port: int, data: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read until the server closes; (status, lower-cased headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        return parse_reply(read_until_closed(sock))


def request_bytes(method: str, target: str, headers: Optional[dict[str, str]] = None,
                  close: bool = True) -> bytes:
    """A request's line and headers; its connection closes after the answer unless `close`
    is False."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"] + (["Connection: close"] if close else [])
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
