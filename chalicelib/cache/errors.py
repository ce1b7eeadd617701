"""The cache's own errors: the layer above maps them to its answers (web.py: HTTP 503)."""
from __future__ import annotations


class CacheUnavailable(Exception):
    """The source (the loader) is unavailable and no copy recent enough may be served."""

    def __init__(self, message: str, retry_after_s: int = 5) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
