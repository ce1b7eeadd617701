"""The schedule's EventBridge rules and the template's CloudWatch alarms, on a local AWS endpoint.

moto's server in `make test`, real LocalStack under `tools/localstack_test.sh` (see
tests/helpers_aws.py). The rules are the ones `chalice package` makes from app.py's
schedules; the alarms are infra/resources.json's, fed with the EMF lines the app prints
(in AWS, CloudWatch Logs turns those lines into metrics; here the test does, as the EMF
specification says). The scheduled handlers themselves are tested in tests/e2e/test_jobs.py.
"""
from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import ClientError
from chalice.app import ScheduledEventConfig

from app import app
from chalicelib.observability import emit_metrics
from tests.helpers_aws import CREDENTIALS, aws_client, aws_endpoint  # noqa: F401  (aws_endpoint: a fixture)

ROOT = Path(__file__).resolve().parents[2]
RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
# README: the dashboard is fresh within the refresh interval (1 min) + 30 s; the slot job
# keeps SLOT_HORIZON_DAYS ahead, so it must run at least daily.
MAX_INTERVAL_S = {"refresh_views": 60, "extend_slots": 86400}


@pytest.fixture(autouse=True)
def aws_env(aws_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials and the endpoint; no profile."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": aws_endpoint}.items():
        monkeypatch.setenv(name, value)


def schedules() -> dict[str, str]:
    """app.py's scheduled functions and their expressions, as `chalice package` writes them."""
    return {source.name: source.schedule_expression.to_string()
            for source in app.event_sources if isinstance(source, ScheduledEventConfig)}


def interval_s(expression: str) -> int:
    """Seconds between runs of a `rate(N unit)` expression (singular unit exactly when N is 1)."""
    match = RATE.match(expression)
    assert match, f"not a rate expression: {expression}"
    count, unit = int(match.group(1)), match.group(2)
    assert (count == 1) == (not unit.endswith("s")), f"EventBridge wants '1 minute' but '5 minutes': {expression}"
    return count * UNIT_SECONDS[unit.rstrip("s")]


def test_schedule_rules_as_deployed(aws_endpoint: str) -> None:
    events = aws_client(aws_endpoint, "events")
    account = aws_client(aws_endpoint, "sts").get_caller_identity()["Account"]
    with pytest.raises(ClientError) as refused:  # the endpoint does check expressions
        events.put_rule(Name=f"hb-bad-{uuid.uuid4().hex[:8]}", ScheduleExpression="rate(one minute)")
    assert refused.value.response["Error"]["Code"] == "ValidationException"

    found = schedules()
    assert found.keys() == MAX_INTERVAL_S.keys()
    suffix = uuid.uuid4().hex[:8]
    for name, expression in found.items():
        rule, function = f"hospital-booking-{name}-{suffix}", f"hospital-booking-prod-{name}-{suffix}"
        function_arn = f"arn:aws:lambda:us-east-1:{account}:function:{function}"
        rule_arn = events.put_rule(Name=rule, ScheduleExpression=expression, State="ENABLED")["RuleArn"]
        assert events.put_targets(Rule=rule, Targets=[{"Id": "1", "Arn": function_arn}])["FailedEntryCount"] == 0

        described = events.describe_rule(Name=rule)
        assert (described["Arn"], described["State"], described["EventBusName"]) == (rule_arn, "ENABLED", "default")
        assert interval_s(described["ScheduleExpression"]) <= MAX_INTERVAL_S[name], described["ScheduleExpression"]
        assert [t["Arn"] for t in events.list_targets_by_rule(Rule=rule)["Targets"]] == [function_arn]
        assert events.list_rule_names_by_target(TargetArn=function_arn)["RuleNames"] == [rule]


def template_alarms() -> dict[str, dict[str, Any]]:
    """infra/resources.json's alarms, by logical id."""
    resources = json.loads((ROOT / "infra" / "resources.json").read_text())["Resources"]
    return {k: v["Properties"] for k, v in resources.items() if v.get("Type") == "AWS::CloudWatch::Alarm"}


def resolve(value: Any, refs: dict[str, str]) -> Any:
    """The value with each {"Ref": id} replaced by refs[id], as CloudFormation would."""
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            return refs[value["Ref"]]
        return {k: resolve(v, refs) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, refs) for v in value]
    return value


def emf_to_metric_data(blob: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """One EMF line as CloudWatch Logs extracts it: (namespace, PutMetricData entries)."""
    (directive,) = blob["_aws"]["CloudWatchMetrics"]
    stamp = datetime.fromtimestamp(blob["_aws"]["Timestamp"] / 1000, tz=timezone.utc)
    data = []
    for dimension_set in directive["Dimensions"]:
        dimensions = [{"Name": d, "Value": str(blob[d])} for d in dimension_set]
        for metric in directive["Metrics"]:
            value = blob[metric["Name"]]
            data.append({"MetricName": metric["Name"], "Dimensions": dimensions, "Timestamp": stamp,
                         "Unit": metric.get("Unit", "None"),
                         "Values": [float(v) for v in (value if isinstance(value, list) else [value])]})
    return directive["Namespace"], data


def test_alarms_watch_the_metrics_the_app_emits(aws_endpoint: str, capsys: pytest.CaptureFixture[str]) -> None:
    cloudwatch = aws_client(aws_endpoint, "cloudwatch")
    refs = {"AlarmTopic": "arn:aws:sns:us-east-1:000000000000:hb-alarms", "RefreshViews": "hb-refresh",
            "APIHandler": "hb-api", "ExtendSlots": "hb-extend"}
    suffix = uuid.uuid4().hex[:8]
    queries: dict[str, dict[str, Any]] = {}
    for logical_id, properties in template_alarms().items():
        name = f"{logical_id}-{suffix}"
        cloudwatch.put_metric_alarm(AlarmName=name, **resolve(properties, refs))
        (stored,) = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
        assert stored["Threshold"] == float(properties["Threshold"])
        assert [q["Id"] for q in stored["Metrics"]] == [q["Id"] for q in properties["Metrics"]]
        for query in stored["Metrics"]:
            stat = query.get("MetricStat")
            if stat and not stat["Metric"]["Namespace"].startswith("AWS/"):  # Lambda's and API Gateway's are AWS's
                queries[f"{query['Id']}_{len(queries)}"] = stat
    assert {s["Metric"]["MetricName"] for s in queries.values()} == {"L1Hits", "L2Hits", "DbLoads", "RefreshFailures",
                                                                    "BreakerOpens", "StaleServed"}

    def sums() -> dict[str, float]:
        now = datetime.now(timezone.utc)
        answer = cloudwatch.get_metric_data(
            MetricDataQueries=[{"Id": key, "MetricStat": stat, "ReturnData": True} for key, stat in queries.items()],
            StartTime=now - timedelta(minutes=30), EndTime=now + timedelta(minutes=5))
        return {r["Id"]: sum(r["Values"]) for r in answer["MetricDataResults"]}

    before = sums()  # the metrics are not per test: another run on the same endpoint may have sent some
    # What the app prints: the cache deltas (CacheMetrics.flush) and a failed refresh (jobs.refresh).
    sent = {"L1Hits": 41.0, "L2Hits": 7.0, "DbLoads": 3.0, "RefreshFailures": 1.0, "BreakerOpens": 2.0,
            "StaleServed": 5.0}
    emit_metrics({k: (MetricUnit.Count, v) for k, v in sent.items() if k != "RefreshFailures"})
    emit_metrics({"RefreshFailures": (MetricUnit.Count, sent["RefreshFailures"])})
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert len(lines) == 2
    for blob in lines:
        namespace, data = emf_to_metric_data(blob)
        cloudwatch.put_metric_data(Namespace=namespace, MetricData=data)

    # Each alarm query finds exactly what was sent: same namespace, name and dimension set.
    after = sums()
    assert {key: after.get(key, 0.0) - before.get(key, 0.0) for key in queries} == {
        key: sent[stat["Metric"]["MetricName"]] for key, stat in queries.items()}
    # AWS matches dimension sets exactly, LocalStack 4.13 also a subset: so compare them as stored.
    for stat in queries.values():
        metric = stat["Metric"]
        listed = cloudwatch.list_metrics(Namespace=metric["Namespace"], MetricName=metric["MetricName"])["Metrics"]
        assert metric["Dimensions"] in [m["Dimensions"] for m in listed], (metric, listed)
