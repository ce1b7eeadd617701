"""The application role of migration 007 on real PostgreSQL: the app, logged in as a member
of `hb_app`, books, reschedules, cancels, replays idempotent answers and runs its jobs;
DDL, deletes of appointments, direct view refreshes and changes to the audit trail are
refused by the server (SQLSTATE 42501)."""
from __future__ import annotations

import json
import uuid
from dataclasses import replace
from typing import Iterator

import pg8000.native
import pytest

from chalicelib.db import migrate
from chalicelib.db.connection import connection_arguments
from support.namespaces import delete_namespace, new_namespace
from tests.conftest import AppEnv, admin_connection, admin_settings, drop_database, seeded_database
from tests.data_finders import new_patient
from tests.helpers_servers import free_future_slots, patched_environ

JSON = {"Content-Type": "application/json"}
INSUFFICIENT_PRIVILEGE = "42501"


class AppRoleEnv(AppEnv):
    """AppEnv whose DATABASE_URL logs in as a fresh LOGIN member of `hb_app`; `sql` still
    runs as the owner (to set up data), `app_sql` as the app's login."""

    def __init__(self, db_name: str, namespace: str, login: str, password: str) -> None:
        super().__init__(db_name, namespace)
        self.owner_settings = admin_settings()  # read before DATABASE_URL names the login
        self.login_settings = replace(self.owner_settings, user=login, password=password, database=db_name)
        self.env["DATABASE_URL"] = self.login_settings.url

    def owner_connection(self, database: str) -> pg8000.native.Connection:
        return pg8000.native.Connection(**connection_arguments(self.owner_settings), database=database)

    def sql(self, query: str, **params: object) -> list:
        return _run_once(self.owner_connection(self.db_name), query, **params)

    def app_sql(self, query: str) -> list:
        return _run_once(pg8000.native.Connection(**connection_arguments(self.login_settings),
                                                  database=self.db_name), query)


def _run_once(conn: pg8000.native.Connection, query: str, **params: object) -> list:
    """Run one statement on `conn`, then close it."""
    try:
        return conn.run(query, **params)
    finally:
        conn.close()


@pytest.fixture(scope="module")
def app_env() -> Iterator[AppRoleEnv]:
    """A seeded database, a LOGIN role in `hb_app` (as an operator creates hb_app_login) and
    the app's settings pointing at the database as that login; the role is dropped after."""
    name = seeded_database()
    login, password = f"hb_app_test_{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    _run_once(admin_connection(), f"CREATE ROLE {pg8000.native.identifier(login)} LOGIN"
                                  f" PASSWORD {pg8000.native.literal(password)} IN ROLE hb_app")
    env = AppRoleEnv(name, new_namespace("hbt"), login, password)
    try:
        with patched_environ(env.env):
            yield env
    finally:
        drop_database(name)
        _run_once(admin_connection(), f"DROP ROLE {pg8000.native.identifier(login)}")
        delete_namespace(env.namespace)


def _refused(env: AppRoleEnv, statement: str) -> str:
    """The SQLSTATE with which PostgreSQL refuses `statement` run as the app's login."""
    with pytest.raises(pg8000.native.DatabaseError) as refused:
        env.app_sql(statement)
    return refused.value.args[0]["C"]


def _post(client, path: str, body: dict, headers: dict) -> object:
    return client.http.post(path, body=json.dumps(body), headers={**JSON, **headers})


def test_the_app_connects_as_a_member_of_the_app_role_not_as_an_owner(app_env):
    user, is_super, can_create_role = app_env.app_sql(
        "SELECT current_user, rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user")[0]
    assert user == app_env.login_settings.user and not is_super and not can_create_role
    assert app_env.app_sql("SELECT pg_has_role('hb_app', 'MEMBER')") == [[True]]
    assert app_env.sql("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'hb_app'") == [[False]]
    from chalicelib.db import connection as db

    assert db.run("SELECT current_user") == [[app_env.login_settings.user]]  # the app's own pool


def test_a_booking_life_through_the_app_works_as_the_app_role(client, app_env):
    (slot, _, _), (other_slot, _, _), (desk_slot, _, _) = free_future_slots(app_env, limit=3)
    headers = {**app_env.headers(role="staff"), "Idempotency-Key": f"role-{uuid.uuid4()}"}
    body = {"clientId": 1, "slotId": slot, "patientId": new_patient(app_env.sql)}
    booked = _post(client, "/api/appointments", body, headers)
    assert booked.status_code == 201, booked.body
    replayed = _post(client, "/api/appointments", body, headers)
    assert replayed.status_code == 201 and replayed.json_body == booked.json_body
    appointment = booked.json_body["appointment"]["id"]
    moved = _post(client, f"/api/appointments/{appointment}/reschedule",
                  {"clientId": 1, "slotId": other_slot}, app_env.headers(role="staff"))
    assert moved.status_code == 200 and moved.json_body["appointment"]["slotId"] == other_slot, moved.body
    cancelled = _post(client, f"/api/appointments/{appointment}/cancel", {"clientId": 1},
                      app_env.headers(role="staff"))
    assert cancelled.status_code == 200 and cancelled.json_body["appointment"]["status"] == "cancelled"
    assert app_env.sql("SELECT status FROM appointment WHERE tenant_id = 1 AND id = :a",
                       a=appointment) == [["cancelled"]]
    desk = _post(client, "/api/appointments", {"clientId": 1, "slotId": desk_slot,
                                                "patientId": new_patient(app_env.sql)}, app_env.headers(role="staff"))
    assert desk.status_code == 201, desk.body
    for status in ("checked_in", "completed"):
        changed = _post(client, f"/api/appointments/{desk.json_body['appointment']['id']}/status",
                        {"clientId": 1, "status": status}, app_env.headers(role="staff"))
        assert changed.status_code == 200 and changed.json_body["appointment"]["status"] == status, changed.body


def test_the_view_refresh_job_works_as_the_app_role(app_env):
    from chalicelib.jobs.refresh import refresh_views

    before = app_env.sql("SELECT max(refreshed_at) FROM dashboard_daily")[0][0]
    result = refresh_views()
    assert result["status"] == "ok", result
    assert app_env.sql("SELECT max(refreshed_at) FROM dashboard_daily")[0][0] > before
    assert app_env.sql("SELECT status FROM view_refresh WHERE view_name = 'dashboard_daily'") == [["ok"]]


def test_the_slot_extension_job_works_as_the_app_role(app_env):
    from chalicelib.booking.slot_plan import extend_slots
    from chalicelib.db.connection import connect
    from chalicelib.jobs.slots import run_scheduled_extension
    from chalicelib.settings import get_settings

    assert set(run_scheduled_extension()) == {"inserted", "idempotencyKeysPurged"}
    conn = connect(statement_timeout_ms=get_settings().refresh_timeout_ms)  # as the job connects
    try:
        # A week past the horizon holds every weekday, so some doctor works on one of them.
        assert extend_slots(conn, get_settings().slot_horizon_days + 7) > 0
    finally:
        conn.close()


def test_the_outbox_replay_works_as_the_app_role(app_env):
    from chalicelib.booking.caching import get_cache
    from chalicelib.booking.invalidation import replay_outbox
    from chalicelib.db import connection as db

    db.run("INSERT INTO cache_invalidation_outbox (version_keys) VALUES (:k)", k=[f"{app_env.namespace}:v:test"])
    assert replay_outbox(get_cache()) >= 1
    assert app_env.sql("SELECT count(*) FROM cache_invalidation_outbox") == [[0]]


@pytest.mark.parametrize("statement", [
    "CREATE TABLE intruder (id integer)",
    "CREATE VIEW intruder AS SELECT 1",
    "CREATE FUNCTION intruder() RETURNS integer LANGUAGE sql AS 'SELECT 1'",
    "DROP TABLE appointment",
    "ALTER TABLE appointment ADD COLUMN intruder text",
    "ALTER TABLE patient DISABLE TRIGGER ALL",
    "CREATE INDEX intruder ON patient (name)",
    "TRUNCATE appointment",
    "DELETE FROM appointment WHERE false",
    "UPDATE tenant SET name = name WHERE false",
    "DELETE FROM patient WHERE false",
    "INSERT INTO tenant (id, name, time_zone) VALUES (0, 'x', 'UTC')",
    "REFRESH MATERIALIZED VIEW dashboard_daily",
    "DROP MATERIALIZED VIEW dashboard_daily",
    "SELECT count(*) FROM schema_migration",
])
def test_ddl_and_writes_the_app_does_not_do_are_refused(app_env, statement):
    assert _refused(app_env, statement) == INSUFFICIENT_PRIVILEGE


def test_the_refresh_function_refreshes_materialized_views_only(app_env):
    with pytest.raises(pg8000.native.DatabaseError) as refused:
        app_env.app_sql("SELECT refresh_materialized_view('appointment')")
    assert refused.value.args[0]["C"] == "42P01"


def test_a_table_a_later_migration_adds_is_readable_but_not_writable(app_env):
    app_env.sql("CREATE TABLE later_table (id integer)")  # as the owner, like a migration
    try:
        assert app_env.app_sql("SELECT count(*) FROM later_table") == [[0]]
        assert _refused(app_env, "INSERT INTO later_table VALUES (1)") == INSUFFICIENT_PRIVILEGE
        assert _refused(app_env, "DELETE FROM later_table") == INSUFFICIENT_PRIVILEGE
    finally:
        app_env.sql("DROP TABLE later_table")


def test_the_audit_trail_is_append_only_for_the_app_role(app_env):
    """When migration 006 created audit_event, the app may read and insert but never change
    or remove a row. Before 006 is merged the table must not exist at all."""
    if app_env.sql("SELECT to_regclass('public.audit_event') IS NULL")[0][0]:
        assert not list(migrate.MIGRATIONS_DIR.glob("006_*.sql")), "006 is applied but made no audit_event"
        return
    column = app_env.sql("SELECT column_name FROM information_schema.columns"
                         " WHERE table_name = 'audit_event' ORDER BY ordinal_position LIMIT 1")[0][0]
    quoted = pg8000.native.identifier(column)
    assert app_env.app_sql("SELECT has_table_privilege('audit_event', 'SELECT, INSERT')") == [[True]]
    for statement in (f"UPDATE audit_event SET {quoted} = {quoted} WHERE false",
                      "DELETE FROM audit_event WHERE false", "TRUNCATE audit_event"):
        assert _refused(app_env, statement) == INSUFFICIENT_PRIVILEGE, statement


def test_the_migration_runs_again_in_another_database_of_the_same_server(app_env):
    """The role is cluster-wide: a second database's migration finds it and grants there."""
    name = f"hb_test_role_{uuid.uuid4().hex[:8]}"
    admin = app_env.owner_connection("postgres")
    try:
        migrate.create_migrated(admin, name, app_env.owner_connection)
        conn = app_env.owner_connection(name)
        try:
            assert conn.run("SELECT has_database_privilege('hb_app', current_database(), 'CONNECT'),"
                            " has_table_privilege('hb_app', 'appointment', 'INSERT'),"
                            " has_table_privilege('hb_app', 'appointment', 'DELETE')") == [[True, True, False]]
        finally:
            conn.close()
    finally:
        migrate.drop_database(admin, name)
        admin.close()


def test_the_app_role_itself_cannot_log_in(app_env):
    settings = replace(app_env.owner_settings, user="hb_app", password=None)
    with pytest.raises((pg8000.native.DatabaseError, pg8000.native.InterfaceError)) as refused:
        pg8000.native.Connection(**connection_arguments(settings), database=app_env.db_name)
    # Over a Unix socket (the embedded server) the server closes at once after its FATAL, and
    # pg8000's own close then fails; the refusal is the error that close was handling.
    error: BaseException | None = refused.value
    while error is not None and not isinstance(error, pg8000.native.DatabaseError):
        error = error.__context__
    assert error is not None and error.args[0]["C"] == "28000"



def test_schedule_management_works_as_the_app_role(client, app_env):
    """Migration 009: the admin writes (catalog, hours, absences, patients, slot
    regeneration) run as the app's login."""
    admin = app_env.headers(role="admin")
    department = _post(client, "/api/admin/departments", {"clientId": 1, "name": "Role Dept"}, admin)
    assert department.status_code == 201, department.body
    doctor = _post(client, "/api/admin/doctors", {"clientId": 1, "name": "Dr Role",
                                                  "departmentId": department.json_body["department"]["id"]}, admin)
    assert doctor.status_code == 201, doctor.body
    doctor_id = doctor.json_body["doctor"]["id"]
    hours = client.http.put(f"/api/admin/doctors/{doctor_id}/working-hours", headers={**admin, **JSON},
                            body=json.dumps({"clientId": 1, "hours": [{"weekday": d, "start": "09:00", "end": "10:00",
                                                                       "slotMinutes": 30} for d in range(1, 8)]}))
    assert hours.status_code == 200 and hours.json_body["slotsAdded"] > 0, hours.body
    narrowed = client.http.put(f"/api/admin/doctors/{doctor_id}/working-hours", headers={**admin, **JSON},
                               body=json.dumps({"clientId": 1, "hours": [{"weekday": 1, "start": "09:00",
                                                                          "end": "09:30", "slotMinutes": 30}]}))
    assert narrowed.status_code == 200 and narrowed.json_body["slotsRemoved"] > 0, narrowed.body
    patient = _post(client, "/api/admin/patients", {"clientId": 1, "name": "Role Patient", "birthDate": "1990-01-01",
                                                   "recordNumber": f"ROLE-{uuid.uuid4().hex[:8]}"}, admin)
    assert patient.status_code == 201, patient.body
    assert app_env.sql("SELECT count(*) FROM audit_event WHERE action = 'doctor.hours'")[0][0] == 2


def test_slot_publication_works_as_the_app_role(client, app_env):
    """Migration 010: the admin's publication choice is written as the app's login, and audited."""
    admin = app_env.headers(role="admin")
    chosen = client.http.put("/api/admin/slot-publication", headers={**admin, **JSON},
                             body=json.dumps({"clientId": 1, "public": True, "bookingPhone": "+1 555 0100"}))
    assert chosen.status_code == 200, chosen.body
    assert app_env.sql("SELECT publish_slots, booking_phone FROM tenant WHERE id = 1")[0] == [True, "+1 555 0100"]
    assert app_env.sql("SELECT details->>'public' FROM audit_event WHERE action = 'publication.set'") == [["true"]]
