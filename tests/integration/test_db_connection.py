"""The data layer's connection handling against a real PostgreSQL: prepared statements
reused per connection and prepared again after a schema change, a broken idle connection
replaced before a write is sent, and a write whose connection breaks after sending reported
as an unknown outcome (503 through the API, never "nothing was changed")."""
from __future__ import annotations

import json
import time

import pytest

from chalicelib import runtime
from chalicelib.db import connection as db
from tests.data_finders import new_patient
from tests.helpers_servers import free_future_slots


def _terminate_current_backend(app_env) -> None:
    """Kill the server process of the connection the next statement will borrow (the pool
    lends the most recently returned one first) and wait until it is gone."""
    pid = db.scalar("SELECT pg_backend_pid()")
    app_env.sql("SELECT pg_terminate_backend(:p)", p=pid)
    deadline = time.monotonic() + 5
    while app_env.sql("SELECT count(*) FROM pg_stat_activity WHERE pid = :p", p=pid)[0][0]:
        assert time.monotonic() < deadline, "the backend did not terminate"
        time.sleep(0.01)


@pytest.fixture()
def scratch(app_env):
    app_env.sql("CREATE TABLE conn_scratch (id serial PRIMARY KEY, v text NOT NULL)")
    runtime.reset()
    try:
        yield
    finally:
        runtime.reset()
        app_env.sql("DROP TABLE conn_scratch")


def test_statements_are_prepared_once_per_connection(app_env, scratch):
    sql = "SELECT count(*) FROM conn_scratch WHERE v = :v"
    assert db.run(sql, v="x") == [[0]]
    with db.borrowed() as session:
        first = session.prepared(sql)
    assert db.run(sql, v="y") == [[0]]
    with db.borrowed() as session:
        assert session.prepared(sql) is first
    runtime.reset()
    assert db.run(sql, v="x") == [[0]]
    with db.borrowed() as session:
        assert session.prepared(sql) is not first  # a new connection prepares anew


def test_a_schema_change_does_not_break_prepared_reads_or_writes(app_env, scratch):
    read = "SELECT * FROM conn_scratch WHERE id = :id"
    write = "INSERT INTO conn_scratch (v) VALUES (:v) RETURNING *"
    (row,) = db.write(write, v="a").rows
    assert db.run(read, id=row[0]) == [[row[0], "a"]]
    app_env.sql("ALTER TABLE conn_scratch ADD COLUMN note text")
    assert db.run(read, id=row[0]) == [[row[0], "a", None]]
    (second,) = db.write(write, v="b").rows
    assert second[1:] == ["b", None]
    assert app_env.sql("SELECT count(*) FROM conn_scratch")[0][0] == 2


def test_broken_idle_connection_is_replaced_before_a_write(app_env, scratch, monkeypatch):
    write = "INSERT INTO conn_scratch (v) VALUES (:v) RETURNING id"
    db.write(write, v="before")
    _terminate_current_backend(app_env)
    monkeypatch.setattr(db, "IDLE_CHECK_S", 0.0)  # every connection counts as idle
    (row,) = db.write(write, v="after").rows
    assert app_env.sql("SELECT v FROM conn_scratch WHERE id = :id", id=row[0]) == [["after"]]


def test_connection_lost_after_sending_is_an_unknown_outcome(app_env, scratch, monkeypatch):
    write = "INSERT INTO conn_scratch (v) VALUES (:v)"
    db.write(write, v="first")
    monkeypatch.setattr(db, "IDLE_CHECK_S", 3600.0)  # no check: the write goes to the dead socket
    _terminate_current_backend(app_env)
    with pytest.raises(db.WriteOutcomeUnknown):
        db.write(write, v="lost")
    db.write(write, v="next")  # a new connection serves the next write
    assert sorted(r[0] for r in app_env.sql("SELECT v FROM conn_scratch")) == ["first", "next"]


def test_booking_with_unknown_outcome_answers_503_without_claiming_nothing_changed(client, app_env, monkeypatch):
    headers = {**app_env.headers(role="staff"), "Content-Type": "application/json"}
    # Two slots of one doctor: never at the same time, so one patient may hold both.
    (slot, _, _), (other, _, _) = free_future_slots(app_env, limit=2, min_per_group=2)
    patient = new_patient(app_env.sql)
    first = client.http.post("/api/appointments", headers=headers,
                             body=json.dumps({"clientId": 1, "slotId": slot, "patientId": patient}))
    assert first.status_code == 201, first.body
    monkeypatch.setattr(db, "IDLE_CHECK_S", 3600.0)
    _terminate_current_backend(app_env)  # the test client runs the app in this thread
    resp = client.http.post("/api/appointments", headers=headers,
                            body=json.dumps({"clientId": 1, "slotId": other, "patientId": patient}))
    assert resp.status_code == 503, resp.body
    error = json.loads(resp.body)["error"]
    assert error["code"] == "unavailable"
    assert "may or may not have been saved" in error["message"]


def test_prepared_statements_can_be_switched_off(app_env, scratch):
    from tests.helpers_servers import patched_environ

    with patched_environ({"DB_PREPARED_STATEMENTS": "0"}):
        (row,) = db.write("INSERT INTO conn_scratch (v) VALUES (:v) RETURNING id", v="unprepared").rows
        assert db.run("SELECT v FROM conn_scratch WHERE id = :id", id=row[0]) == [["unprepared"]]
        with db.borrowed() as session:
            assert session.prepared("SELECT v FROM conn_scratch WHERE id = :id") is None
    with db.borrowed() as session:
        assert session.prepared("SELECT 1 WHERE 1 = :one") is not None  # back on by default
