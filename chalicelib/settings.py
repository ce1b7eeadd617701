"""One frozen settings object, read lazily from the process environment.

`chalice local` applies `.chalice/config.json` over the shell's environment and the
Chalice test client swaps `os.environ` only during a call, so nothing here is read at
import time: the container's runtime reads them on first use (`get_settings()`) and
`runtime.reset()` forgets them.
In AWS, credentials come from Secrets Manager (see `chalicelib.secrets`).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from typing import Collection, Mapping
from urllib.parse import parse_qsl, quote, unquote, urlparse, urlsplit

from chalicelib import runtime
from chalicelib.settings_reader import EnvReader, SettingsError

# Per-resource lifetime overrides: CACHE_TTL_<RESOURCE> (fresh seconds) and
# CACHE_STALE_<RESOURCE> (stale window seconds); the defaults are declared with each
# resource in chalicelib/booking/resources.py.
FRESH_PREFIX = "CACHE_TTL_"
STALE_PREFIX = "CACHE_STALE_"
MAX_LIFETIME_S = 6 * 86400.0  # the longest freshness, stale window or stale age accepted: under a
# week, the life of a version key (chalicelib/cache/keys.py, VERSION_TTL_S)

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-full")
MIN_SECRET_BYTES = 32
SECRET_RULE = f"must be at least {MIN_SECRET_BYTES} bytes (for example: openssl rand -base64 32)"
PORT_RULE = "its port must be a whole number from 1 to 65535"
NAMESPACE_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")


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

    db: DatabaseSettings = field(default_factory=DatabaseSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    auth_secret: str = ""
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


def _https_url(text: str, loopback_http: bool = False) -> str:
    """An https:// URL (or, with `loopback_http`, plain http on this machine's loopback)."""
    allowed = ("https://", "http://127.0.0.1:", "http://localhost:") if loopback_http else ("https://",)
    if not text.startswith(allowed):
        raise ValueError("must be an https:// URL" + (" (plain http only on loopback)" if loopback_http else ""))
    return text


def _oidc(reader: EnvReader) -> OidcSettings:
    """AUTH_OIDC_* and the claim names (all unused while no issuer is set)."""
    base = OidcSettings()
    issuer = reader.parsed("AUTH_OIDC_ISSUER", _https_url, base.issuer)
    if not issuer:
        return base
    audience = reader.text("AUTH_OIDC_AUDIENCE") or ""
    if not audience:
        reader.refuse("AUTH_OIDC_AUDIENCE", "must be set with AUTH_OIDC_ISSUER (the client id its tokens are for)")
    return OidcSettings(
        issuer=issuer, audience=audience,
        jwks_url=reader.parsed("AUTH_OIDC_JWKS_URL", lambda text: _https_url(text, loopback_http=True), ""),
        jwks_min_refresh_s=reader.seconds("AUTH_JWKS_MIN_REFRESH_S", 0.0, 86400.0, base.jwks_min_refresh_s),
        tenant_claim=reader.text("AUTH_TENANT_CLAIM") or base.tenant_claim,
        role_claim=reader.text("AUTH_ROLE_CLAIM") or base.role_claim,
        patient_claim=reader.text("AUTH_PATIENT_CLAIM") or base.patient_claim)


def parse_database_url(url: str) -> dict[str, object]:
    """Split a postgresql:// URL into DatabaseSettings keyword arguments; ValueError saying
    what is wrong (never quoting the URL, which may carry a password).

    The host may be a Unix socket directory, as libpq accepts it: percent-encoded in the
    authority (`postgresql://u@%2Fvar%2Frun%2Fpostgresql/db`) or in the query
    (`postgresql://u@/db?host=/var/run/postgresql`, as pgserver hands it out). Query
    parameters `host`, `port`, `user`, `password`, `dbname`, `sslmode` and `sslrootcert`
    override the authority's parts, as in libpq."""
    parsed = urlsplit(url)
    if parsed.scheme not in {"postgres", "postgresql"}:
        raise ValueError("must be a postgresql:// URL (postgresql://user:password@host:port/database)")
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
        elif name == "sslmode" and value not in SSL_MODES:
            raise ValueError(f"its sslmode must be one of {', '.join(SSL_MODES)}")
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
        raise ValueError(PORT_RULE)
    return int(text)


def parse_redis_url(url: str) -> dict[str, object]:
    """Split a redis:// or rediss:// URL into RedisSettings keyword arguments; ValueError
    saying what is wrong (never quoting the URL, which may carry a password)."""
    parsed = urlparse(url)
    if parsed.scheme not in {"redis", "rediss"}:
        raise ValueError("must be a redis:// or rediss:// URL (rediss://:password@host:port/db)")
    try:
        port = parsed.port
    except ValueError:
        raise ValueError(PORT_RULE) from None
    out: dict[str, object] = {"tls": parsed.scheme == "rediss"}
    if parsed.hostname:
        out["host"] = parsed.hostname
    if port:
        out["port"] = port
    if parsed.username:
        out["username"] = unquote(parsed.username)
    if parsed.password:
        out["password"] = unquote(parsed.password)
    db = parsed.path.strip("/")
    if db:
        if not db.isdigit():
            raise ValueError("its path must be a database number: a whole number from 0 up")
        out["db"] = int(db)
    return out


def secret_problem(secret: str) -> str | None:
    """What is wrong with the token secret AUTH_SECRET, as a problem line (None: nothing)."""
    if not secret:
        return f"AUTH_SECRET: not set; {SECRET_RULE}"
    if len(secret.encode()) < MIN_SECRET_BYTES:
        return f"AUTH_SECRET: too short; {SECRET_RULE}"
    return None


def require_auth_secret(settings: Settings) -> str:
    """The token secret, for what signs or verifies tokens; SettingsError when it is unset
    (a set but short one is refused with every other setting)."""
    problem = secret_problem(settings.auth_secret)
    if problem is not None:
        raise SettingsError([problem])
    return settings.auth_secret


def _database(reader: EnvReader) -> DatabaseSettings:
    """PostgreSQL: DATABASE_URL, else the PG* variables; then TLS, timeouts and the pool."""
    base = DatabaseSettings()
    separate: dict[str, object] = {
        "host": reader.text("PGHOST") or base.host, "port": reader.whole_number("PGPORT", 1, 65535, base.port),
        "user": reader.text("PGUSER") or base.user, "password": reader.text("PGPASSWORD"),
        "database": reader.text("PGDATABASE") or base.database,
    }
    parts = reader.parsed("DATABASE_URL", parse_database_url, separate)
    return replace(base, **{  # type: ignore[arg-type]
        **parts,
        "ssl_mode": reader.choice("PGSSLMODE", SSL_MODES, str(parts.get("ssl_mode", base.ssl_mode))),
        "ssl_root_cert": reader.text("PGSSLROOTCERT") or parts.get("ssl_root_cert"),
        "statement_timeout_ms": reader.whole_number("DB_STATEMENT_TIMEOUT_MS", 1, 3_600_000,
                                                    base.statement_timeout_ms),
        "prepared_statements": reader.flag("DB_PREPARED_STATEMENTS", base.prepared_statements),
        "pool_size": reader.whole_number("DB_POOL_SIZE", 1, 100, base.pool_size),
        "pool_wait_ms": reader.whole_number("DB_POOL_WAIT_MS", 0, 60_000, base.pool_wait_ms),
    })


def database_settings(env: Mapping[str, str]) -> DatabaseSettings:
    """The database settings of `env` alone (tools that make databases on the server need
    no other setting); SettingsError when they are refused."""
    reader = EnvReader(env)
    settings = _database(reader)
    reader.check()
    return settings


def _read_replica(reader: EnvReader, primary: DatabaseSettings) -> DatabaseSettings | None:
    """DATABASE_READ_URL over the primary's settings (None when unset)."""
    if reader.text("DATABASE_READ_URL") is None:
        return None
    return replace(primary, **reader.parsed("DATABASE_READ_URL", parse_database_url, {}))  # type: ignore[arg-type]


def _redis(reader: EnvReader) -> RedisSettings:
    """Redis: REDIS_URL, else the REDIS_* variables; then timeouts, breaker and cluster mode."""
    base = RedisSettings()
    separate: dict[str, object] = {
        "enabled": not reader.flag("REDIS_DISABLED", not base.enabled),
        "host": reader.text("REDIS_HOST") or base.host, "port": reader.whole_number("REDIS_PORT", 1, 65535, base.port),
        "password": reader.text("REDIS_PASSWORD"), "tls": reader.flag("REDIS_TLS", base.tls),
    }
    return replace(base, **{  # type: ignore[arg-type]
        **reader.parsed("REDIS_URL", parse_redis_url, separate),
        "cluster": reader.flag("REDIS_CLUSTER", base.cluster),
        "connect_timeout_s": reader.seconds("REDIS_CONNECT_TIMEOUT", 0.001, 60.0, base.connect_timeout_s),
        "read_timeout_s": reader.seconds("REDIS_READ_TIMEOUT", 0.001, 60.0, base.read_timeout_s),
        "breaker_failures": reader.whole_number("REDIS_BREAKER_FAILURES", 1, 1000, base.breaker_failures),
        "breaker_cooldown_s": reader.seconds("REDIS_BREAKER_COOLDOWN", 0.0, 3600.0, base.breaker_cooldown_s),
    })


def _namespace(text: str) -> str:
    if not NAMESPACE_PATTERN.fullmatch(text):
        raise ValueError("must be 1 to 64 letters, digits, '_', '-' or '.'")
    return text


def _overrides(reader: EnvReader, prefix: str, resources: Collection[str]) -> dict[str, float]:
    """Seconds by resource name from every `<prefix><RESOURCE>` variable; a name that is no
    cached resource is a problem (a typo would otherwise be ignored)."""
    out: dict[str, float] = {}
    for key in sorted(k for k in reader.values if k.startswith(prefix)):
        resource = key[len(prefix):].lower()
        if resource in resources:
            out[resource] = reader.seconds(key, 0.0, MAX_LIFETIME_S, 0.0)
        else:
            reader.refuse(key, f"names no cached resource; the resources are "
                               f"{', '.join(sorted(r.upper() for r in resources))}")
    return out


def _cache(reader: EnvReader, resources: Collection[str]) -> CacheSettings:
    """Cache behaviour and the per-resource lifetime overrides."""
    base = CacheSettings()
    return CacheSettings(
        namespace=reader.parsed("CACHE_NAMESPACE", _namespace, base.namespace),
        fresh_overrides=_overrides(reader, FRESH_PREFIX, resources),
        stale_overrides=_overrides(reader, STALE_PREFIX, resources),
        jitter=reader.fraction("CACHE_JITTER", 0.5, base.jitter),
        l1_max_entries=reader.whole_number("CACHE_L1_MAX_ENTRIES", 1, 10_000_000, base.l1_max_entries),
        l1_max_bytes=reader.whole_number("CACHE_L1_MAX_BYTES", 1024, 16 * 1024 ** 3, base.l1_max_bytes),
        l1_max_age_s=reader.seconds("CACHE_L1_MAX_AGE", 0.0, 86400.0, base.l1_max_age_s),
        l1_max_age_untracked_s=reader.seconds("CACHE_L1_MAX_AGE_UNTRACKED", 0.0, 3600.0, base.l1_max_age_untracked_s),
        tracking_lease_s=reader.seconds("CACHE_TRACKING_LEASE", 0.05, 60.0, base.tracking_lease_s),
        outbox_check_every_s=reader.seconds("CACHE_OUTBOX_CHECK_EVERY", 0.0, 3600.0, base.outbox_check_every_s),
        max_stale_age_s=reader.seconds("CACHE_MAX_STALE_AGE", 0.0, MAX_LIFETIME_S, base.max_stale_age_s),
        lock_wait_s=reader.seconds("CACHE_LOCK_WAIT", 0.0, 60.0, base.lock_wait_s),
    )


def _auth_secret(reader: EnvReader) -> str:
    """AUTH_SECRET; a set one shorter than MIN_SECRET_BYTES is a problem (unset is refused
    only where tokens are signed or verified: `require_auth_secret`)."""
    secret = reader.text("AUTH_SECRET") or ""
    problem = secret_problem(secret)
    if secret and problem is not None:
        reader.problems.append(problem)
    return secret


def _check_read_elsewhere(reader: EnvReader) -> None:
    """Variables other modules read from the environment themselves (at import, before any
    settings exist, or in the local server): checked here so a typo in them is refused at
    start too."""
    reader.flag("TRACING", False)
    reader.seconds("STATS_PUBLISH_INTERVAL", 0.0, 3600.0, 5.0)
    reader.seconds("STATS_EXPIRY", 0.05, 86400.0, 60.0)
    reader.seconds("METRICS_FLUSH_INTERVAL", 0.0, 86400.0, 10.0)
    reader.seconds("LOCAL_REFRESH_INTERVAL", 0.01, 86400.0, 60.0)
    reader.seconds("LOCAL_EXTEND_INTERVAL", 0.01, 7 * 86400.0, 86400.0)


def _declared_resources() -> frozenset[str]:
    """The cached resources' names (chalicelib/lifetimes.py; imported at the first read of
    the settings, not at import)."""
    from chalicelib.lifetimes import declared_freshness

    return frozenset(declared_freshness())


def load_settings(env: Mapping[str, str] | None = None, secrets: Mapping[str, str] | None = None,
                  resources: Collection[str] | None = None) -> Settings:
    """Build Settings from an environment mapping (default `os.environ`) and optional secrets,
    checking every variable: SettingsError lists every problem at once.

    `secrets` (from Secrets Manager in AWS) supplies DATABASE_URL, REDIS_URL or
    REDIS_PASSWORD and AUTH_SECRET; the process environment wins where both set a value.
    `resources` names the cached resources CACHE_TTL_/CACHE_STALE_ may override (default:
    those declared).
    """
    env = dict(os.environ if env is None else env)
    reader = EnvReader({**(secrets or {}), **{k: v for k, v in env.items() if v != ""}})
    base = Settings()
    db = _database(reader)
    settings = Settings(
        db=db,
        db_read=_read_replica(reader, db),
        replica_wait_ms=reader.whole_number("DB_REPLICA_WAIT_MS", 0, 10_000, base.replica_wait_ms),
        replica_cooldown_s=reader.seconds("DB_REPLICA_COOLDOWN", 0.0, 3600.0, base.replica_cooldown_s),
        redis=_redis(reader),
        cache=_cache(reader, _declared_resources() if resources is None else resources),
        auth_secret=_auth_secret(reader),
        auth_max_token_ttl_s=reader.whole_number("AUTH_MAX_TOKEN_TTL", 60, 30 * 86400, base.auth_max_token_ttl_s),
        patient_max_future_bookings=reader.whole_number("PATIENT_MAX_FUTURE_BOOKINGS", 1, 1000,
                                                        base.patient_max_future_bookings),
        stage=reader.text("STAGE") or base.stage,
        refresh_timeout_ms=reader.whole_number("REFRESH_TIMEOUT_MS", 1000, 3_600_000, base.refresh_timeout_ms),
        slot_horizon_days=reader.whole_number("SLOT_HORIZON_DAYS", 1, 366, base.slot_horizon_days),
        log_level=reader.text("LOG_LEVEL") or base.log_level,
        oidc=_oidc(reader),
        shared_secret_tokens=reader.flag("AUTH_SHARED_SECRET_TOKENS", base.shared_secret_tokens),
    )
    if not settings.shared_secret_tokens and not settings.oidc.enabled:
        reader.refuse("AUTH_SHARED_SECRET_TOKENS", "needs AUTH_OIDC_ISSUER and AUTH_OIDC_AUDIENCE (an identity"
                      " provider): without them no token could be accepted")
    _check_read_elsewhere(reader)
    reader.check()
    return settings


def get_settings() -> Settings:
    """The settings of this container: the runtime's, read on first use (chalicelib/runtime.py)."""
    return runtime.current().settings
