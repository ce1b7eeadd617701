"""HTTP: `python -m chalicelib.cli serve --no-schedules` as a subprocess; keep-alive
http.client connections (a few threads) on an L1-hit route: p50, p99, requests/s."""
from __future__ import annotations

import http.client
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from bench import common
from support.ports import free_port, wait_until_answering

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _keep_alive_rounds(targets: dict[str, tuple[int, str]], headers: dict[str, str], threads: int,
                       duration_s: float, rounds: int = 10) -> dict[str, dict[str, Any]]:
    """`threads` keep-alive clients per target; the targets take turns in `rounds` blocks so
    each sees the same machine load. Per target: latencies, X-Cache counts, errors, busy time."""
    out: dict[str, dict[str, Any]] = {name: {"lat": [], "sources": {}, "errors": 0, "busy_s": 0.0} for name in targets}
    block_s = duration_s / rounds
    for _ in range(rounds):
        for name, (port, path) in targets.items():
            stop_at = time.perf_counter() + block_s
            lock = threading.Lock()

            def client() -> None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                perf = time.perf_counter
                mine: list[float] = []
                sources: dict[str, int] = {}
                errors = 0
                while perf() < stop_at:
                    t = perf()
                    conn.request("GET", path, headers=headers)
                    resp = conn.getresponse()
                    resp.read()
                    mine.append(perf() - t)
                    errors += resp.status != 200
                    src = resp.getheader("X-Cache") or "?"
                    sources[src] = sources.get(src, 0) + 1
                conn.close()
                with lock:
                    res = out[name]
                    res["lat"].extend(mine)
                    res["errors"] += errors
                    for k, v in sources.items():
                        res["sources"][k] = res["sources"].get(k, 0) + v

            began = time.perf_counter()
            workers = [threading.Thread(target=client) for _ in range(threads)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            out[name]["busy_s"] += time.perf_counter() - began
    return out


def measure(database: str, namespace: str, threads: int, duration_s: float) -> dict[str, Any]:
    """`serve` on an L1-hit route against the HTTP floor (`bench.http_floor`, same body and
    headers), in alternating blocks."""
    port, floor_port = free_port(), free_port()
    env = {**os.environ, "DATABASE_URL": common.database_url(database), "REDIS_URL": common.REDIS_URL,
           "AUTH_SECRET": common.AUTH_SECRET, "CACHE_NAMESPACE": namespace, "METRICS_FLUSH_INTERVAL": "3600"}
    # The server logs every request to stderr: into a file, never an unread pipe (it would fill and block).
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "chalicelib.cli", "serve", "--port", str(port), "--no-schedules"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
    floor_proc = None
    path = "/api/departments?clientId=1"
    headers = {"Authorization": f"Bearer {common.token(1, 'admin')}", "Accept": "application/json"}
    try:
        if not wait_until_answering(port, path, headers, timeout_s=60, alive=lambda: proc.poll() is None):
            log.seek(0)
            raise RuntimeError(f"serve did not come up: {log.read().decode(errors='replace')[-2000:]}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        for _ in range(50):  # warm: connection, plan memo, L1
            conn.request("GET", path, headers=headers)
            body = conn.getresponse().read()
        conn.close()
        with tempfile.NamedTemporaryFile(delete=False) as f:
            f.write(body)
        floor_proc = subprocess.Popen([sys.executable, "-m", "bench.http_floor", "--port", str(floor_port),
                                       "--body-file", f.name], cwd=ROOT, stdout=subprocess.DEVNULL)
        if not wait_until_answering(floor_port, path, timeout_s=30, alive=lambda: floor_proc.poll() is None):
            raise RuntimeError("the HTTP floor server did not come up")
        os.unlink(f.name)
        common.say(f"serve on port {port}, HTTP floor on {floor_port}; {threads} keep-alive clients each,"
                   f" {duration_s:.0f}s per server in alternating blocks")
        res = _keep_alive_rounds({"serve": (port, path), "floor": (floor_port, path)}, headers, threads, duration_s)
    finally:
        for p in (proc, floor_proc):
            if p is None:
                continue
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()
    serve, floor = res["serve"], res["floor"]
    out = {"threads": threads, "duration_s": serve["busy_s"], **common.summary(serve["lat"]),
           "rps": len(serve["lat"]) / serve["busy_s"], "sources": serve["sources"], "errors": serve["errors"],
           "floor": {**common.summary(floor["lat"]), "rps": len(floor["lat"]) / floor["busy_s"],
                     "errors": floor["errors"]}}
    common.say(f"HTTP keep-alive L1 hit: p50 {out['p50_us']:.0f} us, p99 {out['p99_us']:.0f} us,"
               f" {out['rps']:.0f} req/s, X-Cache {serve['sources']}, errors {serve['errors']} | http.server floor:"
               f" p50 {out['floor']['p50_us']:.0f} us, {out['floor']['rps']:.0f} req/s")
    return out
