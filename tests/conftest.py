"""Shared fixtures: a private PostgreSQL database per test session and a Redis key prefix.

Tests talk to the real servers named by DATABASE_URL / REDIS_URL (set by `make test`,
which falls back to embedded servers when nothing is configured).
"""
from __future__ import annotations

import os
import uuid
from typing import Iterator

import pg8000.native
import pytest

from chalicelib.db import migrate
from chalicelib.db.connection import connection_arguments
from chalicelib.settings import DatabaseSettings, load_settings

TEST_AUTH_SECRET = "test-secret-not-for-production-0123456789"


def admin_settings() -> DatabaseSettings:
    """Settings for the server's maintenance database (where CREATE DATABASE runs): the
    server of DATABASE_URL (a TCP address or a Unix socket directory)."""
    return load_settings().db.with_database("postgres")


def admin_connection() -> pg8000.native.Connection:
    s = admin_settings()
    return pg8000.native.Connection(**connection_arguments(s), database=s.database)


def create_database(prefix: str = "hb_test") -> str:
    """Create an empty, migrated database and return its name."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = admin_connection()
    try:
        migrate.create_migrated(admin, name, database_connection)
    finally:
        admin.close()
    return name


def drop_database(name: str) -> None:
    admin = admin_connection()
    try:
        migrate.drop_database(admin, name)
    finally:
        admin.close()


def database_connection(name: str) -> pg8000.native.Connection:
    return pg8000.native.Connection(**connection_arguments(admin_settings()), database=name,
                                    startup_params={"TimeZone": "UTC"})


def database_url(name: str) -> str:
    return admin_settings().with_database(name).url


@pytest.fixture()
def fresh_db() -> Iterator[str]:
    """A new migrated database for one test; dropped afterwards. Yields its name."""
    name = create_database()
    try:
        yield name
    finally:
        drop_database(name)


def seeded_database(prefix: str = "hb_test") -> str:
    """A new migrated database with the small demo data (seed 1) and refreshed views."""
    from chalicelib.db.seed import seed

    name = create_database(prefix)
    conn = database_connection(name)
    try:
        seed(conn, size="small", seed=1)
    finally:
        conn.close()
    return name


class AppEnv:
    """The app wired to a private seeded database and a private Redis key namespace."""

    def __init__(self, db_name: str, namespace: str) -> None:
        self.db_name = db_name
        self.namespace = namespace
        self.env = {
            "DATABASE_URL": database_url(db_name),
            "AUTH_SECRET": TEST_AUTH_SECRET,
            "CACHE_NAMESPACE": namespace,
        }
        redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        self.env["REDIS_URL"] = redis_url

    def token(self, tenant: int = 1, role: str = "admin", patient_id: int | None = None, ttl: int = 3600) -> str:
        from chalicelib.auth import issue_token

        return issue_token(TEST_AUTH_SECRET, tenant, role, patient_id=patient_id, ttl_s=ttl)

    def headers(self, tenant: int = 1, role: str = "admin", patient_id: int | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(tenant, role, patient_id)}"}

    def sql(self, query: str, **params: object) -> list:
        conn = database_connection(self.db_name)
        try:
            return conn.run(query, **params)
        finally:
            conn.close()


@pytest.fixture(scope="module")
def app_env() -> Iterator[AppEnv]:
    """A seeded database and Redis namespace for one test module; the app process-wide
    settings point at them while the module runs."""
    from tests.helpers_servers import patched_environ

    name = seeded_database()
    env = AppEnv(name, f"hbt{uuid.uuid4().hex[:10]}")
    try:
        with patched_environ(env.env):
            yield env
    finally:
        drop_database(name)
        _delete_namespace(env.namespace)


def _delete_namespace(namespace: str) -> None:
    import redis

    try:
        client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        if keys:
            client.delete(*keys)
    except redis.RedisError:
        pass


@pytest.fixture(scope="module")
def client(app_env: AppEnv) -> Iterator[object]:
    """A Chalice test client on the app, bound to `app_env`."""
    from chalice.test import Client

    import app as app_module

    project_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with Client(app_module.app, stage_name="dev", project_dir=project_dir) as test_client:
        yield test_client
