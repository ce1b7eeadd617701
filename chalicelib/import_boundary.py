"""The import boundary of `serve`: everything a route or a scheduled job imports on its
first use, imported once, before the server listens and before the scheduler starts.

In Lambda a container handles one invocation at a time, so first uses may import (the cold
start stays light: docs/performance.md, "Cold start"). `serve` answers each connection in
its own thread and runs the schedules in another: two first uses at once would import the
same modules from two threads, and when their imports cross, Python hands one thread a
half-initialized module ("cannot import name ... from partially initialized module") or
raises `_DeadlockError`. After `import_request_and_job_modules()` no request or job of
that process imports anything (tests/e2e/test_startup.py checks `sys.modules`).
"""
from __future__ import annotations

import importlib
import pkgutil

import chalicelib
from chalicelib.lazy import IMPORT_LOCK

LIBRARY_MODULES = (
    "jwt",  # auth: PyJWT (and cryptography, which it imports) on the first token
    "_strptime",  # datetime.strptime imports it on its first call
)
"""Modules outside chalicelib that request or job paths import on first use."""


def import_request_and_job_modules() -> None:
    """Import every chalicelib module and LIBRARY_MODULES, and run the library calls that
    import on their first call, all under IMPORT_LOCK."""
    with IMPORT_LOCK:
        for name in chalicelib_modules():
            importlib.import_module(name)
        for name in LIBRARY_MODULES:
            importlib.import_module(name)
        _make_first_library_calls()


def chalicelib_modules() -> list[str]:
    """The names of every module and package under chalicelib (the in-function imports of
    routes and jobs are all among them)."""
    return [info.name for info in pkgutil.walk_packages(chalicelib.__path__, "chalicelib.")]


def _make_first_library_calls() -> None:
    """Calls whose first run imports inside a library: the Powertools Logger (its formatter
    and handlers) and the OpenAPI document (pydantic's schema generation; the document is
    kept, so GET /api/openapi.json reuses it)."""
    from chalicelib import openapi
    from chalicelib.observability import powertools_logger

    powertools_logger()
    openapi.document()
