"""The plan memo of cached reads (chalicelib.web.PlanMemo): built once per distinct request,
re-verified when the token expires, emptied when settings or cache change, bounded, and
never remembering a refused request."""
from __future__ import annotations

from typing import Iterator, Optional

import pytest
from chalice.app import Request

from chalicelib import web
from chalicelib.auth import issue_token
from chalicelib.booking.caching import get_cache, reset_cache
from chalicelib.booking.resources import RESOURCES
from chalicelib.http import ApiError
from chalicelib.settings import reset_settings
from tests.helpers_servers import patched_environ

SECRET = "unit-secret-not-for-production-0123456789"


@pytest.fixture(autouse=True)
def offline_app() -> Iterator[None]:
    """Settings with Redis disabled and a known token secret (nothing connects)."""
    with patched_environ({"REDIS_DISABLED": "1", "AUTH_SECRET": SECRET, "CACHE_NAMESPACE": "hbunit"}):
        reset_settings()
        reset_cache()
        yield
    reset_settings()
    reset_cache()


def _request(query: dict[str, str], tenant: int = 1, ttl: int = 3600, token: Optional[str] = None) -> Request:
    token = token or issue_token(SECRET, tenant, "admin", ttl_s=ttl)
    headers = {"authorization": f"Bearer {token}"}
    return Request({"multiValueQueryStringParameters": {k: [v] for k, v in query.items()},
                    "headers": headers, "pathParameters": None,
                    "requestContext": {"httpMethod": "GET", "resourcePath": "/api/x",
                                       "identity": {"sourceIp": "127.0.0.1"}},
                    "body": None, "isBase64Encoded": False, "stageVariables": None})


def _get(memo: web.PlanMemo, name: str, request: Request):  # type: ignore[no-untyped-def]
    resource = next(r for r in RESOURCES if r.name == name)
    return memo.get(resource, request, dict(request.headers.items()), get_cache())


def test_same_request_reuses_the_plan() -> None:
    memo = web.PlanMemo()
    request = _request({"clientId": "1"})
    first = _get(memo, "departments", request)
    assert _get(memo, "departments", request) is first
    assert first.key.resource == "departments" and first.key.tenant == 1


def test_other_query_or_route_builds_another_plan() -> None:
    memo = web.PlanMemo()
    request = _request({"clientId": "1"})
    plan = _get(memo, "departments", request)
    assert _get(memo, "doctors", request) is not plan
    assert _get(memo, "departments", _request({"clientId": "1"}, tenant=1, ttl=60)) is not plan  # other token


def test_expired_token_is_verified_again() -> None:
    memo = web.PlanMemo()
    request = _request({"clientId": "1"}, ttl=3600)
    plan = _get(memo, "departments", request)
    plan.expires_at = 0.0  # as if the token's exp had passed
    assert _get(memo, "departments", request) is not plan


def test_refused_request_is_not_remembered() -> None:
    memo = web.PlanMemo()
    with pytest.raises(ApiError) as refused:
        _get(memo, "departments", _request({"clientId": "2"}, tenant=1))
    assert refused.value.status == 403
    assert memo.plans == {}


def test_new_cache_empties_the_memo() -> None:
    memo = web.PlanMemo()
    request = _request({"clientId": "1"})
    plan = _get(memo, "departments", request)
    reset_cache()
    assert _get(memo, "departments", request) is not plan
    assert len(memo.plans) == 1


def test_bounded() -> None:
    memo = web.PlanMemo(max_entries=2)
    for ttl in (60, 61, 62):  # three tokens: three distinct Authorization headers
        _get(memo, "departments", _request({"clientId": "1"}, ttl=ttl))
    assert len(memo.plans) <= 2
