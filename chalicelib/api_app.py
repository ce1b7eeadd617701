"""The Chalice app class: Chalice, with Chalice's own error answers in the API's error shape.

Chalice answers some requests itself, before or around a view, with `{"Code", "Message"}`
bodies: a method the path has no view for (405), a Content-Type a route does not accept
(415), a binary response without a matching Accept (400), a `ChaliceViewError` raised in a
view (400/401/403/404/405/408/409/422/429), an unhandled exception (500, or a plain-text
traceback in debug mode), an event for no known resource (500 "Unknown request.", or a
405 with an empty Allow).
`ShapedErrorsChalice.__call__` rewrites exactly those answers, after Chalice has built
them: a successful answer costs one comparison of its status code, nothing else.

OPTIONS: Chalice's LocalGateway (under `serve` and in `chalice.test.Client`) answers OPTIONS
on any route 200 itself, as a CORS preflight, unless the route table says the path has an
OPTIONS view. The API has no CORS, so OPTIONS is a wrong method like any other: each path's
methods are a `RouteMethods`, which answers OPTIONS with the app's 405 `method_not_allowed`
and Allow, without listing OPTIONS among the path's methods (Allow, the deployed API).

`__call__` is Chalice 1.34.0's own `Chalice.__call__` (the same four statements) plus that
comparison, rather than a wrapper around it: calling through `super()` would add ~0.17 us
to every request, about 1% of an L1 hit through the handler. tests/e2e/test_http_layer.py
checks that Chalice's method still is those statements.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Dict

from chalice import Chalice, Response
from chalice.app import RestAPIEventHandler, RouteEntry

from chalicelib.http_errors import error_document

_DROPPED_HEADERS = frozenset({"content-type", "content-length"})
_CHALICE_BODY_PREFIX = '{"Code":'


class RouteMethods(Dict[str, RouteEntry]):
    """One path's views by method (a value of `Chalice.routes`) that also has a view for
    OPTIONS, answering 405 with Allow, without listing it: `"OPTIONS" in` and `["OPTIONS"]`
    find it, iteration and keys() do not. Chalice's LocalGateway asks `"OPTIONS" in` before
    answering a preflight itself; the event handler asks it, then looks the view up. (A real
    OPTIONS view cannot be registered on a path that has others: Chalice would report a
    duplicate. The API has no CORS, so none is.)"""

    def __contains__(self, method: object) -> bool:
        return dict.__contains__(self, method) or (method == "OPTIONS" and len(self) > 0)

    def __missing__(self, method: str) -> RouteEntry:
        if method != "OPTIONS" or not self:
            raise KeyError(method)
        path = next(iter(self.values())).uri_pattern
        return RouteEntry(self._options_not_allowed, "options_not_allowed", path, "OPTIONS")

    def _options_not_allowed(self, **path_params: str) -> Response:
        """405 method_not_allowed, Allow listing the path's methods."""
        return Response(body=error_document(405), status_code=405,
                        headers={"Content-Type": "application/json", "Allow": ", ".join(self)})


class ShapedErrorsChalice(Chalice):
    """Chalice whose own 4xx/5xx answers (Lambda proxy responses) are in the error shape,
    and whose routes answer OPTIONS 405 (RouteMethods)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.routes: Dict[str, Dict[str, RouteEntry]] = defaultdict(RouteMethods)

    def __call__(self, event: Any, context: Any) -> Dict[str, Any]:
        # Chalice.__call__ (chalice 1.34.0), statement for statement:
        self.lambda_context = context
        handler = RestAPIEventHandler(self.routes, self.api, self.log, self.debug,
                                      middleware_handlers=self._get_middleware_handlers("http"))
        self.current_request = handler.create_request_object(event, context)
        response: Dict[str, Any] = handler(event, context)
        # ...and the one addition: Chalice's own error answers in the error shape.
        if response["statusCode"] < 400:
            return response
        return shape_error_response(event, response, self.routes)


def is_chalice_error(response: Dict[str, Any]) -> bool:
    """True for an answer Chalice made itself: a `{"Code", "Message"}` body (Chalice
    serializes it without spaces) or, in debug mode, a plain-text traceback with a 500."""
    body = response.get("body")
    if not isinstance(body, str):
        return False
    if body.startswith(_CHALICE_BODY_PREFIX):
        return True
    if response["statusCode"] != 500:
        return False
    headers = response.get("headers") or {}
    return any(k.lower() == "content-type" and str(v).startswith("text/plain") for k, v in headers.items())


def shape_error_response(event: Any, response: Dict[str, Any], routes: Dict[str, Any]) -> Dict[str, Any]:
    """`response` (a Lambda proxy response of status >= 400) with Chalice's own error body
    replaced by the error shape.

    The app's answers are kept as they are (errors already in the shape, and others such as
    health's 503 document). Chalice's are replaced by the fixed message of their status,
    keeping their other headers (Allow on a 405, CORS headers). An event for no route of the
    app answers 404, as API Gateway would for a path it does not know. An answer to HEAD
    keeps its status and headers, without a body."""
    is_head = isinstance(event, dict) and (event.get("requestContext") or {}).get("httpMethod") == "HEAD"
    if not is_chalice_error(response):
        if is_head:
            response["body"] = ""
        return response
    status = response["statusCode"]
    resource = _resource_of(event)
    if not routes.get(resource):
        # No route has this resource: Chalice answered 500 (no resource path) or, having
        # looked it up in its defaultdict of routes, 405 with an empty Allow. Forget the
        # empty entry that lookup added, and answer as API Gateway does for unknown paths.
        if resource in routes:
            del routes[resource]
        status = 404
    dropped = _DROPPED_HEADERS if status != 404 else _DROPPED_HEADERS | {"allow"}
    headers = {k: v for k, v in (response.get("headers") or {}).items() if k.lower() not in dropped}
    headers["Content-Type"] = "application/json"
    multi = {k: v for k, v in (response.get("multiValueHeaders") or {}).items() if k.lower() not in dropped}
    shaped: Dict[str, Any] = {"statusCode": status, "headers": headers, "multiValueHeaders": multi,
                              "body": "" if is_head else error_document(status), "isBase64Encoded": False}
    return shaped


def _resource_of(event: Any) -> Any:
    """The API Gateway resource path of an event (None when it has none)."""
    if not isinstance(event, dict):
        return None
    return (event.get("requestContext") or {}).get("resourcePath")

