"""The container's runtime (chalicelib/runtime.py): one object, built once on first use
behind one lock, every part from one reading of the settings; refused settings build
nothing; `reset()` and a copied process start over; no other module keeps process state."""
from __future__ import annotations

import ast
import threading
from pathlib import Path
from typing import Iterator

import pytest

from chalicelib import runtime
from chalicelib.booking.caching import get_cache
from chalicelib.booking.read_source import replica_state
from chalicelib.db import connection as db
from chalicelib.settings import SettingsError, get_settings
from tests.helpers_servers import patched_environ

CHALICELIB = Path(__file__).resolve().parents[2] / "chalicelib"
SECRET = "unit-secret-not-for-production-0123456789"


@pytest.fixture(autouse=True)
def offline() -> Iterator[None]:
    """Valid settings with Redis disabled (nothing connects: the pools open lazily)."""
    with patched_environ({"REDIS_DISABLED": "1", "AUTH_SECRET": SECRET, "CACHE_NAMESPACE": "hbunit"}):
        yield


def test_every_shortcut_reads_the_one_runtime() -> None:
    current = runtime.current()
    assert get_settings() is current.settings
    assert get_cache() is current.cache
    assert db.pool() is current.primary
    assert db.replica_pool() is current.replica is None  # no DATABASE_READ_URL
    assert replica_state() is current.replica_state
    assert current.fleet.container_id == current.container_id
    assert current.cache.settings is current.settings  # one reading of the settings


def test_concurrent_first_uses_build_one_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[runtime.Runtime] = []
    original = runtime.Runtime.__init__

    def counting(self: runtime.Runtime, settings) -> None:  # type: ignore[no-untyped-def]
        original(self, settings)
        built.append(self)

    monkeypatch.setattr(runtime.Runtime, "__init__", counting)
    for _ in range(20):
        runtime.reset()
        built.clear()
        barrier = threading.Barrier(8)
        seen: list[runtime.Runtime] = []

        def first_use() -> None:
            barrier.wait()
            seen.append(runtime.current())

        threads = [threading.Thread(target=first_use) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(built) == 1 and len(seen) == 8 and all(s is built[0] for s in seen)


def test_refused_settings_build_nothing_and_are_read_again() -> None:
    with patched_environ({"REDIS_PORT": "not-a-port"}):
        with pytest.raises(SettingsError):
            runtime.current()
        assert runtime.built() is None
    assert runtime.current().settings.redis.port != "not-a-port"


def test_reset_forgets_and_the_next_use_builds_anew() -> None:
    first = runtime.current()
    runtime.reset()
    assert runtime.built() is None
    second = runtime.current()
    assert second is not first and second.container_id != first.container_id


def test_a_copied_process_forgets_without_closing(monkeypatch: pytest.MonkeyPatch) -> None:
    parent = runtime.current()
    closed: list[runtime.Runtime] = []
    monkeypatch.setattr(runtime.Runtime, "close", lambda self: closed.append(self))
    runtime.start_as_new_container()
    assert runtime.built() is None and closed == []
    child = runtime.current()
    assert child.container_id != parent.container_id and child.cache is not parent.cache
    assert child.read_log is not parent.read_log and child.metrics is not parent.metrics


def test_reloaded_settings_replace_only_the_settings() -> None:
    current = runtime.current()
    before = current.settings
    assert runtime.reload_settings() is current.settings is not before
    assert runtime.current() is current


def _top_level_imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_the_runtime_module_imports_nothing_of_chalicelib_when_imported() -> None:
    """Any layer may ask it for the current part, and `import app` pays nothing for it."""
    assert not [n for n in _top_level_imports(CHALICELIB / "runtime.py") if n.startswith("chalicelib")]


KNOWN_MODULE_STATE = {
    "runtime.py": {"_current", "_lock"},
    "web.py": {"_app"},  # the Chalice app whose current request the wrappers read
    "observability.py": {"_logger", "_tracer", "_current_runtime"},  # Powertools objects; where the runtime is
    "misconfigured.py": {"_reported"},  # refused settings are logged once per process
    "oidc.py": {"_shared_copy"},  # the provider's keys, shared through Redis when configured
    "process_copy.py": {"_installed"},  # the fork/restore hooks, registered once
    "db/connection.py": {"_last_credentials_refresh"},  # at most one secrets re-read per interval
}
"""Module globals that a function rebinds (`global`): every one outside the runtime is a
process-wide fact that no reset has to touch."""


def test_no_module_but_the_runtime_keeps_the_containers_state() -> None:
    found: dict[str, set[str]] = {}
    for path in CHALICELIB.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Global):
                found.setdefault(str(path.relative_to(CHALICELIB)), set()).update(node.names)
    assert found == KNOWN_MODULE_STATE
