"""Modules imported on their first use instead of at `import app` (cold start: see
docs/performance.md, "Cold start").

A new Lambda container imports app.py before it can answer; the modules behind the routes
(and with them redis-py, pydantic, PyJWT and pg8000) are imported by the first request
that uses them. `lazy_module` puts a stand-in for such a module in the importing module's
globals; its first attribute read imports the module and puts the module itself in the
stand-in's place, so every later use is a plain global lookup, as with an ordinary import:

    if TYPE_CHECKING:
        from chalicelib.booking import service
    else:
        service = lazy_module("chalicelib.booking.service", globals())

Every import through a stand-in holds `IMPORT_LOCK`, as does the import boundary of a
threaded process (chalicelib.import_boundary): two threads never import at once through
them, so neither can see the other's half-initialized module.
"""
from __future__ import annotations

import importlib
import threading
from types import ModuleType
from typing import Any, MutableMapping

IMPORT_LOCK = threading.RLock()
"""Held while a stand-in's module or the import boundary's modules are imported."""


class LazyModule:
    """Stands for the module `name` in `namespace` until the module is first used. Its own
    attribute names are unlikely in a module, so every other name reaches the module."""

    __slots__ = ("_lazy_name", "_lazy_namespace")

    def __init__(self, name: str, namespace: MutableMapping[str, Any]) -> None:
        self._lazy_name = name
        self._lazy_namespace = namespace

    def __getattr__(self, attribute: str) -> Any:
        return getattr(_load(self), attribute)

    def __repr__(self) -> str:
        return f"<lazy module {self._lazy_name!r}>"


def _load(stand_in: LazyModule) -> ModuleType:
    """Import the stand-in's module under IMPORT_LOCK (a module-level import lock alone lets
    a second thread see a module another thread is still initializing, when two imports
    cross) and bind the module wherever the stand-in is bound in its namespace."""
    with IMPORT_LOCK:
        module = importlib.import_module(stand_in._lazy_name)
        namespace = stand_in._lazy_namespace
        for key in [key for key, value in namespace.items() if value is stand_in]:
            namespace[key] = module
    return module


def lazy_module(name: str, namespace: MutableMapping[str, Any]) -> Any:
    """A stand-in for the module `name`, bound in `namespace` (the caller's globals())."""
    return LazyModule(name, namespace)
