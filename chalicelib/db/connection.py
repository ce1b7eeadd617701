"""PostgreSQL connections: a bounded pool shared by the threads of a process, reused.

A thread borrows a connection for one statement or one transaction and gives it back; at
most `DB_POOL_SIZE` connections are open at once, and a thread that finds them all busy
waits up to `DB_POOL_WAIT_MS`, then gets `PoolExhausted` (503). A Lambda container runs one
request at a time, so it holds one connection, as before; `serve` (one thread per client
connection) holds at most the pool's size however many clients come and go.

A broken connection is replaced once; a second failure raises `DatabaseUnavailable`. Every
connection sets a statement timeout and `TimeZone=UTC`, so `to_json(timestamptz)` renders
RFC 3339 with an offset.

Statements with parameters run as prepared statements kept per connection: pg8000 sends an
unnamed statement as parse, describe and execute in three round trips, a prepared one in
one (and PostgreSQL plans it once, not on every call). `DB_PREPARED_STATEMENTS=0` switches
this off (see docs/deployment.md on RDS Proxy). The statements live in the `Session` that
owns the connection and go when it is closed (no weak references that the statements,
pointing back at their connection, would keep alive).
"""
from __future__ import annotations

import socket
import ssl
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Callable, Iterator, NamedTuple, TypeVar

import pg8000.native
from pg8000.exceptions import DatabaseError, InterfaceError

from chalicelib import runtime
from chalicelib.db.errors import DatabaseUnavailable, PoolExhausted, WriteOutcomeUnknown
from chalicelib.settings import DatabaseSettings, get_settings

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


def connection_arguments(settings: DatabaseSettings) -> dict[str, Any]:
    """pg8000's keyword arguments for the settings' server and credentials: TCP host and
    port, or the Unix socket when the host is a directory; TLS as the settings say."""
    arguments: dict[str, Any] = {"user": settings.user, "password": settings.password,
                                 "ssl_context": _ssl_context(settings)}
    if settings.socket_path is not None:
        arguments["unix_sock"] = settings.socket_path
    else:
        arguments.update(host=settings.host, port=settings.port)
    return arguments


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
        refused = _refusal_in_chain(exc) in _CREDENTIALS_REFUSED
        if not refused or now - _last_credentials_refresh < CREDENTIALS_REFRESH_S:
            raise
        _last_credentials_refresh = now
        fresh = runtime.reload_settings().db
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
            **connection_arguments(settings),
            database=database or settings.database,
            timeout=settings.connect_timeout_s + settings.statement_timeout_ms / 1000.0,
            application_name="hospital-booking",
            startup_params={"statement_timeout": str(settings.statement_timeout_ms), "TimeZone": "UTC"},
        )
    except (InterfaceError, OSError, socket.timeout) as exc:
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {type(exc).__name__}") from exc
    except DatabaseError as exc:
        raise DatabaseUnavailable("PostgreSQL refused the connection") from exc
    _send_at_once(conn)
    return conn


def _send_at_once(conn: pg8000.native.Connection) -> None:
    """TCP_NODELAY on a TCP connection: pg8000 writes a message over 8 KiB (a multi-row
    INSERT) in several sends, and Nagle's algorithm would hold the last one until the
    server's delayed ACK, some 40 ms later."""
    sock = getattr(conn, "_usock", None)  # pg8000 keeps its socket there
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _is_gone(exc: BaseException) -> bool:
    if isinstance(exc, (InterfaceError, OSError, socket.timeout)):
        return True
    if isinstance(exc, DatabaseError) and exc.args and isinstance(exc.args[0], dict):
        return exc.args[0].get("C") in _GONE
    return False


def _refusal_in_chain(exc: BaseException) -> str | None:
    """The SQLSTATE of the server's refusal behind a failed connect, if any. The server
    sends its FATAL error and closes at once; when pg8000's own reply write then meets the
    closed socket (often over a Unix socket), the refusal is the context of the BrokenPipe
    error, not its cause."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        state = sqlstate(seen)
        if state is not None:
            return state
        seen = seen.__cause__ or seen.__context__
    return None


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE code of a pg8000 DatabaseError, if any."""
    if isinstance(exc, DatabaseError) and exc.args and isinstance(exc.args[0], dict):
        return exc.args[0].get("C")
    return None


class Session:
    """One open connection and the statements prepared on it (None: preparing is off)."""

    __slots__ = ("conn", "statements", "last_used")

    def __init__(self, conn: pg8000.native.Connection, prepare: bool) -> None:
        self.conn = conn
        self.statements: dict[str, Any] | None = {} if prepare else None
        self.last_used = time.monotonic()

    def prepared(self, sql: str) -> Any:
        """This connection's prepared statement for `sql` (prepared now if new: one round
        trip); None when preparing is switched off."""
        statements = self.statements
        if statements is None:
            return None
        statement = statements.get(sql)
        if statement is None:
            if len(statements) >= _STATEMENTS_PER_CONNECTION:
                statements.clear()  # only dynamic SQL gone wrong gets here; forget rather than grow
            statement = statements[sql] = self.conn.prepare(sql)
        return statement

    def execute(self, sql: str, **params: Any) -> list[list[Any]]:
        """Run `sql`; with parameters, through the prepared statement for that text."""
        statement = self.prepared(sql) if params else None
        if statement is None:
            return self.conn.run(sql, **params) or []
        try:
            return statement.run(**params) or []
        except DatabaseError as exc:
            if sqlstate(exc) in _STALE_STATEMENT and self.statements is not None:
                self.statements.pop(sql, None)  # prepared again on the next call
            raise

    def close(self) -> None:
        """Close the connection; its prepared statements go with it."""
        self.statements = None
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - the socket may already be gone
            pass


class Pool:
    """At most `size` connections, shared by threads; each borrowed by one thread at a time.

    Invariants (under `_lock`): `opened == len(idle) + borrowed <= size`; a Session is either
    in `idle` or held by exactly one borrower; a broken Session is closed and never returns
    to `idle`. Connections open outside the lock, with their place reserved in `opened`.
    `idle` is a stack: the most recently returned connection is borrowed first, so a
    single-threaded container keeps using one connection.
    """

    def __init__(self, size: int, wait_s: float, opener: Callable[[], Session]) -> None:
        self.size = size
        self.wait_s = wait_s
        self._open = opener
        self._lock = threading.Condition()
        self.idle: list[Session] = []
        self.opened = 0

    def acquire(self) -> Session:
        """An idle connection, a new one while fewer than `size` are open, or the first one
        returned within `wait_s`; else `PoolExhausted`."""
        deadline = time.monotonic() + self.wait_s
        with self._lock:
            while not self.idle and self.opened >= self.size:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PoolExhausted(f"all {self.size} database connections stayed busy")
                self._lock.wait(left)
            if self.idle:
                return self.idle.pop()
            self.opened += 1
        try:
            return self._open()
        except BaseException:
            with self._lock:
                self.opened -= 1
                self._lock.notify()
            raise

    def release(self, session: Session, broken: bool = False) -> None:
        """Give a borrowed connection back; a broken one is closed and its place freed."""
        if broken:
            session.close()
        else:
            session.last_used = time.monotonic()
        with self._lock:
            if broken:
                self.opened -= 1
            else:
                self.idle.append(session)
            self._lock.notify()

    def close_idle(self) -> int:
        """Close every idle connection (borrowed ones close when they come back broken, or
        stay until the next `close_idle`); returns how many were closed."""
        with self._lock:
            idle, self.idle = self.idle, []
            self.opened -= len(idle)
            self._lock.notify_all()
        for session in idle:
            session.close()
        return len(idle)


# The WAL insert position after a commit, read on the write's own connection (only while a
# replica is configured): the write's commit position, which the write returns.
_COMMIT_LSN_SQL = "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint"


def new_pool(settings: DatabaseSettings) -> Pool:
    """A pool of primary connections sized by `settings` (the runtime builds the
    container's own; connections open with the settings current then)."""
    return Pool(settings.pool_size, settings.pool_wait_ms / 1000.0, _open_session)


def new_replica_pool(settings: DatabaseSettings) -> Pool:
    """A pool of read-replica connections sized by `settings` (DATABASE_READ_URL's)."""
    return Pool(settings.pool_size, settings.pool_wait_ms / 1000.0, _open_replica_session)


def _open_session() -> Session:
    return Session(connect(), get_settings().db.prepared_statements)


def _open_replica_session() -> Session:
    settings = get_settings().db_read
    assert settings is not None
    return Session(_open(settings, None, None), settings.prepared_statements)


def pool() -> Pool:
    """This container's pool of primary connections (the runtime's)."""
    return runtime.current().primary


def replica_pool() -> Pool | None:
    """This container's pool of read-replica connections, or None when DATABASE_READ_URL
    is not set (the runtime's)."""
    return runtime.current().replica


def _commit_position(session: Session) -> tuple[int | None, bool]:
    """After a commit, with a replica configured: the WAL insert position (at or after the
    commit record's end), for the invalidation's tickets; None without a replica. The flag
    is False when the connection broke (the write is committed; its position is then None)."""
    if replica_pool() is None:
        return None, True
    try:
        return int(session.conn.run(_COMMIT_LSN_SQL)[0][0]), True
    except Exception:  # noqa: BLE001 - committed already; the caller falls back
        return None, False


class Committed(NamedTuple):
    """A committed write's rows and its commit position (None: no replica configured, or
    it could not be read)."""

    rows: list[list[Any]]
    position: int | None


def current_wal_lsn() -> int:
    """The primary's WAL insert position now (any connection: read after a commit returned,
    it is at or after that commit)."""
    return int(scalar(_COMMIT_LSN_SQL))


@contextmanager
def borrowed(source: Pool | None = None) -> Iterator[Session]:
    """A pooled connection (of `source`, the primary's pool by default) for the duration of
    the block; returned broken (closed) when the block fails because the server went away."""
    current = source or pool()
    session = current.acquire()
    broken = False
    try:
        yield session
    except BaseException as exc:
        broken = _is_gone(exc)
        raise
    finally:
        current.release(session, broken)


def _with_connection(action: Callable[[Session], T], source: Pool | None = None) -> T:
    """`action(session)` on a pooled connection: on a fresh one once more if the connection
    was broken, prepare once more if a prepared statement went stale (a migration changed
    a table it reads); a second failure raises `DatabaseUnavailable`."""
    for attempt in (1, 2):
        try:
            with borrowed(source) as session:
                return action(session)
        except PoolExhausted:
            raise
        except Exception as exc:  # noqa: BLE001 - classified below
            if attempt == 1 and sqlstate(exc) in _STALE_STATEMENT:
                continue
            if not _is_gone(exc) and not isinstance(exc, DatabaseUnavailable):
                raise
            if attempt == 2 or isinstance(exc, DatabaseUnavailable):
                raise DatabaseUnavailable("PostgreSQL is unreachable") from exc
    raise AssertionError("unreachable")


def run(sql: str, **params: Any) -> list[list[Any]]:
    """Run one statement in autocommit mode (see `_with_connection` for the retries)."""
    return _with_connection(lambda session: session.execute(sql, **params))


def run_on(source: Pool, sql: str, **params: Any) -> list[list[Any]]:
    """`run` on another pool's connections (the read replica's)."""
    return _with_connection(lambda session: session.execute(sql, **params), source)


def scalar(sql: str, **params: Any) -> Any:
    """The first column of the first row, or None."""
    rows = run(sql, **params)
    return rows[0][0] if rows else None


def _ready_session(sql: str, prepare: bool) -> tuple[Pool, Session]:
    """A borrowed connection checked to be alive (SELECT 1 when idle longer than
    IDLE_CHECK_S) and with `sql` prepared: everything that may fail before a write is sent.
    A broken connection is replaced once."""
    current = pool()
    for attempt in (1, 2):
        session = current.acquire()
        try:
            if time.monotonic() - session.last_used > IDLE_CHECK_S:
                session.conn.run("SELECT 1")
            if prepare:
                session.prepared(sql)
            return current, session
        except Exception as exc:  # noqa: BLE001 - classified below
            gone = _is_gone(exc)
            current.release(session, broken=gone)
            if attempt == 1 and (gone or sqlstate(exc) in _STALE_STATEMENT):
                continue
            if gone:
                raise DatabaseUnavailable("PostgreSQL is unreachable") from exc
            raise
    raise AssertionError("unreachable")


def write(sql: str, **params: Any) -> Committed:
    """Run one data-changing statement on its own (autocommit: a single statement is atomic),
    in one round trip; its rows and commit position. A connection idle for more than IDLE_CHECK_S is checked first, and
    replaced once if broken, before anything is sent; if the connection breaks after the
    statement was sent, the outcome is unknown and `WriteOutcomeUnknown` is raised."""
    current, session = _ready_session(sql, prepare=bool(params))
    broken = False
    try:
        for attempt in (1, 2):
            try:
                rows = session.execute(sql, **params)
                position, ok = _commit_position(session)
                broken = not ok
                return Committed(rows, position)
            except Exception as exc:  # noqa: BLE001 - classified below
                if attempt == 1 and sqlstate(exc) in _STALE_STATEMENT:
                    continue  # refused while planning: nothing was written
                if not _is_gone(exc):
                    raise
                broken = True
                raise WriteOutcomeUnknown("the connection broke after the write was sent") from exc
        raise AssertionError("unreachable")
    finally:
        current.release(session, broken)


class Transaction:
    """The connection of an open transaction; `run` uses prepared statements. Once the
    `transaction()` block has committed, `position` is its commit position (None: no
    replica configured, or it could not be read)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.position: int | None = None

    def run(self, sql: str, **params: Any) -> list[list[Any]]:
        """Run one statement inside the transaction."""
        return self.session.execute(sql, **params)


@contextmanager
def transaction() -> Iterator[Transaction]:
    """A transaction on a pooled connection: commit on success, roll back on error.

    The connection is checked (and replaced once) before BEGIN, so a broken idle
    connection never fails a write half-way; a failure inside the transaction is not
    retried, because the caller must decide whether repeating the work is safe.
    """
    current = pool()
    session: Session | None = None
    for attempt in (1, 2):
        session = current.acquire()
        try:
            session.conn.run("BEGIN")
            break
        except Exception as exc:  # noqa: BLE001
            current.release(session, broken=True)
            session = None
            if attempt == 2 or not _is_gone(exc):
                raise DatabaseUnavailable("PostgreSQL is unreachable") from exc
    assert session is not None
    broken = False
    try:
        tx = Transaction(session)
        yield tx
        session.conn.run("COMMIT")
        tx.position, ok = _commit_position(session)
        broken = not ok
    except BaseException as exc:
        try:
            session.conn.run("ROLLBACK")
        except Exception:  # noqa: BLE001 - the connection is gone; drop it
            broken = True
        if _is_gone(exc):
            broken = True
            raise DatabaseUnavailable("PostgreSQL went away during a transaction; nothing was committed") from exc
        raise
    finally:
        current.release(session, broken)
