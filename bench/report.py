"""Targets (PASS/FAIL with ratios), the Markdown report, the PNG, and the JSON."""
from __future__ import annotations

import json
import os
import shutil
from typing import Any

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
README = os.path.join(os.path.dirname(RESULTS), os.pardir, "README.md")
README_START = "<!-- bench:latest (written by python -m bench; do not edit by hand) -->"
README_END = "<!-- /bench:latest -->"


def _f(us: float) -> str:
    if us != us:  # nan
        return "n/a"
    if us >= 10_000:
        return f"{us / 1000:.1f} ms"
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.1f} us" if us >= 10 else f"{us:.2f} us"


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target with its figure, floor, ratio and verdict (missing sections: SKIP)."""
    out: list[dict[str, Any]] = []

    def add(name: str, ok: bool | None, detail: str) -> None:
        out.append({"target": name, "status": "SKIP" if ok is None else ("PASS" if ok else "FAIL"), "detail": detail})

    t = r.get("tiers")
    peers = r.get("peers")
    if t:
        ratios = {k: v["l1_hit"]["p50_us"] / v["floor_trivial"]["p50_us"] for k, v in t["routes"].items()}
        worst = max(ratios, key=ratios.get)
        add("L1-hit request <= 1.25x trivial-route floor", max(ratios.values()) <= 1.25,
            f"worst {worst} {ratios[worst]:.2f}x (" + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()) + ")")
        routes = t["routes"]
        if "patients" in routes and "departments" in routes:
            audited, plain = routes["patients"]["l1_hit"]["p50_us"], routes["departments"]["l1_hit"]["p50_us"]
            add("Audited L1 hit (patient search, read recorded) <= 1.1x an unaudited one (departments)",
                audited <= 1.1 * plain, f"patients {_f(audited)} vs departments {_f(plain)}: {audited / plain:.2f}x")
        fhir = t.get("fhir")
        if fhir:
            add("FHIR Slot search L1 hit <= 1.5x the native slot list's", fhir["ratio"] <= 1.5
                and not any(fhir["wrong_tier"].values()),
                f"FHIR {_f(fhir['fhir_l1']['p50_us'])} ({fhir['bodies']['fhir']} B) vs native"
                f" {_f(fhir['native_l1']['p50_us'])} ({fhir['bodies']['native']} B): {fhir['ratio']:.2f}x;"
                f" wrong tier {fhir['wrong_tier']}")
        lk = t["l1_lookup"]["get_or_load_l1"]["p50_us"]
        if peers and "ours_l1_lookup" in peers:
            lk = peers["ours_l1_lookup"]["p50_us"]  # measured in alternation with the peers
        peer_mem = {k: peers[k]["p50_us"] for k in ("dogpile_memory", "cashews_mem")} if peers else {}
        ok = lk <= 1.0 and all(lk < v for v in peer_mem.values())
        add("L1 lookup <= 1 us median and faster than every peer's memory hit", ok,
            f"get_or_load L1 hit {lk:.2f} us (ratio to the 1 us floor: {lk:.2f}x); peers: "
            + ", ".join(f"{k} {v:.2f} us ({lk / v:.2f}x)" for k, v in peer_mem.items()))
        l2 = {k: (v["l2_hit"]["p50_us"], v["floor_trivial"]["p50_us"] + 1.2 * v["floor_redis_get"]["p50_us"])
              for k, v in t["routes"].items()}
        ratios2 = {k: a / b for k, (a, b) in l2.items()}
        worst2 = max(ratios2, key=ratios2.get)
        peer_redis = {k: peers[k]["p50_us"] for k in ("dogpile_redis", "cashews_redis")} if peers else {}
        # Like against like: the cache's own L2 hit (get_or_load, L1 emptied, no HTTP) against
        # the peers' Redis hit through their cache APIs, same payload, same run.
        ours_l2 = peers["ours_l2_lookup"]["p50_us"] if peers and "ours_l2_lookup" in peers else None
        ok2 = max(ratios2.values()) <= 1.0 and ours_l2 is not None and all(ours_l2 < v for v in peer_redis.values())
        add("L2-hit request <= floor + 1.2x raw redis GET, and faster than every peer's Redis hit", ok2,
            f"worst {worst2}: {_f(l2[worst2][0])} vs bound {_f(l2[worst2][1])} = {ratios2[worst2]:.2f}x of bound ("
            + ", ".join(f"{k} {v:.2f}x" for k, v in ratios2.items()) + "); get_or_load L2 hit (slots) "
            + (f"{_f(ours_l2)} vs peers "
               + ", ".join(f"{k} {_f(v)} ({ours_l2 / v:.2f}x)" for k, v in peer_redis.items())
               if ours_l2 is not None else "not measured"))
    ba = r.get("beforeafter")
    if ba:
        speed = ba["dashboard_live"]["p50_us"] / ba["dashboard_l1_hit"]["p50_us"]
        add("dashboard L1 hit >= 1000x faster than live aggregation (large)", speed >= 1000,
            f"live {_f(ba['dashboard_live']['p50_us'])} / L1 hit {_f(ba['dashboard_l1_hit']['p50_us'])}"
            f" = {speed:,.0f}x")
    w = r.get("workload")
    if w:
        add("workload hit rate >= 95%", w["hit_rate"] >= 0.95,
            f"{w['hit_rate']:.2%} (L1 {w['l1_rate']:.2%}, L2 {w['l2_rate']:.2%}, DB {w['db_rate']:.2%});"
            f" {w.get('cold_loads', 0)} of {w['sources'].get('DB', 0)} DB loads were first-ever loads of a key;"
            f" {w['throughput_rps']:.0f} req/s")
        add("workload DB queries >= 95% fewer than uncached", w["query_reduction"] >= 0.95,
            f"{w['queries_cached']} vs {w['queries_uncached']} = {w['query_reduction']:.2%} fewer")
        add("workload 0 staleness violations", w["violations"] == 0,
            f"{w['violations']} violations in {w['staleness_checks']} checked reads")
    for key in ("workload_cluster", "workload_replica"):
        other = r.get(key)
        if other:
            add(f"workload on {other['setup']}: hit rate >= 95%, 0 staleness violations",
                other["hit_rate"] >= 0.95 and other["violations"] == 0,
                f"{other['hit_rate']:.2%} (L1 {other['l1_rate']:.2%}, L2 {other['l2_rate']:.2%},"
                f" DB {other['db_rate']:.2%});"
                f" {other['violations']} violations in {other['staleness_checks']} checked reads;"
                f" {other['throughput_rps']:.0f} req/s; errors {other['errors'] or 'none'}")
    h = r.get("http")
    if h:
        floor_note = (f"; http.server floor (same body and headers) p50 {_f(h['floor']['p50_us'])}:"
                      f" {h['p50_us'] / h['floor']['p50_us']:.2f}x" if "floor" in h else "")
        add("serve keep-alive L1 hit p50 <= 1 ms", h["p50_us"] <= 1000 and h["errors"] == 0,
            f"p50 {_f(h['p50_us'])} ({h['p50_us'] / 1000:.2f}x of 1 ms), {h['rps']:.0f} req/s,"
            f" errors {h['errors']}{floor_note}")
    b = r.get("booking")
    if b:
        ratio = b["booking"]["p50_us"] / b["floor_insert_txn"]["p50_us"]
        add("booking request p50 <= 2x bare INSERT transaction", ratio <= 2.0,
            f"{_f(b['booking']['p50_us'])} vs {_f(b['floor_insert_txn']['p50_us'])} = {ratio:.2f}x")
    c = r.get("coldstart")
    if c:
        floor, imp, first = (c[k]["p50_ms"] * 1000 for k in ("floor_import_chalice", "import_app", "first_answer"))
        add("cold start: import app in a new process <= 3x bare import chalice", imp / floor <= 3.0,
            f"{_f(imp)} vs {_f(floor)} = {imp / floor:.2f}x; first answer of a new process (import, connect, one"
            f" cached read from the database) {_f(first)} = {first / floor:.2f}x the floor,"
            f" {first / imp:.2f}x import app")
    return out


def markdown(r: dict[str, Any], verdicts: list[dict[str, Any]], png_name: str) -> str:
    m = r["meta"]
    L = [f"# Benchmark report ({m['mode']}) - {m['timestamp']}", "",
         f"Machine: {m['cpus']} CPUs, load average at start {m['loadavg_start']}, at end {m.get('loadavg_end')};"
         f" Python {m['python']}; Chalice {m['chalice']}; redis-py {m['redis_py']}; pg8000 {m['pg8000']}."
         f" Total run time {m.get('elapsed_s', 0):.0f} s.", "",
         "Every figure is a median (p50) unless marked p99, measured in this run, next to the floor it is judged"
         " against and the ratio. Floors and targets are measured in alternating blocks so both see the same"
         " machine load.", "", "## Targets", "", "| target | result | detail |", "|---|---|---|"]
    for v in verdicts:
        L.append(f"| {v['target']} | **{v['status']}** | {v['detail']} |")
    if m.get("notes"):
        L += ["", "Notes:"] + [f"- {n}" for n in m["notes"]]
    f = r.get("floors")
    if f:
        L += ["", "## 1. Floors", "", "| floor | p50 | p99 |", "|---|---|---|"]
        for k, label in (("trivial_route",
                          f"trivial Chalice route, app(event, ctx), {f['body_bytes']['n']} B str body"),
                         ("redis_get", f"raw redis-py GET, {f['body_bytes']['n']} B"),
                         ("pg_select1", "pg8000 SELECT 1"),
                         ("pg_insert_txn", "bare INSERT transaction (BEGIN; INSERT; COMMIT)")):
            L.append(f"| {label} | {_f(f[k]['p50_us'])} | {_f(f[k]['p99_us'])} |")
    t = r.get("tiers")
    if t:
        L += ["", "## 2. Per cached route through `app.app(event, context)`", "",
              "| route | body | trivial floor | L1 hit (p99) | L1 / floor | raw GET (L2 size) | L2 hit (p99) |"
              " L2 / (floor + 1.2 GET) | L3 load (p99) | wrong tier |", "|---|---|---|---|---|---|---|---|---|---|"]
        for k, v in t["routes"].items():
            fl, l1, g, l2, l3 = (v["floor_trivial"], v["l1_hit"], v["floor_redis_get"], v["l2_hit"], v["l3_load"])
            bound = fl["p50_us"] + 1.2 * g["p50_us"]
            L.append(f"| {k} | {v['body_bytes']} B | {_f(fl['p50_us'])} | {_f(l1['p50_us'])} ({_f(l1['p99_us'])}) |"
                     f" {l1['p50_us'] / fl['p50_us']:.2f}x | {_f(g['p50_us'])} ({v['l2_bytes']} B) |"
                     f" {_f(l2['p50_us'])} ({_f(l2['p99_us'])}) | {l2['p50_us'] / bound:.2f}x |"
                     f" {_f(l3['p50_us'])} ({_f(l3['p99_us'])}) | {v['wrong_tier']} |")
        lk = t["l1_lookup"]
        L += ["", "Cache's own L1 lookup, `get_or_load` on an L1-hit key (tight loop):"
                  f" **{_f(lk['get_or_load_l1']['p50_us'])}**"
                  f" per call (target 1 us: {lk['get_or_load_l1']['p50_us']:.2f}x). `begin_request()` drain, measured"
                  f" separately: {_f(lk['begin_request']['p50_us'])} per call (per-call timing: p50"
                  f" {_f(lk['begin_request_per_call']['p50_us'])}, p99 {_f(lk['begin_request_per_call']['p99_us'])})."]
        L += ["", f"![latency per tier]({png_name})"]
    ba = r.get("beforeafter")
    if ba:
        L += ["", f"## 3. Before/after on the large dataset (tenant {ba['tenant']}: {ba['tenant_share_pct']}% of"
                  f" {ba['appointments']:,} appointments)", "", "| what | p50 | p99 | vs L1 hit |", "|---|---|---|---|"]
        for k, label, base in (("dashboard_live", "dashboard, live aggregation (`dashboard_live`)", "dashboard_l1_hit"),
                               ("dashboard_view", "dashboard from the materialized view (`dashboard`)",
                                "dashboard_l1_hit"),
                               ("dashboard_l1_hit", "dashboard, L1 hit through the handler", "dashboard_l1_hit"),
                               ("list_uncached_query",
                                f"appointment list {ba['list_day']} (limit 200), the loader query", "list_l1_hit"),
                               ("list_l3_request", "same, L3 load through the handler", "list_l1_hit"),
                               ("list_l1_hit", f"same, L1 hit through the handler ({ba['list_body_bytes']} B)",
                                "list_l1_hit")):
            L.append(f"| {label} | {_f(ba[k]['p50_us'])} | {_f(ba[k]['p99_us'])} |"
                     f" {ba[k]['p50_us'] / ba[base]['p50_us']:,.0f}x |")
    w = r.get("workload")
    if w:
        L += ["", f"## 4. Workload ({w['processes']} processes, {w['duration_s']:.0f} s measured after"
                  f" {w['warmup_s']:.0f} s warm-up)", "",
              f"- requests: {w['requests']:,} ({w['throughput_rps']:.0f}/s); reads by route {w['routes']};"
              f" writes {w['writes']}; errors {w['errors'] or 'none'}",
              f"- X-Cache: {w['sources']} -> hit rate **{w['hit_rate']:.2%}** (L1 {w['l1_rate']:.2%},"
              f" L2 {w['l2_rate']:.2%}, DB {w['db_rate']:.2%}; floor: 95%)",
              f"- DB loads: {w.get('cold_loads', 0):,} first-ever loads of a key in this run"
              " (cold; the Zipf tail keeps adding keys)"
              f" + {w.get('reloads', 0):,} re-loads (expiry or invalidation); hit rate excluding first-ever loads"
              f" {w.get('hit_rate_excl_cold', 0):.2%}",
              f"- database queries: {w['queries_cached']:,} cached vs {w['queries_uncached']:,} uncached"
              f" (every read a query) = **{w['query_reduction']:.2%} fewer** (floor: 95%);"
              f" pg_stat_database transactions per request {w['pg_xacts_per_request']:.3f}"
              f" ({w['pg_xacts']:,} incl. the checker's own confirmations)",
              f"- latency per request: p50 {_f(w['latency']['p50_us'])}, p99 {_f(w['latency']['p99_us'])}",
              f"- staleness: {w['staleness_checks']:,} reads checked against completed writes,"
              f" {w['staleness_suspects']} suspects,"
              f" **{w['violations']} violations** (confirmed against PostgreSQL);"
              f" invalidation pushes received {w['invalidations_received']:,}; lock waits {w['lock_waits']}"]
        if w["violation_samples"]:
            L.append(f"- violation samples: `{json.dumps(w['violation_samples'][:3])}`")
    for key in ("workload_cluster", "workload_replica"):
        other = r.get(key)
        if other:
            L += ["", f"Same workload on {other['setup']}: {other['requests']:,} requests"
                      f" ({other['throughput_rps']:.0f}/s),"
                      f" X-Cache {other['sources']} -> hit rate **{other['hit_rate']:.2%}**;"
                      f" p50 {_f(other['latency']['p50_us'])},"
                      f" p99 {_f(other['latency']['p99_us'])}; {other['staleness_checks']:,} reads checked,"
                      f" **{other['violations']} violations**; writes {other['writes']};"
                      f" errors {other['errors'] or 'none'}"
                      + (f"; {other['note']}" if other.get("note") else "")]
    rh = r.get("redis_health")
    if rh:
        L += ["", f"## 5. Redis health: grade **{rh['grade']}** (Redis {rh['redis_version']},"
                  f" breaker {rh['breaker']}, errors {rh['errors']})", "",
              "| payload | GET p50 | GET p99 | SET p50 | SET p99 |", "|---|---|---|---|---|"]
        for size, v in rh["by_size"].items():
            L.append(f"| {int(size):,} B | {_f(v['get']['p50_us'])} | {_f(v['get']['p99_us'])} |"
                     f" {_f(v['set']['p50_us'])} | {_f(v['set']['p99_us'])} |")
        L += ["", f"Memory per 1,000 cached bodies of {rh['sample_body_bytes']:,} B (a real slots entry):"
                  f" {rh['memory_per_1000_bodies_bytes'] / 1e6:.2f} MB"
                  f" ({rh['overhead_per_body_bytes']:.0f} B overhead per body).",
              "", "Grade scale:", ""] + [f"- **{g}**: {d}" for g, d in rh["grade_scale"]]
    h = r.get("http")
    if h:
        L += ["", "## 6. HTTP (`python -m chalicelib.cli serve --no-schedules`, keep-alive)", "",
              f"{h['threads']} keep-alive client threads on `/api/departments` (L1 hit) for {h['duration_s']:.0f} s:"
              f" p50 **{_f(h['p50_us'])}** (target 1 ms), p99 {_f(h['p99_us'])}, {h['rps']:.0f} requests/s;"
              f" X-Cache {h['sources']}; errors {h['errors']}."]
        if "floor" in h:
            fl = h["floor"]
            L += ["", f"Floor, in alternating blocks with the same clients: Python's `http.server` (threaded,"
                      f" keep-alive, Nagle off, no access log) answering the same body and headers: p50"
                      f" {_f(fl['p50_us'])}, p99 {_f(fl['p99_us'])}, {fl['rps']:.0f} requests/s; `serve` is"
                      f" {h['p50_us'] / fl['p50_us']:.2f}x of it."]
    p = r.get("peers")
    if p and t:
        slots = t["routes"]["slots"]
        L += ["", f"## 7. Peers (same process, same {r['meta'].get('peer_payload_bytes')} B payload, hits,"
                  " per-call average)", "",
              "| cache | memory-tier hit | Redis-tier hit |", "|---|---|---|",
              f"| this cache: `get_or_load` L1 hit (alternating with dogpile's memory hit) / `get_or_load` L2 hit, L1"
              f" emptied before each call (alternating with dogpile's Redis hit) |"
              f" {_f(p.get('ours_l1_lookup', t['l1_lookup']['get_or_load_l1'])['p50_us'])} |"
              f" {_f(p['ours_l2_lookup']['p50_us']) if 'ours_l2_lookup' in p else '-'} |",
              "| this cache, whole L2-hit request through the handler (slots; for reference) | - |"
              f" {_f(slots['l2_hit']['p50_us'])} |",
              f"| dogpile.cache 1.5 | {_f(p['dogpile_memory']['p50_us'])} | {_f(p['dogpile_redis']['p50_us'])} |",
              f"| cashews 7.6 | {_f(p['cashews_mem']['p50_us'])} | {_f(p['cashews_redis']['p50_us'])} |"]
        if not p.get("aiocache_installed"):
            L.append("| aiocache | not installed | not installed |")
    b = r.get("booking")
    if b:
        L += ["", "## Booking", "",
              "POST /api/appointments through `app.app` on distinct free future slots:"
              f" p50 **{_f(b['booking']['p50_us'])}**,"
              f" p99 {_f(b['booking']['p99_us'])} vs bare INSERT transaction p50 {_f(b['floor_insert_txn']['p50_us'])}"
              f" (p99 {_f(b['floor_insert_txn']['p99_us'])})"
              f" = {b['booking']['p50_us'] / b['floor_insert_txn']['p50_us']:.2f}x"
              f" (target 2x); statuses {b['statuses']}."]
        if "txn_only" in b:
            L.append("")
            L.append(f"Breakdown: the booking transaction alone (`commands.book`: one prepared INSERT ... ON CONFLICT"
                     f" statement in autocommit, one round trip) p50 {_f(b['txn_only']['p50_us'])}"
                     f" = {b['txn_only']['p50_us'] / b['floor_insert_txn']['p50_us']:.2f}x"
                     f" the bare INSERT; the rest of the request (auth, validation, cache invalidation in Redis,"
                     f" response) {_f(b['booking']['p50_us'] - b['txn_only']['p50_us'])}.")
    c = r.get("coldstart")
    if c:
        floor = c["floor_import_chalice"]["p50_ms"]
        L += ["", f"## Cold start (new processes, {c['import_app']['n']} alternating rounds, `bench/coldstart.py`)", "",
              "Each process is timed from its start to the line it prints when done (its exit is not"
              " counted: a Lambda container stays up after answering).", "",
              "| process | p50 | min - max | vs floor |", "|---|---|---|---|"]
        for k, label in (("floor_import_chalice", "floor: `python -c \"import chalice\"`"),
                         ("import_app", "`python -c \"import app\"`"),
                         ("first_answer", "first answer: import app, connect, GET /api/departments from the database"
                                          " (`X-Cache: DB`, fresh namespace)")):
            v = c[k]
            L.append(f"| {label} | {_f(v['p50_ms'] * 1000)} | {_f(v['min_ms'] * 1000)} - {_f(v['max_ms'] * 1000)} |"
                     f" {v['p50_ms'] / floor:.2f}x |")
        split = c["first_answer_split"]
        L += ["", f"Inside the first-answer process (medians): `import app` {_f(split['import_ms'] * 1000)}, then the"
                  f" answer {_f(split['answer_ms'] * 1000)} (imports the route's modules, reads the settings, opens the"
                  f" PostgreSQL and Redis connections, verifies the token, loads and stores the body). First answer /"
                  f" import app: {c['first_answer']['p50_ms'] / c['import_app']['p50_ms']:.2f}x."]
    fl = r.get("fleet")
    if fl:
        rp, alone, full = fl["requests_per_publish"], fl["publish_no_pending"], fl["publish_with_pending"]
        L += ["", "## Fleet statistics publish (`bench/fleet.py`)", "",
              f"Every {fl['interval_s']:g} s a container publishes its snapshot to Redis at the end of a request"
              f" (one pipelined round trip, {fl['payload_bytes']:,} B of JSON here)."
              " L1-hit requests through the handler,"
              f" one thread, {rp['seconds']:.0f} s: {rp['requests']:,} requests, {rp['publishes']} publishes ="
              f" **{rp['per_publish'] or 0:,.0f} requests per publish** ({rp['rps']:,.0f} req/s).", "",
              "| what | p50 | p99 |", "|---|---|---|",
              f"| publish, nothing pending | {_f(alone['p50_us'])} | {_f(alone['p99_us'])} |",
              f"| publish, {full['pending_samples']:,} latency samples to fold first | {_f(full['p50_us'])} |"
              f" {_f(full['p99_us'])} |",
              f"| L1-hit request, publish never due | {_f(fl['l1_hit']['publish_never']['p50_us'])} |"
              f" {_f(fl['l1_hit']['publish_never']['p99_us'])} |",
              "| L1-hit request, publish due at every request's end |"
              f" {_f(fl['l1_hit']['publish_every_request']['p50_us'])} |"
              f" {_f(fl['l1_hit']['publish_every_request']['p99_us'])} |",
              "| `RequestScope.exit()` when nothing is due (the only per-request cost) |"
              f" {_f(fl['scope_exit_not_due']['p50_us'])} | - |",
              "", f"Amortized: {fl['amortized_us_per_request'] or 0:.3f} us per request. The L1 lookup itself"
                  " (`get_or_load`) only appends the latency to a deque; bucketing runs inside the publish."]
    if r.get("errors"):
        L += ["", "## Sections that failed to run", ""] + [f"- {k}: `{v}`" for k, v in r["errors"].items()]
    return "\n".join(L) + "\n"


def plot(r: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = r.get("tiers")
    fig, ax = plt.subplots(figsize=(11, 5.5))
    if t:
        names = list(t["routes"])
        series = (("floor_trivial", "trivial-route floor", "#999999"), ("l1_hit", "L1 hit", "#2a9d8f"),
                  ("l2_hit", "L2 hit", "#e9c46a"), ("l3_load", "L3 load (PostgreSQL)", "#e76f51"))
        width = 0.2
        for i, (key, label, color) in enumerate(series):
            xs = [j + (i - 1.5) * width for j in range(len(names))]
            p50 = [t["routes"][n][key]["p50_us"] for n in names]
            p99 = [t["routes"][n][key]["p99_us"] for n in names]
            ax.bar(xs, p50, width, label=f"{label} p50", color=color)
            ax.scatter(xs, p99, marker="_", s=120, color="black", zorder=3, label="p99" if i == 0 else None)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names)
        ax.set_yscale("log")
        ax.set_ylabel("microseconds per request (log)")
        ax.set_title(f"Latency per tier through app(event, ctx) - {r['meta']['mode']} {r['meta']['timestamp']}")
        ax.legend(fontsize=8, ncol=3)
        ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def readme_table(r: dict[str, Any], verdicts: list[dict[str, Any]]) -> str:
    """The README's summary of this run: when, where, and every target with its verdict."""
    m = r["meta"]
    lines = [f"Latest `make bench{'' if m['mode'] == 'full' else '-quick'}` ({m['timestamp']}, {m['cpus']} CPUs,"
             f" {m.get('elapsed_s', 0):.0f} s; every figure next to its same-run floor in"
             " [bench/results/latest.md](bench/results/latest.md)):", "",
             "| target | result | detail |", "|---|---|---|"]
    lines += [f"| {v['target']} | {v['status']} | {v['detail']} |" for v in verdicts]
    return "\n".join(lines)


def replace_section(text: str, section: str) -> str:
    """`text` with what stands between the README markers replaced by `section`."""
    start, end = text.index(README_START) + len(README_START), text.index(README_END)
    return text[:start] + "\n" + section + "\n" + text[end:]


def write(r: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    os.makedirs(RESULTS, exist_ok=True)
    stamp = r["meta"]["timestamp"]
    verdicts = targets(r)
    r["targets"] = verdicts
    base = os.path.join(RESULTS, stamp)
    with open(base + ".json", "w") as fh:
        json.dump(r, fh, indent=1, default=str)
    png = base + ".png"
    try:
        plot(r, png)
    except Exception as exc:  # noqa: BLE001 - the numbers matter more than the picture
        r.setdefault("errors", {})["plot"] = repr(exc)
    md = markdown(r, verdicts, "latest.png")
    with open(base + ".md", "w") as fh:
        fh.write(md.replace("(latest.png)", f"({stamp}.png)"))
    if not r["meta"].get("complete"):  # --only runs leave latest.* and the README alone
        return verdicts, base + ".md"
    with open(os.path.join(RESULTS, "latest.md"), "w") as fh:
        fh.write(md)
    if os.path.exists(png):
        shutil.copyfile(png, os.path.join(RESULTS, "latest.png"))
    with open(README) as fh:
        readme = fh.read()
    with open(README, "w") as fh:
        fh.write(replace_section(readme, readme_table(r, verdicts)))
    return verdicts, base + ".md"
