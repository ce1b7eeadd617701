"""A local AWS endpoint for the AWS-facing tests, and localstack-client clients on it.

`tools/localstack_test.sh` sets AWS_ENDPOINT_URL to a real LocalStack; without it (the
normal `make test`) the tests get moto's server on a free loopback port, one per session.
Import the fixture into a test module (`from tests.helpers_aws import aws_endpoint`).
"""
from __future__ import annotations

import os
from typing import Any, Iterator
from urllib.parse import urlsplit

import pytest
from localstack_client.session import Session as LocalstackSession
from moto.server import ThreadedMotoServer

# Read at import (collection), before any test's fixtures clear the endpoint variables.
ENDPOINT_FROM_ENV = os.environ.get("AWS_ENDPOINT_URL", "").strip()
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_EC2_METADATA_DISABLED": "true"}


def backend_name() -> str:
    """'LocalStack' or 'moto server', for messages."""
    return "LocalStack" if ENDPOINT_FROM_ENV else "moto server"


@pytest.fixture(scope="session")
def aws_endpoint() -> Iterator[str]:
    """The endpoint URL: AWS_ENDPOINT_URL when set, else a ThreadedMotoServer started here."""
    if ENDPOINT_FROM_ENV:
        yield ENDPOINT_FROM_ENV.rstrip("/")
        return
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def aws_client(endpoint: str, service: str) -> Any:
    """A boto3 client for `service` on `endpoint`, made by localstack-client's session."""
    return LocalstackSession(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1",
                             localstack_host=urlsplit(endpoint).netloc).client(service)
