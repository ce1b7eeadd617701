"""`infra/package.sh`: `chalice package` merged with infra/resources.json, linted offline.

The first run on a machine fills build/wheelhouse from the package index; after that the
Lambda zip is built from it offline, or reused from .chalice/deployments while the code is
unchanged (about 10 s in all then; up to about 30 s on a busy machine after a code change).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint_file

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ("APIHandler", "RefreshViews", "ExtendSlots")
DB_SECRET = {"Fn::GetAtt": ["Database", "MasterUserSecret.SecretArn"]}


@pytest.fixture(scope="module")
def package_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run infra/package.sh into a temporary directory; fail with its output if it fails."""
    out = tmp_path_factory.mktemp("package")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(["bash", str(ROOT / "infra" / "package.sh"), str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (out / "deployment.zip").is_file()
    return out


@pytest.fixture(scope="module")
def template(package_dir: Path) -> dict[str, Any]:
    return json.loads((package_dir / "sam.json").read_text())


def resources(template: dict[str, Any], type_name: str) -> dict[str, dict[str, Any]]:
    """The template's resources of one type, by logical id."""
    return {k: v for k, v in template["Resources"].items() if v.get("Type") == type_name}


def test_cfn_lint_finds_nothing(package_dir: Path) -> None:
    assert [str(m) for m in lint_file(package_dir / "sam.json")] == []


def test_every_function_runs_in_the_private_subnets(template: dict[str, Any]) -> None:
    functions = resources(template, "AWS::Serverless::Function")
    assert set(FUNCTIONS) <= set(functions)
    vpc = template["Globals"]["Function"]["VpcConfig"]
    assert vpc == {"SecurityGroupIds": [{"Ref": "FunctionSecurityGroup"}],
                   "SubnetIds": [{"Ref": "PrivateSubnetA"}, {"Ref": "PrivateSubnetB"}]}
    for name, function in functions.items():
        assert "VpcConfig" not in function["Properties"], f"{name} overrides the Globals VpcConfig"
        assert function["Properties"]["Role"] == {"Fn::GetAtt": ["DefaultRole", "Arn"]}
    role = template["Resources"]["DefaultRole"]["Properties"]
    assert {"Ref": "FunctionSecretsPolicy"} in role["ManagedPolicyArns"]
    assert any("AWSLambdaVPCAccessExecutionRole" in json.dumps(arn) for arn in role["ManagedPolicyArns"])


def test_functions_get_secrets_and_endpoints(template: dict[str, Any]) -> None:
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["DB_SECRET_ARN"] == DB_SECRET
    assert variables["REDIS_SECRET_ARN"] == {"Ref": "RedisAuthSecret"}
    assert variables["AUTH_SECRET_ARN"] == {"Ref": "AuthSecret"}
    assert variables["PGHOST"] == {"Fn::GetAtt": ["DbProxy", "Endpoint"]}
    assert variables["REDIS_HOST"] == {"Fn::GetAtt": ["RedisReplicationGroup", "PrimaryEndPoint.Address"]}
    assert (variables["PGSSLMODE"], variables["REDIS_TLS"]) == ("verify-full", "1")
    for name in FUNCTIONS:  # the stage's own variables stay on each function; SAM merges Globals in
        assert template["Resources"][name]["Properties"]["Environment"]["Variables"]["STAGE"] == "prod"

    statement = template["Resources"]["FunctionSecretsPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement == [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                          "Resource": [DB_SECRET, {"Ref": "RedisAuthSecret"}, {"Ref": "AuthSecret"}]}]
    assert resources(template, "AWS::SecretsManager::Secret").keys() == {"AuthSecret", "RedisAuthSecret"}
    endpoint = template["Resources"]["SecretsManagerEndpoint"]["Properties"]
    assert endpoint["PrivateDnsEnabled"] is True


def test_redis_replication_group_uses_tls_and_auth_token(template: dict[str, Any]) -> None:
    (group,) = resources(template, "AWS::ElastiCache::ReplicationGroup").values()
    props = group["Properties"]
    assert props["TransitEncryptionEnabled"] is True
    assert props["AuthToken"] == {
        "Fn::Sub": "{{resolve:secretsmanager:${RedisAuthSecret}:SecretString:authToken}}"}


def test_database_sits_behind_rds_proxy(template: dict[str, Any]) -> None:
    db = template["Resources"]["Database"]["Properties"]
    assert (db["Engine"], db["ManageMasterUserPassword"], db["PubliclyAccessible"]) == ("postgres", True, False)
    assert db["DBSubnetGroupName"] == {"Ref": "DbSubnetGroup"}
    proxy = template["Resources"]["DbProxy"]["Properties"]
    assert proxy["EngineFamily"] == "POSTGRESQL" and proxy["RequireTLS"] is True
    assert proxy["Auth"][0]["SecretArn"] == DB_SECRET
    target = template["Resources"]["DbProxyTargetGroup"]["Properties"]
    assert target["DBInstanceIdentifiers"] == [{"Ref": "Database"}]
    role_statements = template["Resources"]["DbProxyRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    assert {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": DB_SECRET} in (
        role_statements["Statement"])


def test_refresh_function_has_reserved_concurrency_one(template: dict[str, Any]) -> None:
    refresh = template["Resources"]["RefreshViews"]["Properties"]
    assert refresh["ReservedConcurrentExecutions"] == 1
    assert refresh["Events"]["RefreshViewsEvent"]["Properties"]["Schedule"] == "rate(1 minute)"


def test_alarms(template: dict[str, Any]) -> None:
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    assert alarms.keys() == {"CacheHitRateAlarm", "RefreshFailuresAlarm"}

    hit_rate = alarms["CacheHitRateAlarm"]["Properties"]
    metrics = {m["Id"]: m for m in hit_rate["Metrics"]}
    assert metrics["hitrate"]["Expression"] == "(l1 + l2) / (l1 + l2 + db)"
    assert {m["MetricStat"]["Metric"]["MetricName"] for m in metrics.values() if "MetricStat" in m} == {
        "L1Hits", "L2Hits", "DbLoads"}
    assert {m["MetricStat"]["Metric"]["Namespace"] for m in metrics.values() if "MetricStat" in m} == {
        "HospitalBooking"}
    assert (hit_rate["ComparisonOperator"], hit_rate["Threshold"]) == ("LessThanThreshold", 0.9)
    period = metrics["l1"]["MetricStat"]["Period"]
    assert period * hit_rate["EvaluationPeriods"] == period * hit_rate["DatapointsToAlarm"] == 15 * 60

    refresh = alarms["RefreshFailuresAlarm"]["Properties"]
    stats = {m["Id"]: m["MetricStat"]["Metric"] for m in refresh["Metrics"] if "MetricStat" in m}
    assert stats["errors"]["Namespace"] == "AWS/Lambda"
    assert stats["errors"]["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "RefreshViews"}}]
    assert (stats["refresh"]["Namespace"], stats["refresh"]["MetricName"]) == ("HospitalBooking", "RefreshFailures")
    assert (refresh["ComparisonOperator"], refresh["Threshold"]) == ("GreaterThanOrEqualToThreshold", 1)
