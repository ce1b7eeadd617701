"""`infra/package.sh`: `chalice package` merged with infra/resources.json, linted offline;
then the zip itself, run the way Lambda runs it (tools/lambda_zip_check.py: `python -S`,
only the unpacked zip and the standard library on sys.path), for the default stage and for
the stage with X-Ray on.

The first run on a machine fills build/wheelhouse from the package index; after that the
Lambda zip is built from it offline, or reused from .chalice/deployments while the code is
unchanged (about 10 s in all then; up to about 30 s on a busy machine after a code change),
per stage. Running the two zips adds about 3 s.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cfnlint.api import lint_file

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ("APIHandler", "RefreshViews", "ExtendSlots")
DB_SECRET = {"Fn::GetAtt": ["Database", "MasterUserSecret.SecretArn"]}
APP_DB_SECRET = {"Ref": "DbAppSecret"}
XRAY_STAGE = "prod-xray"


def _tool(name: str) -> ModuleType:
    """A module of tools/ (not a package), loaded from its file."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _package(out: Path, stage: str) -> Path:
    """Run infra/package.sh for `stage` into `out`; fail with its output if it fails."""
    env = {**os.environ, "STAGE": stage,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(["bash", str(ROOT / "infra" / "package.sh"), str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (out / "deployment.zip").is_file()
    return out


@pytest.fixture(scope="module")
def package_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default (prod) package in a temporary directory."""
    return _package(tmp_path_factory.mktemp("package"), "prod")


@pytest.fixture(scope="module")
def xray_package_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package of the stage with X-Ray on."""
    return _package(tmp_path_factory.mktemp("package-xray"), XRAY_STAGE)


@pytest.fixture(scope="module")
def template(package_dir: Path) -> dict[str, Any]:
    return json.loads((package_dir / "sam.json").read_text())


@pytest.fixture(scope="module")
def zip_check() -> ModuleType:
    return _tool("lambda_zip_check")


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
    assert variables["DB_SECRET_ARN"] == APP_DB_SECRET  # the app's login, never the master user
    assert variables["REDIS_SECRET_ARN"] == {"Ref": "RedisAuthSecret"}
    assert variables["AUTH_SECRET_ARN"] == {"Ref": "AuthSecret"}
    assert variables["PGHOST"] == {"Fn::GetAtt": ["DbProxy", "Endpoint"]}
    assert variables["REDIS_HOST"] == {"Fn::GetAtt": ["RedisReplicationGroup", "PrimaryEndPoint.Address"]}
    assert (variables["PGSSLMODE"], variables["REDIS_TLS"]) == ("verify-full", "1")
    for name in FUNCTIONS:  # the stage's own variables stay on each function; SAM merges Globals in
        assert template["Resources"][name]["Properties"]["Environment"]["Variables"]["STAGE"] == "prod"

    statement = template["Resources"]["FunctionSecretsPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement == [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                          "Resource": [APP_DB_SECRET, {"Ref": "RedisAuthSecret"}, {"Ref": "AuthSecret"}]}]
    assert resources(template, "AWS::SecretsManager::Secret").keys() == {"AuthSecret", "RedisAuthSecret",
                                                                         "DbAppSecret"}
    generated = template["Resources"]["DbAppSecret"]["Properties"]["GenerateSecretString"]
    assert generated["GenerateStringKey"] == "password"
    assert generated["SecretStringTemplate"] == {"Fn::Sub": '{"username": "${DbAppUsername}"}'}
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
    assert [auth["SecretArn"] for auth in proxy["Auth"]] == [DB_SECRET, APP_DB_SECRET]  # migrate, the app
    target = template["Resources"]["DbProxyTargetGroup"]["Properties"]
    assert target["DBInstanceIdentifiers"] == [{"Ref": "Database"}]
    role_statements = template["Resources"]["DbProxyRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    assert {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": [DB_SECRET, APP_DB_SECRET]} in (
        role_statements["Statement"])
    assert template["Resources"]["Database"]["Properties"]["DeletionProtection"] is True


def test_every_log_group_expires(template: dict[str, Any]) -> None:
    log_groups = resources(template, "AWS::Logs::LogGroup")
    assert {group["Properties"]["LogGroupName"]["Fn::Sub"] for group in log_groups.values()} == {
        f"/aws/lambda/${{{name}}}" for name in FUNCTIONS}
    assert {group["Properties"]["RetentionInDays"] for group in log_groups.values()} == {90}


def test_refresh_function_has_reserved_concurrency_one(template: dict[str, Any]) -> None:
    refresh = template["Resources"]["RefreshViews"]["Properties"]
    assert refresh["ReservedConcurrentExecutions"] == 1
    assert refresh["Events"]["RefreshViewsEvent"]["Properties"]["Schedule"] == "rate(1 minute)"


def test_alarms(template: dict[str, Any]) -> None:
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    assert alarms.keys() == {"CacheHitRateAlarm", "RefreshFailuresAlarm", "RedisBreakerAlarm", "StaleServedAlarm",
                             "ApiErrorsAlarm", "ApiThrottlesAlarm", "Api5xxAlarm", "ExtendSlotsErrorsAlarm"}
    def of_function(logical_id: str) -> list[dict[str, Any]]:
        return [{"Name": "FunctionName", "Value": {"Ref": logical_id}}]

    for name, namespace, metric, dimensions in (
            ("ApiErrorsAlarm", "AWS/Lambda", "Errors", of_function("APIHandler")),
            ("ApiThrottlesAlarm", "AWS/Lambda", "Throttles", of_function("APIHandler")),
            ("ExtendSlotsErrorsAlarm", "AWS/Lambda", "Errors", of_function("ExtendSlots")),
            ("Api5xxAlarm", "AWS/ApiGateway", "5XXError",
             [{"Name": "ApiName", "Value": "hospital-booking"}, {"Name": "Stage", "Value": "api"}])):
        props = alarms[name]["Properties"]
        (query,) = props["Metrics"]
        assert (query["MetricStat"]["Metric"]["Namespace"], query["MetricStat"]["Metric"]["MetricName"],
                query["MetricStat"]["Metric"]["Dimensions"]) == (namespace, metric, dimensions)
        assert props["AlarmActions"] == props["OKActions"] == [{"Ref": "AlarmTopic"}]
    api = template["Resources"]["RestAPI"]["Properties"]
    assert (api["DefinitionBody"]["info"]["title"], api["StageName"]) == ("hospital-booking", "api")  # Api5xxAlarm
    for name, metric in (("RedisBreakerAlarm", "BreakerOpens"), ("StaleServedAlarm", "StaleServed")):
        props = alarms[name]["Properties"]
        (query,) = props["Metrics"]
        stat = query["MetricStat"]
        assert (stat["Metric"]["Namespace"], stat["Metric"]["MetricName"], stat["Stat"]) == (
            "HospitalBooking", metric, "Sum")
        assert stat["Metric"]["Dimensions"] == [{"Name": "service", "Value": "hospital-booking"}]
        assert props["AlarmActions"] == props["OKActions"] == [{"Ref": "AlarmTopic"}]
    (dashboard,) = resources(template, "AWS::CloudWatch::Dashboard").values()
    assert "Fn::Sub" in dashboard["Properties"]["DashboardBody"]  # widgets: tests/integration/test_dashboard.py

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


def test_every_stage_keeps_xray_and_tracing_together() -> None:
    stage_tool = _tool("chalice_stage")
    config = stage_tool.load_config()
    assert {stage: stage_tool.problems(config, stage) for stage in config["stages"]} == {
        stage: [] for stage in config["stages"]}
    assert [s for s in config["stages"] if stage_tool.xray_enabled(config, s)] == [XRAY_STAGE]


def test_default_package_has_tracing_off(template: dict[str, Any], package_dir: Path) -> None:
    for name in FUNCTIONS:
        props = template["Resources"][name]["Properties"]
        assert props["Tracing"] == "PassThrough" and "TRACING" not in props["Environment"]["Variables"]
    with zipfile.ZipFile(package_dir / "deployment.zip") as archive:
        assert not [n for n in archive.namelist() if n.startswith(("aws_xray_sdk/", "botocore/", "boto3/"))]


def test_xray_package_traces_every_function(xray_package_dir: Path) -> None:
    template = json.loads((xray_package_dir / "sam.json").read_text())
    for name in FUNCTIONS:
        props = template["Resources"][name]["Properties"]
        assert (props["Tracing"], props["Environment"]["Variables"]["TRACING"]) == ("Active", "1")
    policy = json.dumps(template["Resources"]["DefaultRole"]["Properties"]["Policies"])
    assert "xray:PutTraceSegments" in policy
    with zipfile.ZipFile(xray_package_dir / "deployment.zip") as archive:
        names = archive.namelist()
    assert any(n.startswith("aws_xray_sdk/") for n in names)
    assert not [n for n in names if n.startswith(("botocore/", "boto3/"))], "the Lambda runtime provides botocore"


def test_default_zip_answers_without_site_packages(zip_check: ModuleType, package_dir: Path) -> None:
    result = zip_check.probe_package("prod", package_dir)
    assert result.ok, result.problems
    assert not result.probe["xray_loaded"] and not result.probe["boto_loaded"]


def test_xray_zip_answers_and_sends_segments(zip_check: ModuleType, xray_package_dir: Path) -> None:
    result = zip_check.probe_package(XRAY_STAGE, xray_package_dir)
    assert result.ok, result.problems
    assert "aws_xray_sdk" in result.probe["modules"]["zip"]


def test_prod_accepts_only_the_hospital_s_identity_provider(template: dict[str, Any]) -> None:
    """The prod stage switches the development tokens off; the provider comes from parameters
    a deployment must give (no default issuer or audience)."""
    parameters = template["Parameters"]
    assert "Default" not in parameters["OidcIssuer"] and "Default" not in parameters["OidcAudience"]
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["AUTH_OIDC_ISSUER"] == {"Ref": "OidcIssuer"}
    assert variables["AUTH_OIDC_AUDIENCE"] == {"Ref": "OidcAudience"}
    assert variables["AUTH_OIDC_JWKS_URL"] == {"Ref": "OidcJwksUrl"}
    assert {variables[f"AUTH_{name}_CLAIM"]["Ref"] for name in ("TENANT", "ROLE", "PATIENT")} == {
        "OidcTenantClaim", "OidcRoleClaim", "OidcPatientClaim"}
    for name in FUNCTIONS:
        assert template["Resources"][name]["Properties"]["Environment"]["Variables"]["AUTH_SHARED_SECRET_TOKENS"] == "0"


def test_functions_reach_the_provider_s_keys_through_one_nat_gateway(template: dict[str, Any]) -> None:
    (nat,) = resources(template, "AWS::EC2::NatGateway").values()
    assert nat["Properties"]["SubnetId"] == {"Ref": "PublicSubnet"}
    routes = resources(template, "AWS::EC2::Route")
    assert routes["PrivateDefaultRoute"]["Properties"] == {
        "RouteTableId": {"Ref": "PrivateRouteTable"}, "DestinationCidrBlock": "0.0.0.0/0",
        "NatGatewayId": {"Ref": "NatGateway"}}
    assert routes["PublicDefaultRoute"]["Properties"]["GatewayId"] == {"Ref": "InternetGateway"}
    egress = template["Resources"]["FunctionSecurityGroup"]["Properties"]["SecurityGroupEgress"]
    to_anywhere = [rule for rule in egress if rule["CidrIp"] == "0.0.0.0/0"]
    assert [(rule["FromPort"], rule["ToPort"]) for rule in to_anywhere] == [(443, 443)]
    subnets = resources(template, "AWS::EC2::Subnet")
    assert subnets["PublicSubnet"]["Properties"]["MapPublicIpOnLaunch"] is False
    functions_in = {json.dumps(s) for s in template["Globals"]["Function"]["VpcConfig"]["SubnetIds"]}
    assert json.dumps({"Ref": "PublicSubnet"}) not in functions_in
