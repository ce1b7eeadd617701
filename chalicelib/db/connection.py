"""One pg8000 connection per container (per thread under `chalice local`), reused.

A broken connection is reconnected once; a second failure raises `DatabaseUnavailable`.
Every connection sets a statement timeout and `TimeZone=UTC`, so `to_json(timestamptz)`
renders RFC 3339 with an offset.
"""
from __future__ import annotations

import socket
import ssl
import threading
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Iterator

import pg8000.native
from pg8000.exceptions import DatabaseError, InterfaceError

from chalicelib.settings import DatabaseSettings, get_settings


class DatabaseUnavailable(Exception):
    """PostgreSQL could not be reached or the connection broke twice."""


class Conflict(Exception):
    """A statement broke a unique or exclusion constraint."""


_local = threading.local()
# SQLSTATEs that mean "the server went away" (admin shutdown, crash, cannot connect).
_GONE = {"57P01", "57P02", "57P03", "08000", "08003", "08006", "08001", "08004"}
CONFLICT_CODES = {"23505", "23P01"}


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
    socket timeout follows it) and UTC session time zone."""
    settings = settings or get_settings().db
    if statement_timeout_ms is not None:
        settings = replace(settings, statement_timeout_ms=statement_timeout_ms)
    try:
        return pg8000.native.Connection(
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


def current() -> pg8000.native.Connection:
    """This thread's connection, opened on first use."""
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = connect()
        _local.conn = conn
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


def run(sql: str, **params: Any) -> list[list[Any]]:
    """Run one statement in autocommit mode, reconnecting once if the connection broke."""
    for attempt in (1, 2):
        try:
            return current().run(sql, **params) or []
        except Exception as exc:  # noqa: BLE001 - classified below
            if not _is_gone(exc) and not isinstance(exc, DatabaseUnavailable):
                raise
            drop_current()
            if attempt == 2 or isinstance(exc, DatabaseUnavailable):
                raise DatabaseUnavailable("PostgreSQL is unreachable") from exc
    raise AssertionError("unreachable")


def scalar(sql: str, **params: Any) -> Any:
    """The first column of the first row, or None."""
    rows = run(sql, **params)
    return rows[0][0] if rows else None


@contextmanager
def transaction() -> Iterator[pg8000.native.Connection]:
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
        yield conn
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
