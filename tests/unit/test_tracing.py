"""When X-Ray tracing is on (chalicelib/observability.py): only in Lambda, only when the
stage asks for it with TRACING=1. The zips themselves are run in tests/e2e/test_package.py."""
from __future__ import annotations

import pytest

from chalicelib.observability import tracing_enabled

LAMBDA = {"AWS_LAMBDA_FUNCTION_NAME": "hospital-booking-APIHandler"}


@pytest.mark.parametrize(("env", "expected"), [
    ({}, False),
    ({"TRACING": "1"}, False),  # not in Lambda: no daemon to send to
    (LAMBDA, False),  # the default stage: off, and aws_xray_sdk is not in its zip
    ({**LAMBDA, "TRACING": "0"}, False),
    ({**LAMBDA, "TRACING": "1"}, True),
    ({**LAMBDA, "TRACING": "true"}, True),
    ({**LAMBDA, "TRACING": "1", "POWERTOOLS_TRACE_DISABLED": "true"}, False),
    ({**LAMBDA, "TRACING": "1", "AWS_CHALICE_CLI_MODE": "true"}, False),  # chalice package/local
])
def test_tracing_only_in_lambda_when_the_stage_asks(env: dict[str, str], expected: bool) -> None:
    assert tracing_enabled(env) is expected
