"""L2: Redis, shared by all containers. Storage operations only (get, conditional set,
locks, version reads and bumps), each behind short timeouts and a circuit breaker.

Every method returns a neutral value instead of raising when Redis is unreachable or the
breaker is open, so callers fall back to L1 and PostgreSQL; `available` says which.
"""
from __future__ import annotations

import secrets
from typing import Any, Callable, Optional, Sequence, TypeVar, cast

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from chalicelib.cache.breaker import CircuitBreaker
from chalicelib.cache.keys import VERSION_TTL_S
from chalicelib.cache.stats import TierStats
from chalicelib.cache.tickets import new_token
from chalicelib.settings import RedisSettings

T = TypeVar("T")

# KEYS: version keys..., body key. ARGV: expected version values..., payload, ttl ms.
# Stores the body only while every version is still what the loader read before loading,
# so a reader that loaded pre-write data cannot overwrite a newer body.
_SET_IF_VERSIONS = """
local n = #KEYS - 1
for i = 1, n do
  if redis.call('GET', KEYS[i]) ~= ARGV[i] then return 0 end
end
redis.call('SET', KEYS[#KEYS], ARGV[n + 1], 'PX', ARGV[n + 2])
return 1
"""

# KEYS: version keys. ARGV: a fresh token per key, then the keys' lifetime in seconds.
# Returns each key's value, creating missing ones. Tokens are random, so a version lost with
# a Redis restart (or expired) never repeats.
_GET_OR_INIT_VERSIONS = """
local out = {}
for i = 1, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if not v then
    v = ARGV[i]
    redis.call('SET', KEYS[i], v, 'EX', ARGV[#KEYS + 1])
  end
  out[i] = v
end
return out
"""

# KEYS: version keys. ARGV: a fresh base token per key, then the writer's ticket, then the
# keys' lifetime in seconds. Each key
# gets `base.ticket`, where ticket is the higher (as strings) of the writer's and the one
# the key already carries, so bumps arriving out of commit order never lower a ticket.
# Returns the values set.
_BUMP_WITH_TICKET = """
local n = #KEYS
local ticket = ARGV[n + 1]
local out = {}
for i = 1, n do
  local old = redis.call('GET', KEYS[i])
  local t = ticket
  if old then
    local held = string.match(old, '%.([^.]*)$')
    if held and held > t then t = held end
  end
  local v = ARGV[i] .. '.' .. t
  redis.call('SET', KEYS[i], v, 'EX', ARGV[n + 2])
  out[i] = v
end
return out
"""

# KEYS: version keys. ARGV: a fresh token per key, then the keys' lifetime in seconds.
_BUMP = """
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i], 'EX', ARGV[#KEYS + 1])
end
return 1
"""

_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def make_client(settings: RedisSettings, on_topology_change: Optional[Callable[[], None]] = None,
                **extra: object) -> redis.Redis:
    """A redis-py client with short timeouts and no hidden retries. With `settings.cluster`
    a RedisCluster (seeded from the one node the URL names; redirections are followed, no
    command is retried after an error), and `on_topology_change` is called whenever it sees
    the topology move (a slots refresh, a MOVED that changed an owner, an ASK)."""
    if settings.cluster:
        return make_cluster_client(settings, on_topology_change)  # type: ignore[return-value]
    return redis.Redis(
        host=settings.host, port=settings.port, db=settings.db,
        username=settings.username, password=settings.password, ssl=settings.tls,
        socket_connect_timeout=settings.connect_timeout_s, socket_timeout=settings.read_timeout_s,
        retry=Retry(NoBackoff(), 0), health_check_interval=0, **extra,  # type: ignore[arg-type]
    )


def make_cluster_client(settings: RedisSettings,
                        on_topology_change: Optional[Callable[[], None]] = None) -> "redis.RedisCluster":
    """RedisCluster with the same timeouts as the single-node client and retries off."""
    from redis.cluster import RedisCluster

    from chalicelib.cache import redis_seam

    client = RedisCluster(
        host=settings.host, port=settings.port, username=settings.username, password=settings.password,
        ssl=settings.tls, socket_connect_timeout=settings.connect_timeout_s,
        socket_timeout=settings.read_timeout_s, retry=Retry(NoBackoff(), 0),
        event_dispatcher=redis_seam.topology_dispatcher(on_topology_change),
    )
    if on_topology_change is not None:
        redis_seam.watch_ask(client, on_topology_change)
    return client


class RedisTier:
    """Shared cache storage in Redis, guarded by a circuit breaker."""

    def __init__(self, settings: RedisSettings, stats: TierStats,
                 on_topology_change: Optional[Callable[[], None]] = None,
                 on_recover: Optional[Callable[[], None]] = None) -> None:
        """`on_topology_change`: called when a cluster's layout moves (the cluster client's
        hooks); `on_recover`: called after the first success that follows a failure."""
        self.settings = settings
        self.stats = stats
        # One breaker for the whole of Redis, also on a cluster (docs/caching.md, "Redis
        # Cluster"): `available` feeds container-wide decisions (the L1 verdict, tracking).
        self.breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown_s)
        self._on_topology_change = on_topology_change
        self._client: Optional[redis.Redis] = None
        if not settings.cluster:  # redis.Redis connects lazily; RedisCluster at construction
            self._build()
        self.on_recover = on_recover

    def _build(self) -> redis.Redis:
        client = make_client(self.settings, self._on_topology_change)
        self._set_if_versions = client.register_script(_SET_IF_VERSIONS)
        self._get_or_init = client.register_script(_GET_OR_INIT_VERSIONS)
        self._release = client.register_script(_RELEASE_LOCK)
        self._bump_with_ticket = client.register_script(_BUMP_WITH_TICKET)
        self._bump = client.register_script(_BUMP)
        self._client = client
        return client

    @property
    def client(self) -> redis.Redis:
        """The redis-py client. A RedisCluster asks a node for the slots when built, so it is
        built on first use; until a node answers this raises redis.ConnectionError."""
        client = self._client
        if client is not None:
            return client
        try:
            return self._build()
        except RedisError:
            raise
        except Exception as exc:  # RedisClusterException is no RedisError
            raise redis.ConnectionError(f"no Redis Cluster node answered: {exc}") from exc

    def _script(self, name: str) -> Callable[..., Any]:
        self.client  # noqa: B018 - builds the client (and its scripts) on first use
        return getattr(self, name)

    @property
    def available(self) -> bool:
        """False while the breaker is open (Redis considered down)."""
        return self.breaker.state != "open"

    def _call(self, fn: Callable[[], T], default: T) -> T:
        breaker = self.breaker
        if not breaker.allow():
            return default
        was_failing = breaker.tripped
        try:
            result = fn()
        except (RedisError, OSError):
            self.stats.errors += 1
            self.breaker.failure()
            return default
        self.breaker.success()
        if was_failing and self.on_recover is not None:
            self.on_recover()
        return result

    def fetch(self, version_keys: Sequence[str], body_key: str) -> Optional[list[Optional[bytes]]]:
        """One MGET of the version keys and the body; None when Redis is unavailable."""
        got = self._call(lambda: self.client.mget([*version_keys, body_key]), None)
        return cast("Optional[list[Optional[bytes]]]", got)  # bytes: the client never decodes

    def init_versions(self, version_keys: Sequence[str]) -> Optional[list[bytes]]:
        """Current values of `version_keys`, creating the missing ones; None if unavailable."""
        args = [*(new_token() for _ in version_keys), VERSION_TTL_S]
        return self._call(lambda: self._script('_get_or_init')(keys=list(version_keys), args=args), None)

    def store(self, version_keys: Sequence[str], versions: Sequence[str], body_key: str,
              payload: bytes, ttl_ms: int) -> bool:
        """Store `payload` under `body_key` if every version is unchanged; True if stored."""
        return bool(self._call(
            lambda: self._script('_set_if_versions')(keys=[*version_keys, body_key], args=[*versions, payload, ttl_ms]),
            0))

    def try_lock(self, lock_key: str, ttl_ms: int) -> Optional[str]:
        """Take the loader lock for a key; returns the lock's token, or None if held."""
        token = secrets.token_hex(8)
        got = self._call(lambda: self.client.set(lock_key, token, nx=True, px=ttl_ms), None)
        return token if got else None

    def lock_held(self, lock_key: str) -> bool:
        """Is someone holding the loader lock?"""
        return bool(self._call(lambda: self.client.exists(lock_key), 0))

    def unlock(self, lock_key: str, token: str) -> None:
        """Release a lock this caller holds."""
        self._call(lambda: self._script('_release')(keys=[lock_key], args=[token]), 0)

    def bump(self, version_keys: Sequence[str], ticket: str = "") -> Optional[dict[str, str]]:
        """Give each version key a fresh value (one MSET; with a `ticket`, one script that
        keeps each key's higher ticket, see tickets.py); returns the values set, or None if
        Redis is unavailable."""
        if not ticket:
            values = {key: new_token() for key in version_keys}
            ok = self._call(lambda: self._script('_bump')(keys=list(values), args=[*values.values(), VERSION_TTL_S]),
                            None)
            return values if ok else None
        keys = list(version_keys)
        bases = [new_token() for _ in keys]
        got = self._call(lambda: self._script('_bump_with_ticket')(keys=keys, args=[*bases, ticket, VERSION_TTL_S]),
                         None)
        if got is None:
            return None
        return {key: (v.decode() if isinstance(v, bytes) else str(v)) for key, v in zip(keys, got)}

    def get_value(self, key: str) -> Optional[bytes]:
        """A plain value (not a cache entry); None when missing or Redis is unavailable."""
        return cast("Optional[bytes]", self._call(lambda: self.client.get(key), None))

    def set_value(self, key: str, value: bytes, ttl_s: int) -> None:
        """Store a plain value with a lifetime; does nothing when Redis is unavailable."""
        self._call(lambda: self.client.set(key, value, ex=ttl_s), None)

    def ping(self) -> bool:
        """Is Redis answering now?"""
        return bool(self._call(lambda: self.client.ping(), False))

    def memory_used(self) -> Optional[int]:
        """Redis `used_memory` in bytes, if available."""
        if self.settings.cluster:  # the sum over every primary
            per_node = self._call(lambda: self.client.info("memory", target_nodes="primaries"), None)
            if not per_node:
                return None
            if "used_memory" in per_node:  # one primary: redis-py returns its reply as is
                return int(per_node["used_memory"])
            return sum(int(part["used_memory"]) for part in per_node.values())
        info = self._call(lambda: self.client.info("memory"), None)
        return int(info["used_memory"]) if info else None
