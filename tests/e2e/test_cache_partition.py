"""Silent partitions between a process and Redis, measured with two server processes whose
Redis connections each go through a TcpProxy that can stall (stop forwarding, close
nothing: what an ElastiCache failover looks like to a client) or delay them.

- Reader cut off: after a booking through the healthy process returns, the cut-off
  reader's slot list shows the slot free no later than the tracking lease (0.5 s) after
  the cut (docs/caching.md, "Silent partitions").
- Writer cut off: the booking commits while the writer's Redis is stalled (its bump goes to
  the outbox); the healthy reader stops showing the slot free within 2 s.
- Reader on a slow path (every chunk delayed): the same lease bound.

Each scenario runs a few rounds on different slots and prints the stale windows.
"""
from __future__ import annotations

import json
import time
from typing import Iterator

import pytest

from chalicelib.settings import load_settings
from tests.data_finders import new_patient
from tests.helpers_servers import KeepAlive, TcpProxy, free_future_slots, running_servers

ROUNDS = 3
LEASE_S = 0.5  # the default CACHE_TRACKING_LEASE and CACHE_L1_MAX_AGE_UNTRACKED
OUTBOX_BOUND_S = 2.0
MARGIN_S = 0.05  # the server decides after the request is sent; this covers the send itself
WATCH_S = 8.0  # long enough to see the old 5.9 s / 12 s windows end (or not)
SETTLE_S = 0.3  # the slot must stay taken this long before a round ends


@pytest.fixture(scope="module")
def proxies(app_env) -> Iterator[tuple[TcpProxy, TcpProxy]]:
    redis = load_settings(app_env.env).redis
    pair = (TcpProxy(redis.host, redis.port), TcpProxy(redis.host, redis.port))
    yield pair
    for proxy in pair:
        proxy.cut()


@pytest.fixture(scope="module")
def servers(app_env, proxies):
    """Two processes, each with its Redis through its own proxy; a short breaker cool-down so
    that a process reconnects soon after a round's partition heals."""
    redis = load_settings(app_env.env).redis
    with running_servers({**app_env.env, "REDIS_URL": _through(redis.db, proxies[0]),
                          "REDIS_BREAKER_COOLDOWN": "1"}, 1) as (a,), \
            running_servers({**app_env.env, "REDIS_URL": _through(redis.db, proxies[1]),
                             "REDIS_BREAKER_COOLDOWN": "1"}, 1) as (b,):
        yield [a, b]


def _through(db: int, proxy: TcpProxy) -> str:
    return f"redis://127.0.0.1:{proxy.port}/{db}"


@pytest.fixture(scope="module")
def rounds(app_env) -> Iterator[tuple[int, int, str]]:
    """Free slots, each on its own (doctor, day), for every round of every scenario."""
    seen: set[tuple[int, str]] = set()
    picked = []
    for slot, doctor, day in free_future_slots(app_env, limit=100000):
        if (doctor, day) not in seen:
            seen.add((doctor, day))
            picked.append((slot, doctor, day))
    assert len(picked) >= 3 * ROUNDS
    return iter(picked)


def _tracked(conn: KeepAlive, path: str, timeout: float = 20.0) -> None:
    """Read `path` until this process serves it from L1 again (tracking reconnected)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if conn.warm(path) == "L1":
            return
        time.sleep(0.1)
    raise AssertionError(f"{path} never came back to L1 after the partition healed")


def _stale_until(reader: KeepAlive, path: str, slot: int, after: float) -> float:
    """Poll `path` until the slot has stayed taken for SETTLE_S (or WATCH_S ran out); the
    send time (monotonic) of the last answer sent after `after` that listed it free."""
    last_free = after
    taken_since = None
    deadline = after + WATCH_S
    while time.monotonic() < deadline:
        sent = time.monotonic()
        status, _, raw = reader.request("GET", path)
        assert status == 200, raw[:300]
        free = slot in [s["slotId"] for s in json.loads(raw)["slots"]]
        if free:
            last_free, taken_since = sent, None
        elif taken_since is None:
            taken_since = sent
        elif time.monotonic() - taken_since >= SETTLE_S:
            break
        time.sleep(0.01)
    return last_free


def _book(writer: KeepAlive, slot: int, patient: int) -> None:
    status, _, raw = writer.request("POST", "/api/appointments",
                                    body={"clientId": 1, "slotId": slot, "patientId": patient})
    assert status == 201, raw[:300]


def _round(app_env, servers, proxies, rounds, cut: int, mode: str) -> tuple[float, float]:
    """One round: both processes hold the slot list in L1; process `cut`'s Redis is stalled
    (or delayed); A books; B is polled. (seconds from the cut, seconds from the booking's
    return) to the last answer that still listed the slot free."""
    slot, doctor, day = next(rounds)
    path = f"/api/slots/available?clientId=1&date={day}&doctorId={doctor}"
    headers = app_env.headers(role="staff")
    writer, reader = KeepAlive(servers[0].port, headers), KeepAlive(servers[1].port, headers)
    patient = new_patient(app_env.sql)
    try:
        _tracked(writer, path)
        _tracked(reader, path)
        cut_at = time.monotonic()
        if mode == "stall":
            proxies[cut].stall()
        else:
            proxies[cut].delay_s = 0.1
        _book(writer, slot, patient)
        booked_at = time.monotonic()
        last_free = _stale_until(reader, path, slot, booked_at)
    finally:
        proxies[cut].delay_s = 0.0
        proxies[cut].resume()
        writer.close()
        reader.close()
    return max(0.0, last_free - cut_at) if last_free > booked_at else 0.0, max(0.0, last_free - booked_at)


@pytest.mark.parametrize("mode", ["stall", "delay"])
def test_a_cut_off_reader_stops_trusting_l1_within_the_lease(app_env, servers, proxies, rounds, mode):
    windows = [_round(app_env, servers, proxies, rounds, cut=1, mode=mode) for _ in range(ROUNDS)]
    print(f"\nreader {mode}: stale window after the cut (s): {[round(w[0], 3) for w in windows]}")
    assert all(from_cut <= LEASE_S + MARGIN_S for from_cut, _ in windows), windows


def test_a_cut_off_writers_booking_reaches_readers_within_two_seconds(app_env, servers, proxies, rounds):
    windows = [_round(app_env, servers, proxies, rounds, cut=0, mode="stall") for _ in range(ROUNDS)]
    print(f"\nwriter stall: stale window after the booking returned (s): {[round(w[1], 3) for w in windows]}")
    assert all(from_booking <= OUTBOX_BOUND_S for _, from_booking in windows), windows
