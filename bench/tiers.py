"""Per cached route, through the real handler `app.app(event, context)`: L1 hit, L2 hit,
L3 load, each next to the trivial-route floor and a raw redis-py GET of the same size;
plus the cache's own L1 lookup and the per-request invalidation drain."""
from __future__ import annotations

import datetime as dt
from typing import Any, Callable, Optional

from bench import common
from bench.floors import raw_redis_get, trivial_route_call


def routes(day: dt.date) -> list[dict[str, Any]]:
    """The cached GET routes of tenant 1 (one line each: name, path, query, resource); slots
    and lists of `day` (a day with free slots: common.next_day_with_free_slots)."""
    day_text = day.isoformat()
    return [
        {"name": "departments", "path": "/api/departments", "query": {"clientId": "1"}},
        {"name": "doctors", "path": "/api/doctors", "query": {"clientId": "1"}},
        {"name": "patients", "path": "/api/patients", "query": {"clientId": "1", "q": "a"}},
        {"name": "slots", "path": "/api/slots/available", "query": {"clientId": "1", "date": day_text}},
        {"name": "appointments", "path": "/api/appointments/list", "query": {"clientId": "1", "date": day_text}},
        {"name": "dashboard", "path": "/api/dashboard/stats", "query": {"clientId": "1"}},
    ]


def x_cache(response: dict) -> Optional[str]:
    headers = response.get("headers") or {}
    value = headers.get("X-Cache")
    if value is None and response.get("multiValueHeaders"):
        value = (response["multiValueHeaders"].get("X-Cache") or [None])[0]
    return value


class RouteBench:
    """One route's calls: the handler, clearing L1, deleting its L2 body key."""

    def __init__(self, route: dict[str, Any], namespace: str, tok: str) -> None:
        import app as app_module
        from chalicelib.booking.caching import get_cache

        self.route = route
        self.app = app_module.app
        self.ctx = common.LambdaContext()
        self.event = common.api_event("GET", route["path"], route["query"], tok)
        self.redis = common.redis_client()
        self.get_cache = get_cache
        pattern = f"{namespace}:b:{{t1}}:{route['name']}:*"
        for key in self.redis.scan_iter(match=pattern, count=1000):
            self.redis.delete(key)
        first = self.call()
        assert first["statusCode"] == 200, (route, first)
        self.body: str = first["body"]
        keys = list(self.redis.scan_iter(match=pattern, count=1000))
        assert len(keys) == 1, (pattern, keys)
        self.body_key = keys[0]
        self.l2_bytes = self.redis.strlen(self.body_key)

    def call(self) -> dict:
        return self.app(self.event, self.ctx)

    def clear_l1(self) -> None:
        self.get_cache().clear_l1()

    def clear_l1_l2(self) -> None:
        self.get_cache().clear_l1()
        self.redis.delete(self.body_key)

    def check(self, setup: Optional[Callable[[], None]], expected: str, n: int = 20) -> int:
        """How many of n calls were not answered by the expected tier."""
        bad = 0
        for _ in range(n):
            if setup:
                setup()
            response = self.call()
            if response["statusCode"] != 200 or x_cache(response) != expected:
                bad += 1
        return bad


def measure(namespace: str, day: dt.date, n: int, n_l3: int) -> dict[str, Any]:
    out: dict[str, Any] = {"routes": {}}
    tok = common.token(1, "admin")
    for route in routes(day):
        rb = RouteBench(route, namespace, tok)
        floor = trivial_route_call(rb.body, route["query"])
        redis_get = raw_redis_get(rb.l2_bytes, namespace)
        rb.call()  # make sure L1 holds it
        res = common.interleaved({
            "floor_trivial": (floor, None),
            "l1_hit": (rb.call, None),
            "floor_redis_get": (redis_get, None),
            "l2_hit": (rb.call, rb.clear_l1),
        }, n)
        res["l3_load"] = common.summary(common.time_calls(rb.call, n_l3, rb.clear_l1_l2))
        res["wrong_tier"] = {"l1": rb.check(None, "L1"), "l2": rb.check(rb.clear_l1, "L2"),
                             "l3": rb.check(rb.clear_l1_l2, "DB", 5)}
        res["body_bytes"] = len(rb.body)
        res["l2_bytes"] = rb.l2_bytes
        out["routes"][route["name"]] = res
        common.say(f"{route['name']:<12} body {len(rb.body):>6} B | floor {res['floor_trivial']['p50_us']:7.1f} us"
                   f" | L1 {res['l1_hit']['p50_us']:7.1f} | redis GET {res['floor_redis_get']['p50_us']:6.1f}"
                   f" | L2 {res['l2_hit']['p50_us']:7.1f} | L3 {res['l3_load']['p50_us']:8.1f} us"
                   f" | wrong tier {res['wrong_tier']}")
    out["fhir"] = fhir_against_native(namespace, day, tok, n)
    out["l1_lookup"] = l1_lookup(n)
    return out


def fhir_against_native(namespace: str, day: dt.date, tok: str, n: int) -> dict[str, Any]:
    """The FHIR Slot search of `day` (every slot, one page) and the native free-slot list of
    the same day, both L1 hits through the handler, interleaved."""
    native = RouteBench(routes(day)[3], namespace, tok)
    fhir = RouteBench({"name": "fhir_slots", "path": "/fhir/R4/Slot",
                       "query": {"start": f"ge{day.isoformat()}", "_count": "500"}}, namespace, tok)
    native.call()
    fhir.call()
    res = common.interleaved({"native_l1": (native.call, None), "fhir_l1": (fhir.call, None)}, n)
    res["wrong_tier"] = {"native": native.check(None, "L1"), "fhir": fhir.check(None, "L1")}
    res["bodies"] = {"native": len(native.body), "fhir": len(fhir.body)}
    res["ratio"] = res["fhir_l1"]["p50_us"] / res["native_l1"]["p50_us"]
    common.say(f"FHIR Slot search L1 hit {res['fhir_l1']['p50_us']:.1f} us ({len(fhir.body)} B) vs native slots"
               f" {res['native_l1']['p50_us']:.1f} us ({len(native.body)} B): {res['ratio']:.2f}x"
               f" | wrong tier {res['wrong_tier']}")
    return res


def l1_lookup_callable() -> Callable[[], Any]:
    """get_or_load on the departments key of tenant 1, L1-warm."""
    from chalicelib.booking.caching import get_cache
    from chalicelib.booking.models import TenantQuery
    from chalicelib.booking.resources import DEPARTMENTS

    current = get_cache()
    query = TenantQuery(clientId=1)
    key = DEPARTMENTS.key(current.keys, query)
    policy = current.policy(DEPARTMENTS.name)
    loader = DEPARTMENTS.loader(query)

    current.begin_request()  # connects tracking: L1 then knows current versions
    current.get_or_load(key, loader, policy)
    assert current.get_or_load(key, loader, policy).source == "L1"
    return lambda: current.get_or_load(key, loader, policy)


def l2_lookup_case(day: dt.date) -> tuple[Callable[[], Any], Callable[[], None]]:
    """get_or_load on the slots key of `day` (tenant 1) answered by L2: (call, untimed setup
    that empties L1 before each call)."""
    from chalicelib.booking.caching import get_cache
    from chalicelib.booking.models import SlotsQuery
    from chalicelib.booking.resources import SLOTS

    current = get_cache()
    query = SlotsQuery(clientId=1, date=day)
    key = SLOTS.key(current.keys, query)
    policy = current.policy(SLOTS.name)
    loader = SLOTS.loader(query)

    current.begin_request()
    current.get_or_load(key, loader, policy)
    current.clear_l1()
    assert current.get_or_load(key, loader, policy).source == "L2"

    def call() -> Any:
        return current.get_or_load(key, loader, policy)

    return call, current.clear_l1


def l1_lookup(n: int) -> dict[str, Any]:
    """get_or_load on an L1-hit key alone, and begin_request() (the drain) alone."""
    from chalicelib.booking.caching import get_cache as cache

    current = cache()
    lookup_call = l1_lookup_callable()
    lookup = common.tight_loop(lookup_call, max(n * 20, 20000))
    drain = common.tight_loop(current.begin_request, max(n * 10, 10000))
    # The drain's own cost varies with the keep-alive PING; also time it per call.
    drain_calls = common.summary(common.time_calls(current.begin_request, max(n * 5, 5000)))
    assert lookup_call().source == "L1"
    common.say(f"L1 lookup alone (get_or_load, tight loop): {lookup['p50_us']:.3f} us/call;"
               f" begin_request() drain: {drain['p50_us']:.3f} us/call (per-call p99 {drain_calls['p99_us']:.1f} us)")
    return {"get_or_load_l1": lookup, "begin_request": drain, "begin_request_per_call": drain_calls}
