"""Free loopback ports, and waiting until a server listens or answers."""
from __future__ import annotations

import http.client
import socket
import time
from typing import Callable, Mapping, Optional


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0, pause_s: float = 0.02) -> None:
    """Try to connect every `pause_s` (0: in a tight loop) until the port accepts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(pause_s)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def wait_until_answering(port: int, path: str = "/api/health", headers: Optional[Mapping[str, str]] = None,
                         timeout_s: float = 30.0, alive: Callable[[], bool] = lambda: True) -> bool:
    """Poll http://127.0.0.1:<port><path> until it answers 200 (True); False once `alive()`
    says the server process is gone or `timeout_s` has passed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive():
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path, headers=dict(headers or {}))
            resp = conn.getresponse()
            resp.read()
            conn.close()
            if resp.status == 200:
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False
