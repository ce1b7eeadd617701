"""Private PostgreSQL databases on the server of DATABASE_URL (or the PG* variables; else
127.0.0.1:5432 as postgres), for tests, the bench and the tools: created migrated under a
unique name, reached with plain connections, dropped afterwards."""
from __future__ import annotations

import os
import uuid
from typing import Any, Mapping, Optional

import pg8000.native

from chalicelib.db import migrate
from chalicelib.db.connection import connection_arguments
from chalicelib.settings import DatabaseSettings, database_settings


def server(env: Optional[Mapping[str, str]] = None) -> DatabaseSettings:
    """The server's settings, on its maintenance database (where CREATE DATABASE runs)."""
    return database_settings(os.environ if env is None else env).with_database("postgres")


def connect(database: str, **extra: Any) -> pg8000.native.Connection:
    """A plain connection to `database` in UTC, without socket timeout (seeding a large
    dataset takes minutes)."""
    return pg8000.native.Connection(**connection_arguments(server()), database=database,
                                    startup_params={"TimeZone": "UTC"}, **extra)


def database_url(name: str) -> str:
    """The URL of the database `name` on the server."""
    return server().with_database(name).url


def exists(name: str) -> bool:
    """Whether the server has a database `name`."""
    admin = connect("postgres")
    try:
        return bool(admin.run("SELECT 1 FROM pg_database WHERE datname = :n", n=name))
    finally:
        admin.close()


def create_database(prefix: str = "hb_test") -> str:
    """A new, empty, migrated database under a unique name starting with `prefix`."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    create_named(name)
    return name


def create_named(name: str, replace: bool = False) -> None:
    """Create the migrated database `name` (`replace`: drop one of that name first)."""
    admin = connect("postgres")
    try:
        if replace:
            migrate.drop_database(admin, name)
        migrate.create_migrated(admin, name, connect)
    finally:
        admin.close()


def drop_database(name: str) -> None:
    """Drop the database `name` if it exists."""
    admin = connect("postgres")
    try:
        migrate.drop_database(admin, name)
    finally:
        admin.close()
