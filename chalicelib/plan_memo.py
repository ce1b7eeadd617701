"""The read-plan memo: a cached read's parsing, token verification and key building run once
per distinct request, not on every hit (the runtime owns the container's memo)."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Mapping

from chalice.app import MultiDict, Request

from chalicelib.auth import principal_from_headers
from chalicelib.booking.reads import ReadPlan
from chalicelib.booking.resources import CachedResource

if TYPE_CHECKING:
    from chalicelib.cache.tiered import TieredCache
    from chalicelib.settings import Settings


class PlanMemo:
    """ReadPlans by (resource, Authorization header, query): parsing, token verification and
    key building run once per distinct request, not on every hit. Bounded; emptied when the
    settings (the token secret) or the cache change. Errors are never remembered."""

    def __init__(self, max_entries: int = 8192) -> None:
        self.max_entries = max_entries
        self.plans: dict[tuple[Any, ...], ReadPlan] = {}
        self.owner: tuple[Any, Any] = (None, None)

    def get(self, resource: CachedResource, request: Request, headers: Mapping[str, str],
            cache: TieredCache, settings: Settings) -> ReadPlan:
        """The plan for this request under `settings` (built, verified and remembered on
        first sight)."""
        query = request.to_original_event().get("multiValueQueryStringParameters") or {}
        path = request.uri_params or {}
        memo_key = (resource.name, headers.get("authorization"),
                    tuple((name, tuple(values)) for name, values in query.items()), tuple(path.items()))
        if self.owner[0] is not settings or self.owner[1] is not cache:
            self.plans, self.owner = {}, (settings, cache)
        plan = self.plans.get(memo_key)
        if plan is None or plan.expires_at <= time.time():
            caller = principal_from_headers(request.headers, settings)
            plan = resource.plan(cache, caller, _request_params(query, path))
            if len(self.plans) >= self.max_entries:
                self.plans = {}
            self.plans[memo_key] = plan
        return plan


def _request_params(query: Mapping[str, list[str]], path: Mapping[str, str]) -> MultiDict:
    """Every value of each query parameter (a native query reads the last; FHIR repeats
    names), and a path's id as `_id`."""
    return MultiDict({**query, **{"_id": [value] for value in path.values()}})
