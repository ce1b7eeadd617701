"""A fault-injecting Redis store: the real RedisTier whose next commands fail, time out or
lose their connection on command (FusionCache's chaos idea). Faults pass through the real
error path: `_call`'s error handling and circuit breaker."""
from __future__ import annotations

from typing import Callable, Optional, TypeVar

import redis
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chalicelib.cache.redis_tier import RedisTier

T = TypeVar("T")


class FaultyRedisTier(RedisTier):
    """RedisTier with `fault` = None (healthy), "fail", "timeout" or "disconnect"."""

    fault: Optional[str] = None

    def _call(self, fn: Callable[[], T], default: T) -> T:
        fault = self.fault
        if fault is None:
            return super()._call(fn, default)
        return super()._call(lambda: self._inject(fault, fn), default)

    def _inject(self, fault: str, fn: Callable[[], T]) -> T:
        if fault == "fail":
            raise ResponseError("injected failure")
        if fault == "timeout":
            raise RedisTimeoutError("injected timeout")
        self._kill_my_connections()
        return fn()  # on a socket the server has closed (redis-py's retry is off, as in the app)

    def _kill_my_connections(self) -> None:
        """A real lost connection: the server kills the connection this client uses."""
        killer = redis.Redis(host=self.settings.host, port=self.settings.port, db=self.settings.db,
                             username=self.settings.username, password=self.settings.password)
        try:
            killer.client_kill_filter(_id=self.client.client_id())
        finally:
            killer.close()
