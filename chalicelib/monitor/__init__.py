"""The operator's cache monitor page served at GET /monitor.

One self-contained HTML document: page.html with monitor.css and monitor.js inlined at
first use (read lazily, then kept). No token is needed for the page itself; its script asks
the operator for an operator token (kept in sessionStorage, never in the URL) and polls
GET /api/cache/stats with it. The Content-Security-Policy allows no external source: the
inline style and script are allowed by their SHA-256 hashes, fetches only to this origin.
"""
from __future__ import annotations

import base64
import functools
import hashlib
from pathlib import Path

from chalice import Response

_HERE = Path(__file__).resolve().parent


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


@functools.lru_cache(maxsize=1)
def _page() -> tuple[str, str]:
    """The HTML with CSS and JS inlined, and its Content-Security-Policy."""
    html = (_HERE / "page.html").read_text(encoding="utf-8")
    css = (_HERE / "monitor.css").read_text(encoding="utf-8")
    js = (_HERE / "monitor.js").read_text(encoding="utf-8")
    html = html.replace("/*@MONITOR_CSS@*/", css).replace("/*@MONITOR_JS@*/", js)
    csp = "; ".join([
        "default-src 'none'",
        f"script-src {_sha256(js)}",
        f"style-src {_sha256(css)}",
        "connect-src 'self'",
        "img-src 'self' data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ])
    return html, csp


def content_security_policy() -> str:
    return _page()[1]


def page_response() -> Response:
    """GET /monitor: the page (no data in it; the data needs an operator token)."""
    html, csp = _page()
    return Response(body=html, status_code=200, headers={
        "Content-Type": "text/html; charset=utf-8",
        "Content-Security-Policy": csp,
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
    })
