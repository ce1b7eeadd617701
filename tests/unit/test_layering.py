"""Layers: the cache package knows nothing of HTTP, the booking domain, the web layer or
SQL; the booking domain knows no interface; observability knows no domain."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

CACHE = Path(__file__).resolve().parents[2] / "chalicelib" / "cache"
FORBIDDEN = ("chalicelib.booking", "chalicelib.http", "chalicelib.web", "chalicelib.db")


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


@pytest.mark.parametrize("path", sorted(CACHE.glob("*.py")), ids=lambda p: p.name)
def test_cache_module_imports_no_outer_layer(path: Path) -> None:
    bad = [name for name in _imports(path) if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)]
    assert not bad, f"{path.name} imports {bad}"


def test_the_check_sees_every_module() -> None:
    assert {"tiered.py", "coherence.py", "tracking.py"} <= {p.name for p in CACHE.glob("*.py")}


BOOKING = CACHE.parent / "booking"


@pytest.mark.parametrize("path", sorted(BOOKING.glob("*.py")), ids=lambda p: p.name)
def test_booking_module_imports_no_interface(path: Path) -> None:
    """The domain raises its own errors (booking/errors.py); the interfaces map them. The
    domain lists its own cached resources; chalicelib/lifetimes.py joins FHIR's to them."""
    interfaces = ("chalicelib.http", "chalicelib.web", "chalicelib.cached_answers", "chalicelib.fhir",
                  "chalicelib.lifetimes", "app", "chalice")
    bad = [name for name in _imports(path) if any(name == f or name.startswith(f + ".") for f in interfaces)]
    assert not bad, f"{path.name} imports {bad}"


def test_observability_imports_no_domain() -> None:
    """Observability is a leaf: the app hands it the cache to report on."""
    bad = [name for name in _imports(CACHE.parent / "observability.py") if name.startswith("chalicelib.booking")]
    assert not bad, f"observability.py imports {bad}"


def test_the_seeder_uses_the_domain_not_the_jobs() -> None:
    bad = [name for name in _imports(CACHE.parent / "db" / "seed.py") if name.startswith("chalicelib.jobs")]
    assert not bad, f"seed.py imports {bad}"
