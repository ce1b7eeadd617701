"""A deadline for reading one HTTP request from a client socket.

`serve` gives a client a fixed time (`DEFAULT_CLIENT_TIMEOUT_S`, `serve --client-timeout`)
to send a whole request: request line, headers and body. A socket timeout alone bounds
each read, so a client sending one byte just before every timeout would hold its thread
forever; here every read waits at most for what is left of the request's time, and
`ClientTimeout` is raised once it is spent.
"""
from __future__ import annotations

import io
import socket
import time
from typing import Optional

DEFAULT_CLIENT_TIMEOUT_S = 30.0


class ClientTimeout(Exception):
    """The client did not send its whole request within the deadline."""


class DeadlineReader(io.RawIOBase):
    """The socket's input, each read bounded by the current request's deadline. Between
    reads (and for writes) the socket's timeout is `timeout_s`."""

    def __init__(self, sock: socket.socket, timeout_s: float) -> None:
        super().__init__()
        self.sock = sock
        self.timeout_s = timeout_s
        self.deadline: Optional[float] = None
        sock.settimeout(timeout_s)

    def start_request(self) -> None:
        """Start the clock of the next request: it must arrive within `timeout_s`."""
        self.deadline = time.monotonic() + self.timeout_s

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        """Receive into `buffer`; ClientTimeout once the request's time is spent."""
        remaining = self.timeout_s if self.deadline is None else self.deadline - time.monotonic()
        if remaining <= 0:
            raise ClientTimeout()
        self.sock.settimeout(remaining)
        try:
            return self.sock.recv_into(buffer)
        except TimeoutError:
            raise ClientTimeout() from None
        finally:
            self.sock.settimeout(self.timeout_s)


def buffered_reader(sock: socket.socket, timeout_s: float) -> tuple[DeadlineReader, io.BufferedReader]:
    """The deadline reader of `sock` and the buffered file http.server reads requests from."""
    raw = DeadlineReader(sock, timeout_s)
    return raw, io.BufferedReader(raw)
