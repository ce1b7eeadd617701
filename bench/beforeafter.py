"""Before/after on the large dataset (tenant 1 holds ~25% of the rows): the dashboard
computed live vs read from the materialized view vs an L1 hit through the handler; one
day's appointment list uncached (the loader's query) vs an L3 load vs an L1 hit."""
from __future__ import annotations

from typing import Any

from bench import common
from bench.tiers import x_cache


def measure(database: str, namespace: str, n_live: int, n_view: int, n_hit: int) -> dict[str, Any]:
    import app as app_module
    from chalicelib.booking import queries
    from chalicelib.booking.caching import get_cache
    from chalicelib.booking.models import AppointmentListQuery
    from chalicelib.booking.read_source import primary_fill

    common.use_database(database, namespace)
    tenant = 1
    conn = common.connect(database)
    try:
        share = conn.run("SELECT round(100.0 * count(*) FILTER (WHERE tenant_id = 1) / count(*), 1), count(*)"
                         " FROM appointment")[0]
    finally:
        conn.close()
    out: dict[str, Any] = {"tenant": tenant, "tenant_share_pct": float(share[0]), "appointments": share[1]}

    live = common.time_calls(lambda: queries.dashboard_live(tenant), n_live)
    out["dashboard_live"] = common.summary(live[1:] if len(live) > 2 else live)
    out["dashboard_view"] = common.summary(common.time_calls(lambda: queries.dashboard(primary_fill(), tenant), n_view))
    ctx = common.LambdaContext()
    tok = common.token(tenant, "admin")
    dash_event = common.api_event("GET", "/api/dashboard/stats", {"clientId": str(tenant)}, tok)
    first = app_module.app(dash_event, ctx)
    assert first["statusCode"] == 200, first
    app_module.app(dash_event, ctx)
    assert x_cache(app_module.app(dash_event, ctx)) == "L1"
    out["dashboard_l1_hit"] = common.summary(common.time_calls(lambda: app_module.app(dash_event, ctx), n_hit))

    day = common.next_day_with_free_slots(tenant)
    q = AppointmentListQuery(clientId=tenant, date=day, limit=200)
    uncached = common.time_calls(lambda: queries.appointment_list(primary_fill(), q), n_view)
    out["list_uncached_query"] = common.summary(uncached)
    list_event = common.api_event("GET", "/api/appointments/list",
                                  {"clientId": str(tenant), "date": day.isoformat(), "limit": "200"}, tok)
    redis = common.redis_client()

    def drop() -> None:
        get_cache().clear_l1()
        for key in redis.scan_iter(match=f"{namespace}:b:{{t{tenant}}}:appointments:*", count=1000):
            redis.delete(key)

    out["list_l3_request"] = common.summary(
        common.time_calls(lambda: app_module.app(list_event, ctx), max(10, n_view // 2), drop))
    app_module.app(list_event, ctx)
    assert x_cache(app_module.app(list_event, ctx)) == "L1"
    out["list_l1_hit"] = common.summary(common.time_calls(lambda: app_module.app(list_event, ctx), n_hit))
    out["list_body_bytes"] = len(app_module.app(list_event, ctx)["body"])
    out["list_day"] = day.isoformat()
    for name in ("dashboard_live", "dashboard_view", "dashboard_l1_hit", "list_uncached_query",
                 "list_l3_request", "list_l1_hit"):
        common.say(f"large {name:<20} p50 {out[name]['p50_us']:10.1f} us  p99 {out[name]['p99_us']:10.1f} us")
    return out
