"""Throw-away redis-server processes (no persistence) on loopback ports: start, kill, restart."""
from __future__ import annotations

import signal
import subprocess
from typing import Any, Optional

from support.ports import free_port, wait_for_port
from support.redis_binaries import redis_server_path


class PrivateRedis:
    """A redis-server of its own on `port` (a free one by default), owned by the caller and
    stopped by its own pid."""

    def __init__(self, port: Optional[int] = None) -> None:
        self.port = port or free_port()
        self.proc: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def extra_args(self) -> list[str]:
        """Options beyond the common ones (a cluster node adds its own)."""
        return []

    def start(self) -> Any:
        """Start the server and wait until it accepts connections; returns self."""
        assert self.proc is None or self.proc.poll() is not None
        self.proc = subprocess.Popen(
            [redis_server_path(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning",
             *self.extra_args()],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash would; waits until the process is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=5)

    def client(self):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)
