"""DATABASE_READ_URL without servers: settings from the environment and from secrets, and
tickets. (Where a loader reads is tested on a real streaming replica: tests/e2e/test_db_replica.py.)"""
from __future__ import annotations

import pytest

from chalicelib.booking import read_source
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
