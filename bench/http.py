"""HTTP: `python -m chalicelib.cli serve --no-schedules` as a subprocess; keep-alive
http.client connections (a few threads) on an L1-hit route: p50, p99, requests/s."""
from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from bench import common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(database: str, namespace: str, threads: int, duration_s: float) -> dict[str, Any]:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": common.database_url(database), "REDIS_URL": common.REDIS_URL,
           "AUTH_SECRET": common.AUTH_SECRET, "CACHE_NAMESPACE": namespace, "METRICS_FLUSH_INTERVAL": "3600"}
    # The server logs every request to stderr: into a file, never an unread pipe (it would fill and block).
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "chalicelib.cli", "serve", "--port", str(port), "--no-schedules"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
    path = "/api/departments?clientId=1"
    headers = {"Authorization": f"Bearer {common.token(1, 'admin')}", "Accept": "application/json"}
    try:
        from chalicelib.local_server import wait_until_answering

        if not wait_until_answering(port, path, headers, timeout_s=60, alive=lambda: proc.poll() is None):
            log.seek(0)
            raise RuntimeError(f"serve did not come up: {log.read().decode(errors='replace')[-2000:]}")
        common.say(f"serve up on port {port} (pid {proc.pid}); {threads} keep-alive clients for {duration_s:.0f}s")
        lat: list[list[float]] = [[] for _ in range(threads)]
        sources: list[dict[str, int]] = [{} for _ in range(threads)]
        errors = [0] * threads
        start = threading.Event()
        stop_at = [0.0]

        def client(i: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            for _ in range(50):  # warm: connection, L1
                conn.request("GET", path, headers=headers)
                conn.getresponse().read()
            start.wait()
            perf = time.perf_counter
            mine = lat[i]
            while perf() < stop_at[0]:
                t = perf()
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                resp.read()
                mine.append(perf() - t)
                if resp.status != 200:
                    errors[i] += 1
                src = resp.getheader("X-Cache") or "?"
                sources[i][src] = sources[i].get(src, 0) + 1
            conn.close()

        workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
        for w in workers:
            w.start()
        time.sleep(0.5)
        began = time.perf_counter()
        stop_at[0] = began + duration_s
        start.set()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - began
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    all_lat = [x for part in lat for x in part]
    merged: dict[str, int] = {}
    for part in sources:
        for k, v in part.items():
            merged[k] = merged.get(k, 0) + v
    out = {"threads": threads, "duration_s": elapsed, **common.summary(all_lat), "rps": len(all_lat) / elapsed,
           "sources": merged, "errors": sum(errors)}
    common.say(f"HTTP keep-alive L1 hit: p50 {out['p50_us']:.0f} us, p99 {out['p99_us']:.0f} us,"
               f" {out['rps']:.0f} req/s, X-Cache {merged}")
    return out
