"""Secrets Manager values into settings, and re-reading them after a rotation.

Every test that reads a secret runs against a local endpoint through localstack-client:
moto's server in `make test`, real LocalStack under `tools/localstack_test.sh` (which sets
AWS_ENDPOINT_URL; see tests/helpers_aws.py)."""
from __future__ import annotations

import json
import os
import uuid
from typing import Any, Iterator

import pytest
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.secrets import SecretsProvider

from chalicelib.secrets import load_secret_values, secret_settings
from chalicelib.settings import DatabaseSettings, load_settings
from tests.helpers_aws import aws_client, aws_endpoint  # noqa: F401  (aws_endpoint: a fixture)

ARN_VARIABLES = ("DB_SECRET_ARN", "REDIS_SECRET_ARN", "AUTH_SECRET_ARN")
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETS_MANAGER")
SETTINGS_VARIABLES = ("DATABASE_URL", "REDIS_URL", "AUTH_SECRET", "REDIS_DISABLED")
SETTINGS_PREFIXES = ("PG", "REDIS_")

RDS_SECRET = {
    "engine": "postgres", "username": "hb_app", "password": "p@ss:/w rd", "host": "db-1.internal",
    "port": 5432, "dbname": "hospital", "dbInstanceIdentifier": "hospital-db",
}


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Dummy credentials, no endpoint or settings variables, and an empty Powertools cache."""
    for name in list(os.environ):
        if (name in SETTINGS_VARIABLES or name in ARN_VARIABLES or name in ENDPOINT_VARIABLES
                or name.startswith(SETTINGS_PREFIXES) or name in {"AWS_PROFILE", "AWS_DEFAULT_PROFILE"}):
            monkeypatch.delenv(name)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    parameters.clear_caches()
    yield
    parameters.clear_caches()


def create_secret(client: Any, value: str | dict[str, Any] | bytes) -> str:
    """Create a uniquely named secret and return its ARN."""
    name = f"hb-test-{uuid.uuid4().hex[:8]}"
    if isinstance(value, bytes):
        return client.create_secret(Name=name, SecretBinary=value)["ARN"]
    text = value if isinstance(value, str) else json.dumps(value)
    return client.create_secret(Name=name, SecretString=text)["ARN"]


@pytest.fixture()
def secretsmanager(aws_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A Secrets Manager client on the local endpoint, which the app's reads use too."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_endpoint)
    return aws_client(aws_endpoint, "secretsmanager")


def test_secret_settings_maps_aws_keys() -> None:
    assert secret_settings("DB_SECRET_ARN", json.dumps(RDS_SECRET)) == {
        "PGUSER": "hb_app", "PGPASSWORD": "p@ss:/w rd", "PGHOST": "db-1.internal",
        "PGPORT": "5432", "PGDATABASE": "hospital",
    }
    assert secret_settings("REDIS_SECRET_ARN", '{"authToken": "tok"}') == {"REDIS_PASSWORD": "tok"}
    assert secret_settings("REDIS_SECRET_ARN", '{"password": "pw", "REDIS_HOST": "r"}') == {
        "REDIS_PASSWORD": "pw", "REDIS_HOST": "r"}
    assert secret_settings("AUTH_SECRET_ARN", "plain-secret") == {"AUTH_SECRET": "plain-secret"}
    assert secret_settings("AUTH_SECRET_ARN", "12345") == {"AUTH_SECRET": "12345"}
    assert secret_settings("DB_SECRET_ARN", "not json") == {}


def test_no_arn_reads_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_aws(*args: object, **kwargs: object) -> None:
        raise AssertionError("Secrets Manager must not be called")

    monkeypatch.setattr(parameters, "get_secret", no_aws)
    assert load_secret_values() == {}


def test_rds_style_secrets_into_settings(secretsmanager: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_SECRET_ARN", create_secret(secretsmanager, RDS_SECRET))
    monkeypatch.setenv("REDIS_SECRET_ARN", create_secret(secretsmanager, {"authToken": "redis-token"}))
    monkeypatch.setenv("AUTH_SECRET_ARN", create_secret(secretsmanager, "jwt-signing-secret-0123456789abcdef"))

    values = load_secret_values()
    assert values == {
        "PGUSER": "hb_app", "PGPASSWORD": "p@ss:/w rd", "PGHOST": "db-1.internal", "PGPORT": "5432",
        "PGDATABASE": "hospital", "REDIS_PASSWORD": "redis-token", "AUTH_SECRET": "jwt-signing-secret-0123456789abcdef",
    }
    settings = load_settings(secrets=values)
    assert settings.db == DatabaseSettings(host="db-1.internal", port=5432, user="hb_app",
                                           password="p@ss:/w rd", database="hospital")
    assert (settings.redis.host, settings.redis.password, settings.redis.tls) == ("127.0.0.1", "redis-token", False)
    assert settings.auth_secret == "jwt-signing-secret-0123456789abcdef"


def test_url_style_and_binary_secrets_into_settings(secretsmanager: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    db_url = "postgresql://app:s%40cret@pg.internal:6543/hb?sslmode=require"
    monkeypatch.setenv("DB_SECRET_ARN", create_secret(secretsmanager, {"DATABASE_URL": db_url}))
    monkeypatch.setenv("REDIS_SECRET_ARN",
                       create_secret(secretsmanager, b'{"REDIS_URL": "rediss://:pw@cache.internal:6380/2"}'))
    monkeypatch.setenv("AUTH_SECRET_ARN",
                       create_secret(secretsmanager, {"AUTH_SECRET": "from-json-secret-0123456789abcdef0123"}))

    settings = load_settings(secrets=load_secret_values())
    assert settings.db == DatabaseSettings(host="pg.internal", port=6543, user="app", password="s@cret",
                                           database="hb", ssl_mode="require")
    assert (settings.redis.host, settings.redis.port, settings.redis.db) == ("cache.internal", 6380, 2)
    assert (settings.redis.password, settings.redis.tls) == ("pw", True)
    assert settings.auth_secret == "from-json-secret-0123456789abcdef0123"


def test_environment_wins_over_secrets(secretsmanager: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_SECRET_ARN", create_secret(secretsmanager, RDS_SECRET))
    monkeypatch.setenv("REDIS_SECRET_ARN", create_secret(secretsmanager, {"password": "from-secret"}))
    monkeypatch.setenv("AUTH_SECRET_ARN", create_secret(secretsmanager, "from-secret"))
    # What infra/resources.json sets on the functions, plus two explicit overrides.
    monkeypatch.setenv("PGHOST", "proxy.internal")
    monkeypatch.setenv("PGSSLMODE", "verify-full")
    monkeypatch.setenv("REDIS_HOST", "primary.cache.internal")
    monkeypatch.setenv("REDIS_TLS", "1")
    monkeypatch.setenv("REDIS_PASSWORD", "from-env")
    monkeypatch.setenv("AUTH_SECRET", "from-env-secret-0123456789abcdef01234")

    settings = load_settings(secrets=load_secret_values())
    assert (settings.db.host, settings.db.user, settings.db.password) == ("proxy.internal", "hb_app", "p@ss:/w rd")
    assert settings.db.ssl_mode == "verify-full"
    assert (settings.redis.host, settings.redis.tls, settings.redis.password) == (
        "primary.cache.internal", True, "from-env")
    assert settings.auth_secret == "from-env-secret-0123456789abcdef01234"


def test_values_are_cached_within_max_age(secretsmanager: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    arn = create_secret(secretsmanager, "first")
    monkeypatch.setenv("AUTH_SECRET_ARN", arn)
    assert load_secret_values() == {"AUTH_SECRET": "first"}

    secretsmanager.put_secret_value(SecretId=arn, SecretString="second")
    assert load_secret_values() == {"AUTH_SECRET": "first"}

    def no_aws(self: SecretsProvider, name: str, **sdk_options: object) -> str:
        raise AssertionError("cached value expected, Secrets Manager called")

    with monkeypatch.context() as patch:
        patch.setattr(SecretsProvider, "_get", no_aws)
        assert load_secret_values() == {"AUTH_SECRET": "first"}

    parameters.clear_caches()
    assert load_secret_values() == {"AUTH_SECRET": "second"}


@pytest.mark.parametrize("endpoint_variable", ENDPOINT_VARIABLES)
def test_reads_through_a_local_endpoint(aws_endpoint: str, endpoint_variable: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    client = aws_client(aws_endpoint, "secretsmanager")
    assert client.meta.endpoint_url == aws_endpoint
    monkeypatch.setenv("DB_SECRET_ARN", create_secret(client, {"username": "hb_app", "password": "pw"}))
    monkeypatch.setenv("AUTH_SECRET_ARN", create_secret(client, "local-secret-0123456789abcdef0123456"))
    monkeypatch.setenv(endpoint_variable, aws_endpoint)

    values = load_secret_values()
    assert values == {"PGUSER": "hb_app", "PGPASSWORD": "pw", "AUTH_SECRET": "local-secret-0123456789abcdef0123456"}
    assert parameters.base.DEFAULT_PROVIDERS["secrets"].client.meta.endpoint_url == aws_endpoint
    settings = load_settings(secrets=values)
    assert (settings.db.user, settings.db.password, settings.auth_secret) == (
        "hb_app", "pw", "local-secret-0123456789abcdef0123456")


# The test server, read before the autouse fixture clears the settings variables.
_SERVER = load_settings().db


def test_rotated_database_credentials_are_read_again_after_a_refusal(secretsmanager: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A container whose database secret was rotated reconnects with the new credentials as
    soon as the old ones are refused, without waiting for the secrets cache to expire. The
    rotation goes as Secrets Manager's does: the new value is staged AWSPENDING first and
    becomes AWSCURRENT at the end; only AWSCURRENT is ever used."""
    from chalicelib import runtime
    from chalicelib.db import connection as db

    old = {"username": "hb_rotated_away", "password": "old", "host": _SERVER.host, "port": _SERVER.port,
           "dbname": "postgres"}
    arn = create_secret(secretsmanager, old)
    monkeypatch.setenv("DB_SECRET_ARN", arn)
    monkeypatch.setattr(db, "_last_credentials_refresh", 0.0)
    runtime.reset()
    try:
        with pytest.raises(db.DatabaseUnavailable):
            db.scalar("SELECT 1")  # no such role: refused; the secret read again is the same, so it stays refused
        new = {**old, "username": _SERVER.user, "password": _SERVER.password or "unused-with-trust-auth"}
        secretsmanager.put_secret_value(SecretId=arn, SecretString=json.dumps(new), VersionStages=["AWSPENDING"])
        monkeypatch.setattr(db, "_last_credentials_refresh", 0.0)
        with pytest.raises(db.DatabaseUnavailable):
            db.scalar("SELECT 1")  # read again, but AWSCURRENT still holds the old credentials
        # The rotation's last step makes the new value AWSCURRENT. (Not by moving the stage:
        # moto 5.2.5's update_secret_version_stage leaves GetSecretValue on the old version.)
        secretsmanager.put_secret_value(SecretId=arn, SecretString=json.dumps(new))
        with pytest.raises(db.DatabaseUnavailable):
            db.scalar("SELECT 1")  # within the refresh interval: the secret is not read again yet
        monkeypatch.setattr(db, "_last_credentials_refresh", 0.0)  # the interval has passed
        assert db.scalar("SELECT current_user") == _SERVER.user
    finally:
        runtime.reset()
