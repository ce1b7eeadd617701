"""DATABASE_READ_URL and the replica's read routing, without servers: settings from the
environment and from secrets, tickets, and the loader's choice of server (a fake pool)."""
from __future__ import annotations

from typing import Any

import pytest

from chalicelib.booking import read_source
from chalicelib.cache.tickets import filling, new_token
from chalicelib.db.errors import DatabaseUnavailable
from chalicelib.settings import load_settings

BASE = {"DATABASE_URL": "postgresql://app:secret@primary.example:5432/hospital", "PGSSLMODE": "require"}


def test_without_a_read_url_there_is_no_replica() -> None:
    assert load_settings(BASE).db_read is None


def test_the_read_url_takes_the_primarys_unset_parts() -> None:
    s = load_settings({**BASE, "DATABASE_READ_URL": "postgresql://reader.example/hospital",
                       "DB_REPLICA_WAIT_MS": "80"})
    assert s.db_read is not None
    assert (s.db_read.host, s.db_read.port, s.db_read.user, s.db_read.password) == ("reader.example", 5432,
                                                                                    "app", "secret")
    assert s.db_read.ssl_mode == "require" and s.replica_wait_ms == 80 and s.db.host == "primary.example"


def test_the_read_url_may_name_a_unix_socket_and_come_from_secrets() -> None:
    s = load_settings(BASE, secrets={"DATABASE_READ_URL": "postgresql://ro@/hospital?host=/run/replica&port=5433"})
    assert s.db_read is not None and s.db_read.socket_path == "/run/replica/.s.PGSQL.5433"
    assert s.db_read.user == "ro" and s.replica_wait_ms == 50


def test_bad_read_settings_name_their_variable() -> None:
    with pytest.raises(ValueError, match="DATABASE_READ_URL"):
        load_settings({**BASE, "DATABASE_READ_URL": "mysql://x/y"})
    with pytest.raises(ValueError, match="DB_REPLICA_WAIT_MS"):
        load_settings({**BASE, "DB_REPLICA_WAIT_MS": "-1"})


def test_tickets_order_as_lsns() -> None:
    assert read_source.commit_ticket(0x1_0000_0000) == "0000000100000000"
    assert read_source.commit_ticket(None) == read_source.PRIMARY_ONLY
    assert read_source.commit_ticket(9) < read_source.commit_ticket(0x10)
    assert read_source.lsn_text(0x1_0000_00A0) == "1/A0"


class FakeReplica:
    """Stands in for db.run_on / db.run: the replica has replayed `replayed`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, replayed: int, down: bool = False) -> None:
        self.replayed, self.down, self.calls, self.primary_calls = replayed, down, 0, 0
        monkeypatch.setattr(read_source.db, "replica_pool", lambda: self)
        monkeypatch.setattr(read_source.db, "run_on", self.run_on)
        monkeypatch.setattr(read_source.db, "run", self.run)
        monkeypatch.setattr(read_source, "state", read_source.ReplicaState())

    def run_on(self, pool: Any, sql: str, **params: Any) -> list[list[Any]]:
        self.calls += 1
        if self.down:
            raise DatabaseUnavailable("gone")
        if "hb_min_lsn" not in params:
            return [["replica"]]
        high, low = params["hb_min_lsn"].split("/")
        ok = self.replayed >= (int(high, 16) << 32 | int(low, 16))
        return [[ok, True, "replica"]] if ok else [[False, None, None]]

    def run(self, sql: str, **params: Any) -> list[list[Any]]:
        self.primary_calls += 1
        return [["primary"]]


def _fill(ticket: str) -> Any:
    with filling([new_token(ticket)] if ticket else [new_token()]):
        return read_source.scalar("SELECT x")


def test_a_replica_that_replayed_the_ticket_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeReplica(monkeypatch, replayed=0x200)
    assert _fill(read_source.commit_ticket(0x200)) == "replica" and fake.calls == 1
    assert _fill("") == "replica" and read_source.last_source() == "replica"


def test_a_lagging_replica_is_waited_for_then_the_primary_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeReplica(monkeypatch, replayed=0x100)
    monkeypatch.setattr(read_source, "get_settings", lambda: load_settings({**BASE, "DB_REPLICA_WAIT_MS": "20"}))
    assert _fill(read_source.commit_ticket(0x200)) == "primary"
    assert fake.calls >= 2 and fake.primary_calls == 1 and read_source.last_source() == "primary"
    assert read_source.state.lagged == 1 and not read_source.state.down


def test_an_unknown_commit_lsn_reads_the_primary_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeReplica(monkeypatch, replayed=0x100)
    assert _fill(read_source.PRIMARY_ONLY) == "primary" and fake.calls == 0


def test_a_dead_replica_is_skipped_during_the_cooldown(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeReplica(monkeypatch, replayed=0, down=True)
    monkeypatch.setattr(read_source, "get_settings", lambda: load_settings({**BASE, "DB_REPLICA_COOLDOWN": "60"}))
    assert _fill("") == "primary" and fake.calls == 1 and read_source.state.down
    assert _fill("") == "primary" and _fill("") == "primary" and fake.calls == 1  # no cost per request
