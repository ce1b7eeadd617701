"""One pg8000 connection per container (per thread under `chalice local`), reused.

A broken connection is reconnected once; a second failure raises `DatabaseUnavailable`.
Every connection sets a statement timeout and `TimeZone=UTC`, so `to_json(timestamptz)`
renders RFC 3339 with an offset.

Statements with parameters run as prepared statements kept per connection: pg8000 sends an
unnamed statement as parse, describe and execute in three round trips, a prepared one in
one (and PostgreSQL plans it once, not on every call). `DB_PREPARED_STATEMENTS=0` switches
this off (see docs/deployment.md on RDS Proxy).
"""
from __future__ import annotations

import socket
import ssl
import threading
import time
import weakref
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Callable, Iterator, TypeVar

import pg8000.native
from pg8000.exceptions import DatabaseError, InterfaceError

from chalicelib.settings import DatabaseSettings, get_settings, reload_settings


class DatabaseUnavailable(Exception):
    """PostgreSQL could not be reached or the connection broke twice."""


class WriteOutcomeUnknown(DatabaseUnavailable):
    """The connection broke after a write was sent: it may or may not have been committed."""


_local = threading.local()
T = TypeVar("T")
# SQLSTATEs that mean "the server went away" (admin shutdown, crash, cannot connect).
_GONE = {"57P01", "57P02", "57P03", "08000", "08003", "08006", "08001", "08004"}
# A prepared statement whose plan no longer fits the schema (after a migration).
_STALE_STATEMENT = {"0A000", "26000"}
_STATEMENTS_PER_CONNECTION = 256
# Credentials refused (invalid password; no such role): read the secret again, at most this often.
_CREDENTIALS_REFUSED = {"28P01", "28000"}
CREDENTIALS_REFRESH_S = 10.0
_last_credentials_refresh = 0.0
# A connection idle longer than this is checked (SELECT 1) before a write is sent on it.
IDLE_CHECK_S = 1.0
_statements: "weakref.WeakKeyDictionary[pg8000.native.Connection, dict[str, Any]]" = weakref.WeakKeyDictionary()


def _ssl_context(settings: DatabaseSettings) -> ssl.SSLContext | None:
    if settings.ssl_mode in ("disable", "", "prefer", "allow"):
        return None
    context = ssl.create_default_context(cafile=settings.ssl_root_cert)
    if settings.ssl_mode == "require":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def connect(settings: DatabaseSettings | None = None, database: str | None = None,
            statement_timeout_ms: int | None = None) -> pg8000.native.Connection:
    """Open a new connection with the statement timeout (the settings' unless given; the
    socket timeout follows it) and UTC session time zone.

    With the container's own settings, a refusal of the credentials (a rotated secret)
    reads the settings and secrets again, at most every CREDENTIALS_REFRESH_S seconds, and
    tries once more if the credentials changed."""
    if settings is not None:
        return _open(settings, database, statement_timeout_ms)
    current_db = get_settings().db
    try:
        return _open(current_db, database, statement_timeout_ms)
    except DatabaseUnavailable as exc:
        global _last_credentials_refresh
        now = time.monotonic()
        refused = sqlstate(exc.__cause__) in _CREDENTIALS_REFUSED
        if not refused or now - _last_credentials_refresh < CREDENTIALS_REFRESH_S:
            raise
        _last_credentials_refresh = now
        fresh = reload_settings().db
        if (fresh.user, fresh.password, fresh.host, fresh.port) == (
                current_db.user, current_db.password, current_db.host, current_db.port):
            raise
        return _open(fresh, database, statement_timeout_ms)


def _open(settings: DatabaseSettings, database: str | None,
          statement_timeout_ms: int | None) -> pg8000.native.Connection:
    if statement_timeout_ms is not None:
        settings = replace(settings, statement_timeout_ms=statement_timeout_ms)
    try:
        conn = pg8000.native.Connection(
            user=settings.user,
            host=settings.host,
            port=settings.port,
            password=settings.password,
            database=database or settings.database,
            ssl_context=_ssl_context(settings),
            timeout=settings.connect_timeout_s + settings.statement_timeout_ms / 1000.0,
            application_name="hospital-booking",
            startup_params={"statement_timeout": str(settings.statement_timeout_ms), "TimeZone": "UTC"},
        )
    except (InterfaceError, OSError, socket.timeout) as exc:
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {type(exc).__name__}") from exc
    except DatabaseError as exc:
        raise DatabaseUnavailable("PostgreSQL refused the connection") from exc
    if settings.prepared_statements:
        _statements[conn] = {}
    return conn


def _is_gone(exc: BaseException) -> bool:
    if isinstance(exc, (InterfaceError, OSError, socket.timeout)):
        return True
    if isinstance(exc, DatabaseError) and exc.args and isinstance(exc.args[0], dict):
        return exc.args[0].get("C") in _GONE
    return False


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE code of a pg8000 DatabaseError, if any."""
    if isinstance(exc, DatabaseError) and exc.args and isinstance(exc.args[0], dict):
        return exc.args[0].get("C")
    return None


def execute(conn: pg8000.native.Connection, sql: str, **params: Any) -> list[list[Any]]:
    """Run `sql` on `conn`; with parameters, through this connection's prepared statement
    for that text (prepared on first use)."""
    statement = _prepared(conn, sql) if params else None
    if statement is None:
        return conn.run(sql, **params) or []
    try:
        return statement.run(**params) or []
    except DatabaseError as exc:
        if sqlstate(exc) in _STALE_STATEMENT:
            _statements.get(conn, {}).pop(sql, None)  # prepared again on the next call
        raise


def _prepared(conn: pg8000.native.Connection, sql: str) -> Any:
    """This connection's prepared statement for `sql` (prepared now if new: one round trip);
    None when the connection was opened with prepared statements switched off."""
    prepared = _statements.get(conn)
    if prepared is None:
        return None
    statement = prepared.get(sql)
    if statement is None:
        if len(prepared) >= _STATEMENTS_PER_CONNECTION:
            prepared.clear()  # only dynamic SQL gone wrong gets here; forget rather than grow
        statement = prepared[sql] = conn.prepare(sql)
    return statement


class Transaction:
    """The connection of an open transaction; `run` uses prepared statements."""

    def __init__(self, conn: pg8000.native.Connection) -> None:
        self.conn = conn

    def run(self, sql: str, **params: Any) -> list[list[Any]]:
        """Run one statement inside the transaction."""
        return execute(self.conn, sql, **params)


def current() -> pg8000.native.Connection:
    """This thread's connection, opened on first use."""
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = connect()
        _local.conn = conn
    _local.last_used = time.monotonic()
    return conn


def drop_current() -> None:
    """Close and forget this thread's connection (after a failure, or in tests)."""
    conn = getattr(_local, "conn", None)
    _local.conn = None
    if conn is not None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - the socket may already be gone
            pass


def _with_connection(action: Callable[[pg8000.native.Connection], T]) -> T:
    """`action(connection)` on this thread's connection: reconnect once if the connection
    was broken, prepare once more if a prepared statement went stale (a migration changed
    a table it reads); a second failure raises `DatabaseUnavailable`."""
    for attempt in (1, 2):
        try:
            return action(current())
        except Exception as exc:  # noqa: BLE001 - classified below
            if attempt == 1 and sqlstate(exc) in _STALE_STATEMENT:
                continue
            if not _is_gone(exc) and not isinstance(exc, DatabaseUnavailable):
                raise
            drop_current()
            if attempt == 2 or isinstance(exc, DatabaseUnavailable):
                raise DatabaseUnavailable("PostgreSQL is unreachable") from exc
    raise AssertionError("unreachable")


def run(sql: str, **params: Any) -> list[list[Any]]:
    """Run one statement in autocommit mode (see `_with_connection` for the retries)."""
    return _with_connection(lambda conn: execute(conn, sql, **params))


def scalar(sql: str, **params: Any) -> Any:
    """The first column of the first row, or None."""
    rows = run(sql, **params)
    return rows[0][0] if rows else None


def write(sql: str, **params: Any) -> list[list[Any]]:
    """Run one data-changing statement on its own (autocommit: a single statement is atomic),
    in one round trip. A connection idle for more than IDLE_CHECK_S is checked first, and
    replaced once if broken, before anything is sent; if the connection breaks after the
    statement was sent, the outcome is unknown and `WriteOutcomeUnknown` is raised."""
    idle = time.monotonic() - getattr(_local, "last_used", 0.0)

    def ready(conn: pg8000.native.Connection) -> pg8000.native.Connection:
        if idle > IDLE_CHECK_S:
            conn.run("SELECT 1")
        if params:
            _prepared(conn, sql)
        return conn

    conn = _with_connection(ready)
    for attempt in (1, 2):
        try:
            return execute(conn, sql, **params)
        except Exception as exc:  # noqa: BLE001 - classified below
            if attempt == 1 and sqlstate(exc) in _STALE_STATEMENT:
                continue  # refused while planning: nothing was written
            if not _is_gone(exc):
                raise
            drop_current()
            raise WriteOutcomeUnknown("the connection broke after the write was sent") from exc
    raise AssertionError("unreachable")


@contextmanager
def transaction() -> Iterator[Transaction]:
    """A transaction on this thread's connection: commit on success, roll back on error.

    The connection is checked (and reconnected once) before BEGIN, so a broken idle
    connection never fails a write half-way; a failure inside the transaction is not
    retried, because the caller must decide whether repeating the work is safe.
    """
    conn: pg8000.native.Connection | None = None
    for attempt in (1, 2):
        try:
            conn = current()
            conn.run("BEGIN")
            break
        except Exception as exc:  # noqa: BLE001
            drop_current()
            if attempt == 2 or not (_is_gone(exc) or isinstance(exc, DatabaseUnavailable)):
                raise DatabaseUnavailable("PostgreSQL is unreachable") from exc
    assert conn is not None
    try:
        yield Transaction(conn)
        conn.run("COMMIT")
    except BaseException as exc:
        try:
            conn.run("ROLLBACK")
        except Exception:  # noqa: BLE001 - the connection is gone; drop it
            drop_current()
        if _is_gone(exc):
            drop_current()
            raise DatabaseUnavailable("PostgreSQL went away during a transaction; nothing was committed") from exc
        raise
