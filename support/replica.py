"""A private PostgreSQL primary and a streaming replica of it (tests, the bench).

`initdb` a primary (wal_level=replica) on a free port, create and seed the app's database
with the project's own migrate and seed functions, `pg_basebackup -R` a replica from it and
start that on another free port. The servers run as the postgres user (PostgreSQL refuses
root), each in a data directory under /tmp, and are stopped by their data directory
(`pg_ctl stop`: only these servers); `close()` stops both and removes the directories,
and is safe to call twice or after a half-done start.
"""
from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from typing import Any, Optional

import pg8000.native

from support.ports import free_port


def _pg_bin() -> str:
    """PostgreSQL's server programs: $PG_BIN, else Debian's newest, else the embedded
    server's (pgserver ships initdb, pg_ctl and pg_basebackup too)."""
    if os.environ.get("PG_BIN"):
        return os.environ["PG_BIN"]
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(candidate, "pg_basebackup")):
            return candidate
    import pgserver  # type: ignore[import-not-found]

    return os.path.join(os.path.dirname(pgserver.__file__), "pginstall", "bin")


PG_BIN = _pg_bin()
DATABASE = "hospital"


def _as_postgres(*argv: str, timeout: float = 60.0) -> None:
    command = list(argv)
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    done = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.decode(errors='replace')[-2000:]}")


class Server:
    """One PostgreSQL server in a data directory; its Unix socket lives there too."""

    def __init__(self, data_dir: str, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.log = data_dir + ".log"

    def start(self) -> "Server":
        _as_postgres(f"{PG_BIN}/pg_ctl", "-D", self.data_dir, "-l", self.log, "-w", "-t", "30",
                     "-o", f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        if os.path.exists(os.path.join(self.data_dir, "postmaster.pid")):
            _as_postgres(f"{PG_BIN}/pg_ctl", "-D", self.data_dir, "-m", mode, "-w", "-t", "30", "stop")

    @property
    def running(self) -> bool:
        return os.path.exists(os.path.join(self.data_dir, "postmaster.pid"))

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = DATABASE) -> pg8000.native.Connection:
        return pg8000.native.Connection(user="postgres", host="127.0.0.1", port=self.port, database=database,
                                        startup_params={"TimeZone": "UTC"}, timeout=10)

    def sql(self, query: str, database: str = DATABASE, **params: Any) -> list:
        """Run one statement on a new connection (so statistics are read fresh)."""
        conn = self.connect(database)
        try:
            return conn.run(query, **params) or []
        finally:
            conn.close()


class PrimaryAndReplica:
    """A seeded primary and its streaming replica (hot standby)."""

    def __init__(self) -> None:
        self.base = tempfile.mkdtemp(prefix="hb-replica-")
        self.primary: Optional[Server] = None
        self.replica: Optional[Server] = None
        atexit.register(self.close)  # also when the test session is interrupted

    def start(self) -> "PrimaryAndReplica":
        if os.geteuid() == 0:  # the servers run as postgres (PostgreSQL refuses root)
            postgres = pwd.getpwnam("postgres")
            os.chown(self.base, postgres.pw_uid, postgres.pw_gid)
        os.chmod(self.base, 0o755)
        primary_dir = os.path.join(self.base, "primary")
        _as_postgres(f"{PG_BIN}/initdb", "-D", primary_dir, "-U", "postgres", "--auth=trust", "-N",
                     "-E", "UTF8", "--locale=C")
        with open(os.path.join(primary_dir, "postgresql.conf"), "a") as conf:
            conf.write("\nwal_level = replica\nmax_wal_senders = 4\nfsync = off\nsynchronous_commit = on\n"
                       "full_page_writes = off\nshared_buffers = 32MB\nmax_connections = 40\n")
        self.primary = Server(primary_dir, free_port()).start()
        self._seed()
        replica_dir = os.path.join(self.base, "replica")
        _as_postgres(f"{PG_BIN}/pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary.port), "-U", "postgres",
                     "-D", replica_dir, "-R", "-X", "stream", "-c", "fast")
        with open(os.path.join(replica_dir, "postgresql.conf"), "a") as conf:
            # Paused replay must not cancel the replica's own queries, however long.
            conf.write("\nhot_standby = on\nmax_standby_streaming_delay = -1\n")
        self.replica = Server(replica_dir, free_port()).start()
        self.wait_caught_up()
        return self

    def _seed(self) -> None:
        from chalicelib.db import migrate
        from chalicelib.db.seed import seed

        assert self.primary is not None
        admin = self.primary.connect("postgres")
        try:
            migrate.create_migrated(admin, DATABASE, lambda name: self.primary.connect(name))  # type: ignore[union-attr]
        finally:
            admin.close()
        conn = self.primary.connect()
        try:
            seed(conn, size="small", seed=1)
        finally:
            conn.close()

    def primary_lsn(self) -> str:
        assert self.primary is not None
        return self.primary.sql("SELECT pg_current_wal_insert_lsn()::text")[0][0]

    def replayed(self, lsn: str) -> bool:
        assert self.replica is not None
        return bool(self.replica.sql("SELECT pg_last_wal_replay_lsn() >= CAST(:l AS pg_lsn)",
                                     database="postgres", l=lsn)[0][0])

    def wait_caught_up(self, timeout: float = 30.0) -> None:
        """Until the replica has replayed everything the primary wrote so far."""
        lsn = self.primary_lsn()
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.replayed(lsn):
                    return
            except Exception:  # noqa: BLE001 - still starting up
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"replica did not replay {lsn} in {timeout}s")
            time.sleep(0.05)

    def pause_replay(self) -> None:
        assert self.replica is not None
        self.replica.sql("SELECT pg_wal_replay_pause()", database="postgres")
        deadline = time.monotonic() + 10
        while self.replica.sql("SELECT pg_get_wal_replay_pause_state()", database="postgres")[0][0] != "paused":
            if time.monotonic() > deadline:
                raise TimeoutError("replay did not pause")
            time.sleep(0.01)

    def resume_replay(self) -> None:
        assert self.replica is not None
        self.replica.sql("SELECT pg_wal_replay_resume()", database="postgres")

    def replica_transactions(self) -> int:
        """Committed transactions of the app's database, as the replica counted them itself
        (read from the `postgres` database, so reading them adds none)."""
        assert self.replica is not None
        return int(self.replica.sql("SELECT xact_commit FROM pg_stat_database WHERE datname = :d",
                                    database="postgres", d=DATABASE)[0][0])

    def close(self) -> None:
        """Stop both servers (immediately: nothing here is worth a checkpoint) and remove
        their directories; safe to repeat."""
        for server in (self.replica, self.primary):
            if server is not None:
                with contextlib.suppress(Exception):
                    server.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)
