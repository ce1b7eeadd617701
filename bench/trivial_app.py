"""The floor: a second, tiny Chalice app (same Chalice version) with one route that
returns a ready str body, dispatched with the same API Gateway proxy event shape."""
from __future__ import annotations

from chalice import Chalice, Response

app = Chalice(app_name="bench-trivial", configure_logs=False)
BODY = {"value": "{}"}
_HEADERS = {"Content-Type": "application/json"}


@app.route("/api/ping")
def ping() -> Response:
    return Response(body=BODY["value"], status_code=200, headers=_HEADERS)
