"""Ordered SQL migrations from chalicelib/db/migrations, applied once each."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pg8000.native

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_LOCK_ID = 7_100_000


def pending(conn: pg8000.native.Connection) -> list[Path]:
    """Migration files not yet recorded in schema_migration, in name order."""
    conn.run(
        "CREATE TABLE IF NOT EXISTS schema_migration ("
        " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    done = {row[0] for row in conn.run("SELECT name FROM schema_migration")}
    return [p for p in sorted(MIGRATIONS_DIR.glob("*.sql")) if p.name not in done]


def apply_all(conn: pg8000.native.Connection) -> list[str]:
    """Apply every pending migration, each in its own transaction; returns their names.

    An advisory lock keeps two concurrent runs from applying the same file twice.
    """
    conn.run("SELECT pg_advisory_lock(:id)", id=_LOCK_ID)
    try:
        applied = []
        for path in pending(conn):
            conn.run("BEGIN")
            try:
                conn.run(path.read_text())
                conn.run("INSERT INTO schema_migration (name) VALUES (:n)", n=path.name)
                conn.run("COMMIT")
            except BaseException:
                conn.run("ROLLBACK")
                raise
            applied.append(path.name)
        return applied
    finally:
        conn.run("SELECT pg_advisory_unlock(:id)", id=_LOCK_ID)


def ensure_database(admin: pg8000.native.Connection, name: str) -> bool:
    """Create database `name` if it does not exist; True when it was created."""
    if admin.run("SELECT 1 FROM pg_database WHERE datname = :n", n=name):
        return False
    admin.run(f'CREATE DATABASE "{name.replace(chr(34), "")}"')
    return True


def create_migrated(admin: pg8000.native.Connection, name: str,
                    open_database: Callable[[str], pg8000.native.Connection]) -> None:
    """Create database `name` if missing and apply every migration to it."""
    ensure_database(admin, name)
    conn = open_database(name)
    try:
        apply_all(conn)
    finally:
        conn.close()


def drop_database(admin: pg8000.native.Connection, name: str) -> None:
    """End every session on database `name` and drop it (tests and benchmarks)."""
    admin.run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n", n=name)
    admin.run(f'DROP DATABASE IF EXISTS "{name.replace(chr(34), "")}"')
