"""Test helpers (ports and binaries: support/): a private redis-server, API server processes, a TCP proxy,
keep-alive HTTP, and picking free future slots from the seeded database.

Every process started here is owned by the caller and stopped by its own pid.
"""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Iterator, Optional

from support.ports import free_port, wait_until_answering

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wait_for(condition: Callable[[], Any], timeout: float, what: str,
             detail: Callable[[], str] = lambda: "") -> Any:
    """Poll `condition` every 0.1 s until it returns something true, and return that; fail
    naming `what` (and `detail()`, e.g. a server's log) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} ({timeout}s) {detail()}")


class ApiServer:
    """`python -m chalicelib.cli serve --no-schedules [serve_args]` (with its scheduler when
    `schedules`) on a free port, in its own session."""

    def __init__(self, env: dict[str, str], port: Optional[int] = None, schedules: bool = False,
                 serve_args: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.schedules = schedules
        self.serve_args = serve_args
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = os.path.join("/tmp", f"hb-test-server-{os.getpid()}-{self.port}.log")

    def start(self) -> "ApiServer":
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chalicelib.cli", "serve", "--port", str(self.port),
             *([] if self.schedules else ["--no-schedules"]), *self.serve_args],
            cwd=PROJECT_DIR, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        running = lambda: self.proc is not None and self.proc.poll() is None  # noqa: E731
        if not wait_until_answering(self.port, timeout_s=timeout, alive=running):
            if not running():
                raise RuntimeError(f"server on {self.port} exited: {self.log_tail()}")
            raise TimeoutError(f"server on {self.port} not healthy: {self.log_tail()}")

    def log_tail(self) -> str:
        return self.log_text()[-3000:]

    def log_text(self) -> str:
        """Everything the server has written to stdout and stderr so far."""
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: only its processes
                self.proc.wait(timeout=5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        if getattr(self, "_log", None) is not None:
            self._log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log_path)


@contextlib.contextmanager
def running_servers(env: dict[str, str], count: int) -> Iterator[list[ApiServer]]:
    """`count` API server processes on `env`, healthy; all stopped afterwards."""
    started: list[ApiServer] = []
    try:
        for _ in range(count):
            started.append(ApiServer(env).start())
        for server in started:
            server.wait_healthy()
        yield started
    finally:
        for server in started:
            server.stop()


@contextlib.contextmanager
def busy_loops(count: int) -> Iterator[None]:
    """`count` CPU-bound processes (a Python busy loop each) while the block runs; killed by pid after."""
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait(timeout=5)


def database_proxy_env(env: dict[str, str]) -> tuple["TcpProxy", dict[str, str]]:
    """A TcpProxy in front of `env`'s PostgreSQL (TCP or Unix socket) and `env` with its
    DATABASE_URL pointing through the proxy: cutting the proxy makes the database unreachable."""
    from dataclasses import replace

    from chalicelib.settings import load_settings

    db = load_settings(env).db
    proxy = TcpProxy(db.host, db.port)
    return proxy, {**env, "DATABASE_URL": replace(db, host="127.0.0.1", port=proxy.port).url}


class KeepAlive:
    """One keep-alive HTTP/1.1 connection to a server; reconnects if the server closed it."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port = port
        self.headers = headers
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def request(self, method: str, path: str, body: Any = None,
                extra: Optional[dict[str, str]] = None) -> tuple[int, dict[str, str], bytes]:
        headers = {**self.headers, **(extra or {})}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=payload, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def warm(self, path: str) -> str:
        """GET `path` until L1 answers (at most 4 reads); returns the last X-Cache."""
        source = ""
        for _ in range(4):
            status, headers, _ = self.request("GET", path)
            assert status == 200
            source = headers["x-cache"]
            if source == "L1":
                break
        return source

    def get_json(self, path: str) -> tuple[int, dict[str, str], Any]:
        status, headers, data = self.request("GET", path)
        return status, headers, json.loads(data) if data else None

    def close(self) -> None:
        self.conn.close()


class TcpProxy:
    """Forwards 127.0.0.1:port -> target in threads; `cut()` closes the listener and every
    forwarded connection at once (the database becomes unreachable); `stall()` stops
    forwarding and closes nothing (a silent partition: connections still open, bytes never
    arrive) until `resume()`; `delay_s` holds every forwarded chunk that long. A target
    host that is a directory is PostgreSQL's Unix socket directory (`<dir>/.s.PGSQL.<port>`)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._cut = False
        self._flowing = threading.Event()
        self._flowing.set()
        self.delay_s = 0.0
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._cut:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = self._connect_upstream()
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._cut:
                    client.close()
                    upstream.close()
                    return
                self._sockets.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _connect_upstream(self) -> socket.socket:
        host, port = self.target
        if host.startswith("/"):
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(f"{host.rstrip('/')}/.s.PGSQL.{port}")
        else:
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
        return upstream

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self._flowing.wait()
                if self.delay_s:
                    time.sleep(self.delay_s)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def stall(self) -> None:
        """Stop forwarding without closing anything (new connections are accepted too)."""
        self._flowing.clear()

    def resume(self) -> None:
        """Forward again, the held bytes first."""
        self._flowing.set()

    def cut(self) -> None:
        """Stop accepting and reset every forwarded connection."""
        with self._lock:
            self._cut = True
            sockets, self._sockets = list(self._sockets), set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()
        self._flowing.set()  # held chunks now meet closed sockets and their threads end
        self._thread.join(timeout=5)


def free_future_slots(app_env: Any, tenant: int = 1, limit: int = 50, min_per_group: int = 1,
                      exclude_days: tuple = ()) -> list[tuple[int, int, str]]:
    """(slotId, doctorId, day) of free slots starting at least 3 hours from now, grouped so
    each (doctor, day) with at least `min_per_group` free slots comes together."""
    rows = app_env.sql(
        """SELECT s.id, s.doctor_id, s.day::text, count(*) OVER (PARTITION BY s.doctor_id, s.day)
           FROM slot s
           WHERE s.tenant_id = :t AND s.starts_at > now() + interval '3 hours'
             AND NOT EXISTS (SELECT 1 FROM appointment a WHERE a.tenant_id = s.tenant_id
                             AND a.slot_id = s.id AND a.status <> 'cancelled')
           ORDER BY s.day, s.doctor_id, s.starts_at""", t=tenant)
    out = [(int(r[0]), int(r[1]), r[2]) for r in rows if r[3] >= min_per_group and r[2] not in exclude_days]
    return out[:limit]


@contextlib.contextmanager
def patched_environ(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables and reset the app's settings/cache/connection; undo after."""
    from chalicelib import runtime

    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    runtime.reset()
    try:
        yield
    finally:
        runtime.reset()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        runtime.reset()


def _fetch_in_fresh_process(path: str, token: str) -> None:
    """`python -m tests.helpers_servers fetch PATH TOKEN`: one GET through a brand-new app
    container (the in-process Chalice client), printed as JSON: status, headers, body."""
    from chalice.test import Client

    import app as app_module

    with Client(app_module.app, stage_name="dev", project_dir=PROJECT_DIR) as client:
        resp = client.http.get(path, headers={"Authorization": f"Bearer {token}"})
    print(json.dumps({"status": resp.status_code, "headers": dict(resp.headers),
                      "body": resp.body.decode() if isinstance(resp.body, bytes) else resp.body}))


def fetch_in_fresh_process(path: str, token: str, env: dict[str, str]) -> dict[str, Any]:
    """Run `_fetch_in_fresh_process` in a new Python process with `env`."""
    done = subprocess.run([sys.executable, "-m", "tests.helpers_servers", "fetch", path, token],
                          cwd=PROJECT_DIR, env={**env, "PYTHONUNBUFFERED": "1"}, capture_output=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "fetch":
        _fetch_in_fresh_process(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit("usage: python -m tests.helpers_servers fetch PATH TOKEN")
