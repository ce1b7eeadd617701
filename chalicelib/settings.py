"""One frozen settings object, read lazily from the process environment.

`chalice local` applies `.chalice/config.json` over the shell's environment and the
Chalice test client swaps `os.environ` only during a call, so nothing here is read at
import time: `get_settings()` reads on first use and `reset_settings()` forgets.
In AWS, credentials come from Secrets Manager (see `chalicelib.secrets`).
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field, replace
from typing import Mapping
from urllib.parse import parse_qsl, quote, unquote, urlparse, urlsplit

# Per-resource lifetime overrides: CACHE_TTL_<RESOURCE> (fresh seconds) and
# CACHE_STALE_<RESOURCE> (stale window seconds); the defaults are declared with each
# resource in chalicelib/booking/resources.py.
FRESH_PREFIX = "CACHE_TTL_"
STALE_PREFIX = "CACHE_STALE_"


@dataclass(frozen=True)
class DatabaseSettings:
    """Where and how to reach PostgreSQL."""

    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: str | None = None
    database: str = "hospital"
    ssl_mode: str = "disable"  # disable | require | verify-full
    ssl_root_cert: str | None = None
    statement_timeout_ms: int = 5000
    connect_timeout_s: float = 5.0
    prepared_statements: bool = True  # named, per connection; see docs/deployment.md (RDS Proxy)
    pool_size: int = 4  # connections a process keeps at most (a Lambda container uses one)
    pool_wait_ms: int = 2000  # how long a request waits for a busy pool before a 503

    @property
    def socket_path(self) -> str | None:
        """The Unix socket file when `host` is a directory (libpq's rule), else None."""
        if self.host.startswith("/"):
            return f"{self.host.rstrip('/')}/.s.PGSQL.{self.port}"
        return None

    @property
    def url(self) -> str:
        """The settings as a postgresql:// URL (password included: never log it)."""
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        database = quote(self.database, safe="")
        if self.socket_path is not None:
            return f"postgresql://{auth}@/{database}?host={quote(self.host, safe='/')}&port={self.port}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"postgresql://{auth}@{host}:{self.port}/{database}"

    def with_database(self, database: str) -> "DatabaseSettings":
        """The same server and credentials, another database."""
        return replace(self, database=database)


@dataclass(frozen=True)
class RedisSettings:
    """Where and how to reach Redis; `enabled=False` runs without the L2 tier."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 6379
    password: str | None = None
    username: str | None = None
    db: int = 0
    tls: bool = False
    connect_timeout_s: float = 0.05
    read_timeout_s: float = 0.05
    breaker_failures: int = 3
    breaker_cooldown_s: float = 5.0
    cluster: bool = False  # REDIS_CLUSTER=1: the URL names any node of a Redis Cluster


@dataclass(frozen=True)
class CacheSettings:
    """Cache behaviour; lifetime overrides are seconds by resource name."""

    namespace: str = "hb"
    fresh_overrides: Mapping[str, float] = field(default_factory=dict)
    stale_overrides: Mapping[str, float] = field(default_factory=dict)
    jitter: float = 0.1
    l1_max_entries: int = 5000
    l1_max_bytes: int = 32 * 1024 * 1024
    l1_max_age_s: float = 300.0
    l1_max_age_untracked_s: float = 0.5
    tracking_idle_bound_s: float = 60.0
    tracking_lease_s: float = 0.5  # L1 trusts tracked versions only while a PONG this recent
    outbox_check_every_s: float = 1.0  # a critical read looks at the invalidation outbox
    max_stale_age_s: float = 300.0
    lock_ttl_ms: int = 3000
    lock_wait_s: float = 1.0


@dataclass(frozen=True)
class OidcSettings:
    """The hospital's OpenID Connect provider (API.md, "OpenID Connect"); `issuer` empty
    means none is configured."""

    issuer: str = ""
    audience: str = ""
    jwks_url: str = ""  # empty: the jwks_uri of the issuer's discovery document
    jwks_min_refresh_s: float = 60.0  # an unknown kid refetches the JWKS at most this often
    tenant_claim: str = "tenant"
    role_claim: str = "role"
    patient_claim: str = "patientId"

    @property
    def enabled(self) -> bool:
        return bool(self.issuer)


@dataclass(frozen=True)
class Settings:
    """Everything the API, the jobs and the CLI read from the environment."""

    db: DatabaseSettings
    redis: RedisSettings
    cache: CacheSettings
    auth_secret: str
    # DATABASE_READ_URL: a read replica for the cached reads' loaders (None: all on `db`);
    # its unset parts (credentials, TLS, timeouts, pool) are the primary's.
    db_read: DatabaseSettings | None = None
    replica_wait_ms: int = 50  # DB_REPLICA_WAIT_MS: how long a fill waits for the replica to replay
    replica_cooldown_s: float = 5.0  # DB_REPLICA_COOLDOWN: a failed replica is not tried for this long
    auth_max_token_ttl_s: int = 24 * 3600
    patient_max_future_bookings: int = 5
    stage: str = "dev"
    refresh_lock_id: int = 7_100_001
    refresh_timeout_ms: int = 120_000
    slot_horizon_days: int = 30
    log_level: str = "INFO"
    oidc: OidcSettings = OidcSettings()
    shared_secret_tokens: bool = True  # AUTH_SHARED_SECRET_TOKENS=0 refuses the HS256 tokens


def _oidc(merged: Mapping[str, str]) -> OidcSettings:
    """AUTH_OIDC_* and the claim names; ValueError naming the variable when unusable."""
    issuer = merged.get("AUTH_OIDC_ISSUER", "").strip()
    if not issuer:
        return OidcSettings()
    if not issuer.startswith("https://"):
        raise ValueError("AUTH_OIDC_ISSUER must be an https:// URL")
    audience = merged.get("AUTH_OIDC_AUDIENCE", "").strip()
    if not audience:
        raise ValueError("AUTH_OIDC_AUDIENCE must be set with AUTH_OIDC_ISSUER (the client id tokens are for)")
    jwks_url = merged.get("AUTH_OIDC_JWKS_URL", "").strip()
    if jwks_url and not jwks_url.startswith(("https://", "http://127.0.0.1:", "http://localhost:")):
        raise ValueError("AUTH_OIDC_JWKS_URL must be an https:// URL (plain http only on this machine's loopback)")
    return OidcSettings(
        issuer=issuer, audience=audience, jwks_url=jwks_url,
        jwks_min_refresh_s=float(_bounded_int(merged.get("AUTH_JWKS_MIN_REFRESH_S", "60"),
                                              "AUTH_JWKS_MIN_REFRESH_S", 0, 86400)),
        tenant_claim=merged.get("AUTH_TENANT_CLAIM", "tenant") or "tenant",
        role_claim=merged.get("AUTH_ROLE_CLAIM", "role") or "role",
        patient_claim=merged.get("AUTH_PATIENT_CLAIM", "patientId") or "patientId")


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _bounded_int(text: str, name: str, low: int, high: int) -> int:
    """An integer setting within [low, high]; ValueError naming the variable otherwise."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}")
    return value


def parse_database_url(url: str, name: str = "DATABASE_URL") -> dict[str, object]:
    """Split a postgresql:// URL into DatabaseSettings keyword arguments.

    The host may be a Unix socket directory, as libpq accepts it: percent-encoded in the
    authority (`postgresql://u@%2Fvar%2Frun%2Fpostgresql/db`) or in the query
    (`postgresql://u@/db?host=/var/run/postgresql`, as pgserver hands it out). Query
    parameters `host`, `port`, `user`, `password`, `dbname`, `sslmode` and `sslrootcert`
    override the authority's parts, as in libpq."""
    parsed = urlsplit(url)
    if parsed.scheme not in {"postgres", "postgresql"}:
        raise ValueError(f"{name} must start with postgresql://")
    userinfo, _, hostport = parsed.netloc.rpartition("@")
    out: dict[str, object] = {}
    if userinfo:
        user, has_password, password = userinfo.partition(":")
        if user:
            out["user"] = unquote(user)
        if has_password and password:
            out["password"] = unquote(password)
    host, port = _split_host_port(hostport)
    if host:
        out["host"] = host
    if port is not None:
        out["port"] = port
    if parsed.path and parsed.path != "/":
        out["database"] = unquote(parsed.path.lstrip("/"))
    names = {"host": "host", "user": "user", "password": "password", "dbname": "database",
             "sslmode": "ssl_mode", "sslrootcert": "ssl_root_cert"}
    for name, value in parse_qsl(parsed.query, keep_blank_values=False):
        if name == "port":
            out["port"] = _port(value)
        elif name in names:
            out[names[name]] = value
    return out


def _split_host_port(hostport: str) -> tuple[str, int | None]:
    """`host[:port]` of a URL authority, the host unquoted (it may be an encoded path);
    IPv6 literals in brackets keep their colons."""
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        return host, _port(rest[1:]) if rest.startswith(":") else None
    host, colon, port = hostport.rpartition(":")
    if not colon:
        return unquote(hostport), None
    return unquote(host), _port(port) if port else None


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError("the port in DATABASE_URL must be a number from 1 to 65535")
    return int(text)


def parse_redis_url(url: str) -> dict[str, object]:
    """Split a redis:// or rediss:// URL into RedisSettings keyword arguments."""
    parsed = urlparse(url)
    if parsed.scheme not in {"redis", "rediss"}:
        raise ValueError("REDIS_URL must start with redis:// or rediss://")
    out: dict[str, object] = {"tls": parsed.scheme == "rediss"}
    if parsed.hostname:
        out["host"] = parsed.hostname
    if parsed.port:
        out["port"] = parsed.port
    if parsed.username:
        out["username"] = unquote(parsed.username)
    if parsed.password:
        out["password"] = unquote(parsed.password)
    if parsed.path and parsed.path.strip("/"):
        out["db"] = int(parsed.path.strip("/"))
    return out


def _overrides(env: Mapping[str, str], prefix: str) -> dict[str, float]:
    """Seconds by resource name from every `<prefix><RESOURCE>` variable."""
    out: dict[str, float] = {}
    for key, text in env.items():
        if key.startswith(prefix) and len(key) > len(prefix):
            try:
                seconds = float(text)
            except ValueError:
                raise ValueError(f"{key} must be a number of seconds") from None
            if not seconds >= 0:
                raise ValueError(f"{key} must not be negative")
            out[key[len(prefix):].lower()] = seconds
    return out


def load_settings(env: Mapping[str, str] | None = None, secrets: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from an environment mapping (default `os.environ`) and optional secrets.

    `secrets` (from Secrets Manager in AWS) supplies DATABASE_URL, REDIS_URL or
    REDIS_PASSWORD and AUTH_SECRET; the process environment wins where both set a value.
    """
    env = dict(os.environ if env is None else env)
    merged = {**(secrets or {}), **{k: v for k, v in env.items() if v != ""}}

    db_kwargs: dict[str, object] = {}
    if merged.get("DATABASE_URL"):
        db_kwargs.update(parse_database_url(merged["DATABASE_URL"]))
    else:
        for key, field_name, conv in (
            ("PGHOST", "host", str), ("PGPORT", "port", int), ("PGUSER", "user", str),
            ("PGPASSWORD", "password", str), ("PGDATABASE", "database", str),
        ):
            if merged.get(key):
                db_kwargs[field_name] = conv(merged[key])
    if merged.get("PGSSLMODE"):
        db_kwargs["ssl_mode"] = merged["PGSSLMODE"]
    if merged.get("PGSSLROOTCERT"):
        db_kwargs["ssl_root_cert"] = merged["PGSSLROOTCERT"]
    if merged.get("DB_STATEMENT_TIMEOUT_MS"):
        db_kwargs["statement_timeout_ms"] = int(merged["DB_STATEMENT_TIMEOUT_MS"])
    if merged.get("DB_PREPARED_STATEMENTS"):
        db_kwargs["prepared_statements"] = _bool(merged["DB_PREPARED_STATEMENTS"])
    if merged.get("DB_POOL_SIZE"):
        db_kwargs["pool_size"] = _bounded_int(merged["DB_POOL_SIZE"], "DB_POOL_SIZE", 1, 100)
    if merged.get("DB_POOL_WAIT_MS"):
        db_kwargs["pool_wait_ms"] = _bounded_int(merged["DB_POOL_WAIT_MS"], "DB_POOL_WAIT_MS", 0, 60_000)

    redis_kwargs: dict[str, object] = {}
    if merged.get("REDIS_URL"):
        redis_kwargs.update(parse_redis_url(merged["REDIS_URL"]))
    else:
        if _bool(merged.get("REDIS_DISABLED")):
            redis_kwargs["enabled"] = False
        for key, field_name, conv in (
            ("REDIS_HOST", "host", str), ("REDIS_PORT", "port", int), ("REDIS_PASSWORD", "password", str),
        ):
            if merged.get(key):
                redis_kwargs[field_name] = conv(merged[key])
        if merged.get("REDIS_TLS"):
            redis_kwargs["tls"] = _bool(merged["REDIS_TLS"])
    if merged.get("REDIS_CLUSTER"):
        redis_kwargs["cluster"] = _bool(merged["REDIS_CLUSTER"])
    for key, field_name, conv in (
        ("REDIS_CONNECT_TIMEOUT", "connect_timeout_s", float),
        ("REDIS_READ_TIMEOUT", "read_timeout_s", float),
        ("REDIS_BREAKER_FAILURES", "breaker_failures", int),
        ("REDIS_BREAKER_COOLDOWN", "breaker_cooldown_s", float),
    ):
        if merged.get(key):
            redis_kwargs[field_name] = conv(merged[key])

    cache_kwargs: dict[str, object] = {"fresh_overrides": _overrides(merged, FRESH_PREFIX),
                                       "stale_overrides": _overrides(merged, STALE_PREFIX)}
    for key, field_name, conv in (
        ("CACHE_NAMESPACE", "namespace", str),
        ("CACHE_JITTER", "jitter", float),
        ("CACHE_L1_MAX_ENTRIES", "l1_max_entries", int),
        ("CACHE_L1_MAX_BYTES", "l1_max_bytes", int),
        ("CACHE_L1_MAX_AGE", "l1_max_age_s", float),
        ("CACHE_L1_MAX_AGE_UNTRACKED", "l1_max_age_untracked_s", float),
        ("CACHE_TRACKING_LEASE", "tracking_lease_s", float),
        ("CACHE_OUTBOX_CHECK_EVERY", "outbox_check_every_s", float),
        ("CACHE_MAX_STALE_AGE", "max_stale_age_s", float),
        ("CACHE_LOCK_WAIT", "lock_wait_s", float),
    ):
        if merged.get(key):
            cache_kwargs[field_name] = conv(merged[key])

    db = DatabaseSettings(**db_kwargs)  # type: ignore[arg-type]
    db_read = None
    if merged.get("DATABASE_READ_URL"):
        db_read = replace(db, **parse_database_url(merged["DATABASE_READ_URL"], "DATABASE_READ_URL"))  # type: ignore[arg-type]

    return Settings(
        db=db,
        db_read=db_read,
        replica_wait_ms=_bounded_int(merged.get("DB_REPLICA_WAIT_MS", "50"), "DB_REPLICA_WAIT_MS", 0, 10_000),
        replica_cooldown_s=float(merged.get("DB_REPLICA_COOLDOWN", "5")),
        redis=RedisSettings(**redis_kwargs),  # type: ignore[arg-type]
        cache=CacheSettings(**cache_kwargs),  # type: ignore[arg-type]
        auth_secret=merged.get("AUTH_SECRET", ""),
        auth_max_token_ttl_s=_bounded_int(merged.get("AUTH_MAX_TOKEN_TTL", "86400"), "AUTH_MAX_TOKEN_TTL",
                                          60, 30 * 86400),
        patient_max_future_bookings=_bounded_int(merged.get("PATIENT_MAX_FUTURE_BOOKINGS", "5"),
                                                 "PATIENT_MAX_FUTURE_BOOKINGS", 1, 1000),
        stage=merged.get("STAGE", "dev"),
        refresh_timeout_ms=int(merged.get("REFRESH_TIMEOUT_MS", 120_000)),
        slot_horizon_days=int(merged.get("SLOT_HORIZON_DAYS", 30)),
        log_level=merged.get("LOG_LEVEL", "INFO"),
        oidc=_oidc(merged),
        shared_secret_tokens=_bool(merged.get("AUTH_SHARED_SECRET_TOKENS"), default=True),
    )


_lock = threading.Lock()
_current: Settings | None = None


def get_settings() -> Settings:
    """The settings of this container, read on first use."""
    global _current
    settings = _current
    if settings is None:
        with _lock:
            if _current is None:
                from chalicelib.secrets import load_secret_values

                _current = load_settings(secrets=load_secret_values())
            settings = _current
    return settings


def reload_settings() -> Settings:
    """Read the environment and the secrets again, bypassing the secrets cache (after the
    database refused the credentials: the secret may have been rotated)."""
    global _current
    from chalicelib.secrets import load_secret_values

    fresh = load_settings(secrets=load_secret_values(force_fetch=True))
    with _lock:
        _current = fresh
    return fresh


def reset_settings() -> None:
    """Forget the settings so the next `get_settings()` reads the environment again."""
    global _current
    with _lock:
        _current = None
