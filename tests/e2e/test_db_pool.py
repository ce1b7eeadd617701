"""The bounded connection pool against a real PostgreSQL: its bound holds under many
threads, a full pool makes a caller wait a bounded time and then answer 503, broken
connections give their place back, and a long-running `serve` keeps the number of
backends at the bound however many short-lived clients come and go (issue 11)."""
from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
from typing import Iterator

import pytest

from chalicelib.db import connection as db
from tests.data_finders import new_patients
from tests.helpers_servers import ApiServer, free_future_slots, patched_environ

APP = "hospital-booking"


def _backends(app_env) -> int:
    """Open connections of the app (by application_name) to the test database."""
    return app_env.sql("SELECT count(*) FROM pg_stat_activity WHERE datname = :d AND application_name = :a"
                       " AND pid <> pg_backend_pid()", d=app_env.db_name, a=APP)[0][0]


class BackendSampler(threading.Thread):
    """Samples the app's backend count every few milliseconds; `peak` is the highest seen."""

    def __init__(self, app_env) -> None:
        super().__init__(daemon=True)
        self.app_env = app_env
        self.peak = 0
        self.samples = 0
        self.done = threading.Event()
        self.sampled = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, _backends(self.app_env))
            self.samples += 1
            self.sampled.set()
            self.done.wait(0.01)

    def begin(self) -> None:
        """Start sampling and return once the first sample is taken."""
        self.start()
        self.sampled.wait(10)

    def stop(self) -> int:
        self.done.set()
        self.join(5)
        return self.peak


@contextlib.contextmanager
def another_thread_holding_a_connection() -> Iterator[None]:
    """While the block runs, another thread holds one pooled connection; it gives it back
    when the block ends."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with db.borrowed():
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        yield
    finally:
        release.set()
        holder.join(10)


def test_threads_share_at_most_pool_size_connections(app_env):
    with patched_environ({**app_env.env, "DB_POOL_SIZE": "3"}):
        errors: list[BaseException] = []
        barrier = threading.Barrier(24)

        def work() -> None:
            try:
                barrier.wait(10)
                for _ in range(5):
                    assert db.scalar("SELECT count(*) FROM pg_sleep(0.01), department WHERE tenant_id = 1") > 0
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        sampler = BackendSampler(app_env)
        sampler.begin()
        threads = [threading.Thread(target=work) for _ in range(24)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        peak = sampler.stop()
        assert not errors, errors
        assert 1 <= peak <= 3, peak
        assert db.pool().opened <= 3
        # Threads that have finished leave nothing behind but the pooled connections.
        assert _backends(app_env) <= 3


def test_a_full_pool_waits_a_bounded_time_then_refuses(app_env):
    with patched_environ({**app_env.env, "DB_POOL_SIZE": "1", "DB_POOL_WAIT_MS": "200"}):
        with another_thread_holding_a_connection():
            started = time.monotonic()
            with pytest.raises(db.PoolExhausted):
                db.scalar("SELECT 1")
            waited = time.monotonic() - started
        assert 0.15 <= waited < 2.0, waited
        assert db.scalar("SELECT 1") == 1  # the returned connection serves the next caller


def test_a_broken_connection_gives_its_place_back(app_env):
    with patched_environ({**app_env.env, "DB_POOL_SIZE": "1"}):
        pid = db.scalar("SELECT pg_backend_pid()")
        app_env.sql("SELECT pg_terminate_backend(:p)", p=pid)
        deadline = time.monotonic() + 5
        while app_env.sql("SELECT count(*) FROM pg_stat_activity WHERE pid = :p", p=pid)[0][0]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        # The dead connection is replaced within the bound of one.
        assert db.scalar("SELECT pg_backend_pid()") != pid
        assert db.pool().opened == 1


def test_an_exhausted_pool_answers_503_json(client, app_env):
    with patched_environ({**app_env.env, "DB_POOL_SIZE": "1", "DB_POOL_WAIT_MS": "50"}):
        with another_thread_holding_a_connection():
            response = client.http.get("/api/appointments/list?clientId=1&limit=3&status=no_show",
                                       headers=app_env.headers(1, "staff"))
        assert response.status_code == 503, response.body
        assert response.json_body["error"]["code"] == "unavailable"
        assert response.headers["Retry-After"]


def _short_lived(port: int, method: str, path: str, headers: dict, body: dict | None = None) -> int:
    """One request on its own TCP connection, closed afterwards (as curl or a new browser socket)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=payload, headers={**headers, "Connection": "close",
                                                          **({"Content-Type": "application/json"} if body else {})})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_400_short_lived_clients_leave_backends_bounded(app_env):
    """The leak that took PostgreSQL down: every new client connection of `serve` kept a
    backend open. Now 400 of them, 8 at a time, each reading an uncached list and
    attempting a booking, never see a 5xx, and the backends stay at the pool's bound."""
    bound = 3
    server = ApiServer({**app_env.env, "DB_POOL_SIZE": str(bound)}).start()
    slots = [s for s, _, _ in free_future_slots(app_env, limit=60)]
    patients = [r[0] for r in app_env.sql("SELECT id FROM patient WHERE tenant_id = 1 ORDER BY id LIMIT 60")]
    headers = app_env.headers(1, "staff")
    statuses: list[int] = []
    lock = threading.Lock()
    sampler = BackendSampler(app_env)
    try:
        server.wait_healthy()
        sampler.begin()

        def client_loop(worker: int) -> None:
            for n in range(50):
                i = worker * 50 + n
                read = _short_lived(server.port, "GET", f"/api/appointments/list?clientId=1&limit={1 + i % 200}"
                                    f"&patientId={patients[i % len(patients)]}", headers)
                book = _short_lived(server.port, "POST", "/api/appointments", headers,
                                    {"clientId": 1, "slotId": slots[i % len(slots)],
                                     "patientId": patients[(i * 7) % len(patients)]})
                with lock:
                    statuses.extend((read, book))

        workers = [threading.Thread(target=client_loop, args=(w,)) for w in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(300)
        during = sampler.stop()
        assert len(statuses) == 800
        assert [s for s in statuses if s >= 500] == [], sorted(set(statuses))
        assert set(statuses) <= {200, 201, 409}, sorted(set(statuses))
        assert sampler.samples >= 2  # one before the clients started, more while they ran
        assert 1 <= during <= bound, during
        time.sleep(0.5)
        assert _backends(app_env) <= bound  # after: only the pool's connections remain
    finally:
        sampler.done.set()
        server.stop()


def test_40_concurrent_bookings_through_two_servers_five_rounds(app_env):
    """One slot, 40 attempts at once through two `serve` processes, five rounds in a row:
    exactly one 201 and 39 x 409 each round (no 503 from exhausted connections)."""
    servers = [ApiServer(app_env.env).start() for _ in range(2)]
    slots = [s for s, _, _ in free_future_slots(app_env, limit=5)]
    patients = new_patients(app_env.sql, count=40)
    headers = app_env.headers(1, "staff")
    try:
        for server in servers:
            server.wait_healthy()
        for round_number, slot in enumerate(slots):
            barrier = threading.Barrier(40)
            statuses: list[int] = []
            lock = threading.Lock()

            def attempt(i: int) -> None:
                barrier.wait(30)
                status = _short_lived(servers[i % 2].port, "POST", "/api/appointments", headers,
                                      {"clientId": 1, "slotId": slot, "patientId": patients[i]})
                with lock:
                    statuses.append(status)

            threads = [threading.Thread(target=attempt, args=(i,)) for i in range(40)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert sorted(statuses) == [201] + [409] * 39, (round_number, sorted(statuses))
            live = app_env.sql("SELECT count(*) FROM appointment WHERE tenant_id = 1 AND slot_id = :s"
                               " AND status <> 'cancelled'", s=slot)[0][0]
            assert live == 1
    finally:
        for server in servers:
            server.stop()
