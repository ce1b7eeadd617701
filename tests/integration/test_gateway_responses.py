"""infra/resources.json: API Gateway's own answers (gateway responses) in the error shape.

API Gateway answers some requests without invoking the Lambda: a path or method it has no
resource for (MISSING_AUTHENTICATION_TOKEN, by default a 403 whose message repeats the
Authorization header), throttling, an over-large body, an integration timeout... The merge
template sets every gateway response type on Chalice's `RestAPI` (an AWS::Serverless::Api)
through SAM's `GatewayResponses` property: SAM writes them into the API definition, so the
stage's deployment carries them (a separate AWS::ApiGateway::GatewayResponse resource would
not start a new deployment when it changes).

cfn-lint does not look inside SAM's GatewayResponses, so this module checks them itself:
valid response types and properties, each template one fixed JSON document in the shape.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from chalicelib.http_errors import describe

ROOT = Path(__file__).resolve().parents[2]

# Every GatewayResponse ResponseType CloudFormation accepts.
RESPONSE_TYPES = frozenset({
    "DEFAULT_4XX", "DEFAULT_5XX", "RESOURCE_NOT_FOUND", "UNAUTHORIZED", "INVALID_API_KEY", "ACCESS_DENIED",
    "AUTHORIZER_FAILURE", "AUTHORIZER_CONFIGURATION_ERROR", "INVALID_SIGNATURE", "EXPIRED_TOKEN",
    "MISSING_AUTHENTICATION_TOKEN", "INTEGRATION_FAILURE", "INTEGRATION_TIMEOUT", "API_CONFIGURATION_ERROR",
    "UNSUPPORTED_MEDIA_TYPE", "BAD_REQUEST_PARAMETERS", "BAD_REQUEST_BODY", "REQUEST_TOO_LARGE", "THROTTLED",
    "QUOTA_EXCEEDED", "WAF_FILTERED",
})
# The types that must be set, with the status and code each answers (None: the type's own status).
REQUIRED = {
    "DEFAULT_4XX": (None, "bad_request"),
    "DEFAULT_5XX": (None, "unavailable"),
    "MISSING_AUTHENTICATION_TOKEN": ("404", "not_found"),
    "RESOURCE_NOT_FOUND": ("404", "not_found"),
    "UNAUTHORIZED": ("401", "unauthorized"),
    "ACCESS_DENIED": ("403", "forbidden"),
    "THROTTLED": ("429", "too_many_requests"),
    "QUOTA_EXCEEDED": ("429", "too_many_requests"),
    "REQUEST_TOO_LARGE": ("413", "payload_too_large"),
    "UNSUPPORTED_MEDIA_TYPE": ("415", "unsupported_media_type"),
    "BAD_REQUEST_BODY": ("400", "validation_error"),
    "BAD_REQUEST_PARAMETERS": ("400", "validation_error"),
    "INTEGRATION_FAILURE": ("502", "bad_gateway"),
    "INTEGRATION_TIMEOUT": ("504", "gateway_timeout"),
}
PROPERTIES = frozenset({"ResponseParameters", "ResponseTemplates", "StatusCode"})
SNAKE_CASE = re.compile(r"^[a-z]+(_[a-z]+)*$")


@pytest.fixture(scope="module")
def gateway_responses() -> dict[str, dict[str, Any]]:
    """RestAPI.Properties.GatewayResponses of the merge template."""
    template = json.loads((ROOT / "infra" / "resources.json").read_text())
    rest_api = template["Resources"]["RestAPI"]
    # Merged into the RestAPI Chalice generates: no Type of its own, only properties (the
    # gateway responses, and the stage's throttling: tests/integration/test_security_round_two.py).
    assert set(rest_api) == {"Properties"}
    assert set(rest_api["Properties"]) == {"GatewayResponses", "MethodSettings"}
    return rest_api["Properties"]["GatewayResponses"]


def _document(response: dict[str, Any]) -> dict[str, Any]:
    """The JSON body of a gateway response's application/json template."""
    templates = response["ResponseTemplates"]
    assert set(templates) == {"application/json"}
    return json.loads(templates["application/json"])


def test_every_response_type_is_set_and_valid(gateway_responses: dict[str, dict[str, Any]]) -> None:
    assert set(gateway_responses) <= RESPONSE_TYPES
    assert set(gateway_responses) >= set(REQUIRED)
    assert set(gateway_responses) == RESPONSE_TYPES  # nothing left to API Gateway's own bodies


@pytest.mark.parametrize("response_type", sorted(RESPONSE_TYPES))
def test_each_template_is_one_fixed_document_in_the_shape(gateway_responses: dict[str, dict[str, Any]],
                                                         response_type: str) -> None:
    response = gateway_responses[response_type]
    assert set(response) <= PROPERTIES
    if "StatusCode" in response:
        assert isinstance(response["StatusCode"], str) and re.fullmatch(r"[1-5][0-9]{2}", response["StatusCode"])
    template = response["ResponseTemplates"]["application/json"]
    # No VTL at all: nothing of the request can reach the body. $context.error.message in
    # particular quotes the Authorization header on an unknown path ("Authorization=...").
    assert "$" not in template and "#" not in template
    document = _document(response)
    assert set(document) == {"error"}
    assert set(document["error"]) == {"code", "message"}
    assert SNAKE_CASE.match(document["error"]["code"])
    assert document["error"]["message"].strip()


@pytest.mark.parametrize("response_type", sorted(REQUIRED))
def test_required_types_answer_their_status_and_code(gateway_responses: dict[str, dict[str, Any]],
                                                     response_type: str) -> None:
    status, code = REQUIRED[response_type]
    response = gateway_responses[response_type]
    assert response.get("StatusCode") == status
    assert _document(response)["error"]["code"] == code


def test_codes_match_the_other_layers(gateway_responses: dict[str, dict[str, Any]]) -> None:
    """A status answers the same code from API Gateway as from Chalice or the local server
    (400s excepted: API Gateway's request validation errors are the API's validation_error)."""
    for response_type, response in gateway_responses.items():
        if "StatusCode" in response and response["StatusCode"] != "400":
            assert _document(response)["error"]["code"] == describe(int(response["StatusCode"]))[0], response_type


def test_unknown_path_message_says_unknown_path_or_method(gateway_responses: dict[str, dict[str, Any]]) -> None:
    """API Gateway answers an unknown path and a known path's missing method alike (its
    MISSING_AUTHENTICATION_TOKEN); the 404's message says so."""
    message = _document(gateway_responses["MISSING_AUTHENTICATION_TOKEN"])["error"]["message"]
    assert "path" in message and "method" in message


def test_the_deployed_api_declares_no_options_method(app_env: Any) -> None:
    """No route has CORS, so the API definition Chalice deploys has no OPTIONS method (no
    mock preflight answering 200): API Gateway answers OPTIONS as any undeclared method,
    MISSING_AUTHENTICATION_TOKEN, 404 not_found; Chalice and `serve` answer 405."""
    from chalice.deploy.swagger import CFNSwaggerGenerator

    import app as app_module

    paths = CFNSwaggerGenerator().generate_swagger(app_module.app)["paths"]
    assert "/api/departments" in paths
    methods = {method for methods in paths.values() for method in methods}
    # put/patch: FHIR updates and admin writes; delete: absences
    assert "options" not in methods and methods <= {"get", "post", "put", "patch", "delete"}
