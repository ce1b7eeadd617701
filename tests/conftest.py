"""Shared fixtures: a private PostgreSQL database per test session and a Redis key prefix.

Tests talk to the real servers named by DATABASE_URL / REDIS_URL (set by `make test`,
which falls back to embedded servers when nothing is configured).
"""
from __future__ import annotations

import os
from typing import Iterator

import pg8000.native
import pytest

from chalicelib.settings import DatabaseSettings
from support import databases, namespaces
from support.databases import create_database, database_url, drop_database

TEST_AUTH_SECRET = "test-secret-not-for-production-0123456789"


def admin_settings() -> DatabaseSettings:
    """Settings for the server's maintenance database (support/databases.py)."""
    return databases.server()


def admin_connection() -> pg8000.native.Connection:
    return databases.connect("postgres")


def database_connection(name: str) -> pg8000.native.Connection:
    return databases.connect(name)


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
        self.env["REDIS_URL"] = namespaces.redis_url()

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
    env = AppEnv(name, namespaces.new_namespace("hbt"))
    try:
        with patched_environ(env.env):
            yield env
    finally:
        drop_database(name)
        namespaces.delete_namespace(env.namespace)



@pytest.fixture(scope="module")
def client(app_env: AppEnv) -> Iterator[object]:
    """A Chalice test client on the app, bound to `app_env`."""
    from chalice.test import Client

    import app as app_module

    project_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with Client(app_module.app, stage_name="dev", project_dir=project_dir) as test_client:
        yield test_client
