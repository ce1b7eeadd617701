"""The CloudWatch dashboard and alarms of infra/resources.json refer only to EMF metrics
the app really prints, with the same dimension set: the cache deltas (CacheMetrics.flush,
after real requests) and the refresh job's metrics (a real refresh). RefreshFailures is
printed only by a failed refresh: tests/e2e/test_jobs.py::test_failed_refresh_is_recorded.
The packaged template is linted and checked in tests/e2e/test_package.py."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "HospitalBooking"


def _resources() -> dict[str, Any]:
    return json.loads((ROOT / "infra" / "resources.json").read_text())["Resources"]


def _alarm_ids() -> set[str]:
    return {k for k, v in _resources().items() if v.get("Type") == "AWS::CloudWatch::Alarm"}


def _dashboard() -> dict[str, Any]:
    (board,) = [r for r in _resources().values() if r.get("Type") == "AWS::CloudWatch::Dashboard"]
    body = board["Properties"]["DashboardBody"]["Fn::Sub"]
    names = set(re.findall(r"\$\{([^}]+)\}", body))
    assert names <= {"AWS::Region", "RefreshViews"} | {f"{alarm}.Arn" for alarm in _alarm_ids()}, names
    return json.loads(re.sub(r"\$\{[^}]+\}", "x", body))


def _dashboard_metrics() -> set[tuple[str, frozenset[str]]]:
    """(metric name, dimension names) of every HospitalBooking metric a widget plots."""
    found = set()
    for widget in _dashboard()["widgets"]:
        for row in widget["properties"].get("metrics", []):
            if row and row[0] == NAMESPACE:
                parts = [p for p in row if not isinstance(p, dict)]
                dims = parts[2:]
                found.add((parts[1], frozenset(dims[0::2])))
    return found


def _alarm_metrics() -> set[tuple[str, frozenset[str]]]:
    found = set()
    for resource in _resources().values():
        if resource.get("Type") != "AWS::CloudWatch::Alarm":
            continue
        for query in resource["Properties"]["Metrics"]:
            metric = query.get("MetricStat", {}).get("Metric")
            if metric and metric["Namespace"] == NAMESPACE:
                found.add((metric["MetricName"], frozenset(d["Name"] for d in metric["Dimensions"])))
    return found


def _emitted(out: str) -> set[tuple[str, frozenset[str]]]:
    found = set()
    for line in out.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == NAMESPACE
            for dims in directive["Dimensions"]:
                for metric in directive["Metrics"]:
                    found.add((metric["Name"], frozenset(dims)))
    return found


def test_dashboard_shows_what_an_operator_needs():
    names = {name for name, _ in _dashboard_metrics()}
    assert {"L1Hits", "L1Misses", "L2Hits", "L2Misses", "DbLoads", "DbErrors", "L1LatencyUs", "L2LatencyUs",
            "DbLatencyUs", "StaleServed", "BreakerOpens", "RefreshDurationMs", "RefreshFailures"} <= names
    widgets = _dashboard()["widgets"]
    titles = {w["properties"].get("title") for w in widgets}
    assert {"Hit rate per tier (%)", "p99 latency per tier (us)", "Alarms"} <= titles
    p99 = next(w for w in widgets if w["properties"].get("title") == "p99 latency per tier (us)")
    assert {row[-1]["stat"] for row in p99["properties"]["metrics"]} == {"p99"}
    alarms = next(w for w in widgets if w["type"] == "alarm")
    assert len(alarms["properties"]["alarms"]) == len(_alarm_ids())  # ARNs of alarms only: _dashboard


def test_dashboard_and_alarms_use_only_emitted_metrics(client, app_env, capfd):
    from chalicelib import runtime
    from chalicelib.jobs.refresh import refresh_views

    headers = app_env.headers()
    container = runtime.current()
    container.metrics.flush(container.cache)
    capfd.readouterr()
    for _ in range(3):
        for path in ("/api/departments?clientId=1", "/api/doctors?clientId=1"):
            assert client.http.get(path, headers=headers).status_code == 200
    emitted_values = container.metrics.flush(container.cache)
    refresh_views()
    emitted = _emitted(capfd.readouterr().out)
    emitted.add(("RefreshFailures", frozenset({"service"})))  # see the module docstring
    assert _dashboard_metrics() <= emitted, _dashboard_metrics() - emitted
    assert _alarm_metrics() <= emitted, _alarm_metrics() - emitted
    # the latency metrics carry the interval's distribution, one value per sample when few
    assert len(emitted_values["L1LatencyUs"][1]) == emitted_values["L1Hits"][1] + emitted_values["L1Misses"][1]
