"""Private Redis key namespaces (CACHE_NAMESPACE) on the server of REDIS_URL, for tests, the
bench and the tools: a unique name, and every key under it deleted afterwards."""
from __future__ import annotations

import os
import uuid
from typing import Optional

import redis

DEFAULT_URL = "redis://127.0.0.1:6379/0"


def redis_url() -> str:
    """REDIS_URL, else the local default."""
    return os.environ.get("REDIS_URL") or DEFAULT_URL


def new_namespace(prefix: str) -> str:
    """A namespace no other run uses: `prefix` and random hex."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def delete_namespace(namespace: str, url: Optional[str] = None) -> int:
    """Delete every key of `namespace`; returns how many. A Redis that cannot be reached
    deletes nothing (0): whatever was left expires or goes with the server."""
    try:
        client = redis.Redis.from_url(url or redis_url())
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i:i + 500])
    except redis.RedisError:
        return 0
    return len(keys)
