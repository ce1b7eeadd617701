"""The Chalice app class: Chalice, with Chalice's own error answers in the API's error shape.

Chalice answers some requests itself, before or around a view, with `{"Code", "Message"}`
bodies: a method the path has no view for (405), a Content-Type a route does not accept
(415), a binary response without a matching Accept (400), a `ChaliceViewError` raised in a
view (400/401/403/404/405/408/409/422/429), an unhandled exception (500, or a plain-text
traceback in debug mode), an event for no known resource (500 "Unknown request.", or a
405 with an empty Allow).
`ShapedErrorsChalice.__call__` rewrites exactly those answers, after Chalice has built
them: a successful answer costs one comparison of its status code, nothing else.

`__call__` is Chalice 1.34.0's own `Chalice.__call__` (the same four statements) plus that
comparison, rather than a wrapper around it: calling through `super()` would add ~0.17 us
to every request, about 1% of an L1 hit through the handler. tests/test_http_layer.py
checks that Chalice's method still is those statements.
"""
from __future__ import annotations

from typing import Any, Dict

from chalice import Chalice
from chalice.app import RestAPIEventHandler

from chalicelib.http_errors import error_document

_DROPPED_HEADERS = frozenset({"content-type", "content-length"})
_CHALICE_BODY_PREFIX = '{"Code":'


class ShapedErrorsChalice(Chalice):
    """Chalice whose own 4xx/5xx answers (Lambda proxy responses) are in the error shape."""

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

