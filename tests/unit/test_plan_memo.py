"""The plan memo of cached reads (chalicelib.plan_memo.PlanMemo): built once per distinct request,
re-verified when the token expires, emptied when settings or cache change, bounded, and
never remembering a refused request."""
from __future__ import annotations

from typing import Iterator, Optional

import pytest
from chalice.app import Request

from chalicelib import runtime
from chalicelib.auth import issue_token
from chalicelib.booking.caching import new_cache
from chalicelib.booking.resources import RESOURCES
from chalicelib.http import ApiError
from chalicelib.lifetimes import declared_freshness
from chalicelib.plan_memo import PlanMemo
from chalicelib.settings import get_settings
from tests.helpers_servers import patched_environ

SECRET = "unit-secret-not-for-production-0123456789"


@pytest.fixture(autouse=True)
def offline_app() -> Iterator[None]:
    """Settings with Redis disabled and a known token secret (nothing connects)."""
    with patched_environ({"REDIS_DISABLED": "1", "AUTH_SECRET": SECRET, "CACHE_NAMESPACE": "hbunit"}):
        yield


def _request(query: dict[str, str], tenant: int = 1, ttl: int = 3600, token: Optional[str] = None) -> Request:
    token = token or issue_token(SECRET, tenant, "admin", ttl_s=ttl)
    headers = {"authorization": f"Bearer {token}"}
    return Request({"multiValueQueryStringParameters": {k: [v] for k, v in query.items()},
                    "headers": headers, "pathParameters": None,
                    "requestContext": {"httpMethod": "GET", "resourcePath": "/api/x",
                                       "identity": {"sourceIp": "127.0.0.1"}},
                    "body": None, "isBase64Encoded": False, "stageVariables": None})


def plan_resource(name: str):  # type: ignore[no-untyped-def]
    return next(r for r in RESOURCES if r.name == name)


def _get(memo: PlanMemo, name: str, request: Request):  # type: ignore[no-untyped-def]
    resource = plan_resource(name)
    container = runtime.current()
    return memo.get(resource, request, dict(request.headers.items()), container.cache, container.settings)


def test_same_request_reuses_the_plan() -> None:
    memo = PlanMemo()
    request = _request({"clientId": "1"})
    first = _get(memo, "departments", request)
    assert _get(memo, "departments", request) is first
    assert first.key.resource == "departments" and first.key.tenant == 1


def test_other_query_or_route_builds_another_plan() -> None:
    memo = PlanMemo()
    request = _request({"clientId": "1"})
    plan = _get(memo, "departments", request)
    assert _get(memo, "doctors", request) is not plan
    assert _get(memo, "departments", _request({"clientId": "1"}, tenant=1, ttl=60)) is not plan  # other token


def test_expired_token_is_verified_again() -> None:
    memo = PlanMemo()
    request = _request({"clientId": "1"}, ttl=3600)
    plan = _get(memo, "departments", request)
    plan.expires_at = 0.0  # as if the token's exp had passed
    assert _get(memo, "departments", request) is not plan


def test_refused_request_is_not_remembered() -> None:
    memo = PlanMemo()
    with pytest.raises(ApiError) as refused:
        _get(memo, "departments", _request({"clientId": "2"}, tenant=1))
    assert refused.value.status == 403
    assert memo.plans == {}


def test_new_cache_empties_the_memo() -> None:
    memo = PlanMemo()
    request = _request({"clientId": "1"})
    plan = _get(memo, "departments", request)
    other = memo.get(plan_resource("departments"), request, dict(request.headers.items()),
                     new_cache(get_settings(), declared_freshness()), get_settings())
    assert other is not plan
    assert len(memo.plans) == 1


def test_new_settings_empty_the_memo() -> None:
    memo = PlanMemo()
    request = _request({"clientId": "1"})
    plan = _get(memo, "departments", request)
    runtime.reload_settings()  # rotated credentials: the settings are read again
    assert _get(memo, "departments", request) is not plan
    assert len(memo.plans) == 1


def test_bounded() -> None:
    memo = PlanMemo(max_entries=2)
    for ttl in (60, 61, 62):  # three tokens: three distinct Authorization headers
        _get(memo, "departments", _request({"clientId": "1"}, ttl=ttl))
    assert len(memo.plans) <= 2
