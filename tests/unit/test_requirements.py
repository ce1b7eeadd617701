"""Declared versus imported: every third-party module the code imports is pinned in the
right requirements file, every pin is needed, and the Lambda's files are complete locks.

- requirements.txt: what the Lambda ships; app.py and chalicelib/ import only from it (or
  the standard library, or chalice, whose runtime `chalice package` adds itself).
- requirements-xray.txt: added to it for a stage with X-Ray on (infra/package.sh).
- requirements-dev.txt: the tooling; tests/, bench/, tools/ import from it and the two above.
- requirements-dev.lock: every package of the dev venv, pinned (nothing floats).
A pin nothing imports must be a dependency of one that is imported (for the locks: named by
the extras on its line, e.g. redis[hiredis]), or be listed in TOOLS with a reason. Pins
match what this venv has installed, and `pip install --no-deps` of the locks (what
infra/package.sh does) leaves out nothing the shipped packages need, except what Lambda's
runtime provides. Reads files and installed metadata only: well under a second.
"""
from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Iterable, Iterator

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_CODE = ("app.py", "chalicelib")
TOOLING_CODE = ("tests", "bench", "tools", "infra", "support")
# Lambda's Python runtime has these (the app reads secrets through boto3; aws-xray-sdk needs
# botocore); the zip does not ship them.
LAMBDA_PROVIDED = {"boto3", "botocore"}
# Declared for a tool rather than an import: name -> why.
TOOLS = {
    "cfn-lint": "infra/package.sh runs the cfn-lint command (tests/e2e/test_package.py imports it too)",
    "chalice": "the chalice command packages the app (and app.py imports it)",
    "schemathesis": "property-based API testing against /api/openapi.json, asked for by a developer",
    "ruff": "`make lint` (and .ci/run) runs the ruff command",
    "mypy": "`make lint` (and .ci/run) runs the mypy command",
}
# Imported by the runtime code yet declared only in requirements-dev.txt: name -> why.
RUNTIME_FROM_DEV = {"chalice": "`chalice package` adds chalice's own runtime (chalice/app.py) to the zip"}
# Imported only if installed, never declared: bench/peers.py compares against them.
OPTIONAL_PEERS = {"aiocache"}
# What a stage with X-Ray on needs on top of requirements.txt, as a requirement with extras.
XRAY_ROOT = "aws-lambda-powertools[tracer]"


def canonical(name: str) -> str:
    """A distribution name in PEP 503 form."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Pin:
    """One `name[extras]==version` line of a requirements file."""

    name: str
    extras: frozenset[str]
    version: str
    file: str


def read_pins(path: Path, seen: frozenset[Path] = frozenset()) -> list[Pin]:
    """The pins of a requirements file and of the files it includes with -r."""
    pins: list[Pin] = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r"):
            included = (path.parent / line[2:].strip()).resolve()
            assert included not in seen, f"{path.name} includes {included.name} twice"
            pins.extend(read_pins(included, seen | {included}))
            continue
        requirement = Requirement(line)
        specs = list(requirement.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{path.name}: {raw!r} is not pinned with =="
        pins.append(Pin(canonical(requirement.name), frozenset(requirement.extras), specs[0].version, path.name))
    return pins


def own_pins(path: Path) -> list[Pin]:
    """The pins written in `path` itself (not in the files it includes)."""
    return [p for p in read_pins(path) if p.file == path.name]


def python_files(roots: Iterable[str]) -> Iterator[Path]:
    """The .py files under the given repository paths."""
    for root in roots:
        path = ROOT / root
        yield from ([path] if path.is_file() else sorted(path.rglob("*.py")))


def _is_optional(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Is the import inside a `try:` whose handler catches ImportError (an optional peer)?"""
    while node in parents:
        parent = parents[node]
        if isinstance(parent, ast.Try) and node in parent.body:
            for handler in parent.handlers:
                names = {n.id for n in ast.walk(handler.type) if isinstance(n, ast.Name)} if handler.type else set()
                if names & {"ImportError", "ModuleNotFoundError"}:
                    return True
        node = parent
    return False


def imports(files: Iterable[Path]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Top-level module names imported by the files: required and optional, each with the
    files importing it."""
    required: dict[str, set[str]] = {}
    optional: dict[str, set[str]] = {}
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            target = optional if _is_optional(node, parents) else required
            for name in names:
                target.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return required, optional


def local_modules() -> set[str]:
    """Module names the repository itself provides (packages, top-level and tools/ scripts)."""
    names = {p.stem for p in ROOT.glob("*.py")} | {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    return names | {p.stem for p in (ROOT / "tools").glob("*.py")}


def third_party(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    """{distribution: files} for the modules that are neither stdlib nor the repository's."""
    by_module = metadata.packages_distributions()
    local = local_modules()
    out: dict[str, set[str]] = {}
    for module, files in modules.items():
        if module in sys.stdlib_module_names or module in local or module == "__future__":
            continue
        dists = by_module.get(module)
        assert dists, f"{module} (imported by {sorted(files)}) is installed by no distribution"
        out.setdefault(canonical(dists[0]), set()).update(files)
    return out


def dependencies(name: str, extras: Iterable[str]) -> list[Requirement]:
    """The installed distribution's requirements that apply here (Python 3.11 on Linux, as
    on Lambda) with the given extras."""
    environment = default_environment()
    out = []
    for text in metadata.requires(name) or []:
        requirement = Requirement(text)
        if requirement.marker is None:
            out.append(requirement)
        elif any(requirement.marker.evaluate({**environment, "extra": extra}) for extra in (*extras, "")):
            out.append(requirement)
    return out


def closure(roots: Iterable[tuple[str, Iterable[str]]]) -> set[str]:
    """Every distribution the roots (name, extras) need, the roots included."""
    found: set[str] = set()
    todo = [(canonical(name), tuple(extras)) for name, extras in roots]
    while todo:
        name, extras = todo.pop()
        if name in found:
            continue
        found.add(name)
        for requirement in dependencies(name, extras):
            todo.append((canonical(requirement.name), tuple(requirement.extras)))
    return found


RUNTIME = own_pins(ROOT / "requirements.txt")
XRAY = own_pins(ROOT / "requirements-xray.txt")
DEV = read_pins(ROOT / "requirements-dev.txt")
RUNTIME_IMPORTS, _ = imports(python_files(RUNTIME_CODE))
TOOLING_IMPORTS, TOOLING_OPTIONAL = imports(python_files(TOOLING_CODE))


def test_every_pin_is_what_the_venv_has() -> None:
    wrong = {p.name: (p.version, metadata.version(p.name)) for p in DEV if metadata.version(p.name) != p.version}
    assert wrong == {}, "pinned vs installed; pin what you tested with"
    names = [p.name for p in DEV]
    assert len(names) == len(set(names)), "a package is pinned twice"


def test_runtime_code_imports_only_what_the_lambda_ships() -> None:
    shipped = {p.name for p in RUNTIME}
    undeclared = {d: sorted(f) for d, f in third_party(RUNTIME_IMPORTS).items()
                  if d not in shipped and d not in RUNTIME_FROM_DEV and d not in LAMBDA_PROVIDED}
    assert undeclared == {}, "imported by app.py/chalicelib but not in requirements.txt"


def test_tooling_imports_are_declared() -> None:
    declared = {p.name for p in DEV}
    undeclared = {d: sorted(f) for d, f in third_party(TOOLING_IMPORTS).items() if d not in declared}
    assert undeclared == {}, "imported by tests/bench/tools but not in requirements-dev.txt"


def test_optional_imports_are_declared_or_known_peers() -> None:
    # `try: import ... except ImportError` imports must be declared too, except peers that
    # bench/peers.py measures only when someone installed them.
    declared = {p.name for p in DEV}
    optional = {m: f for m, f in TOOLING_OPTIONAL.items() if m not in OPTIONAL_PEERS}
    assert {d: sorted(f) for d, f in third_party(optional).items() if d not in declared} == {}


def test_every_runtime_pin_is_imported_or_needed() -> None:
    imported = set(third_party(RUNTIME_IMPORTS))
    roots = [(p.name, p.extras) for p in RUNTIME if p.name in imported]
    needed = closure(roots)
    unneeded = sorted(p.name for p in RUNTIME if p.name not in needed)
    assert unneeded == [], "in requirements.txt, yet neither imported by the app nor needed by what is"
    roots_xray = closure([(Requirement(XRAY_ROOT).name, Requirement(XRAY_ROOT).extras)]) - needed
    assert sorted(p.name for p in XRAY if p.name not in roots_xray) == []


def test_every_dev_pin_is_imported_or_a_tool() -> None:
    imported = set(third_party(RUNTIME_IMPORTS)) | set(third_party(TOOLING_IMPORTS))
    needed = closure((p.name, p.extras) for p in DEV if p.name in imported)
    unused = sorted(p.name for p in own_pins(ROOT / "requirements-dev.txt")
                    if p.name not in needed and p.name not in TOOLS and p.name not in LAMBDA_PROVIDED)
    assert unused == [], "in requirements-dev.txt but imported nowhere (remove, or add to TOOLS with a reason)"


def test_what_lambda_provides_is_pinned_for_local_runs() -> None:
    # Locally the app's Secrets Manager reads (chalicelib/secrets.py, through Powertools)
    # and the X-Ray SDK need what Lambda's runtime provides: the dev venv pins it.
    assert LAMBDA_PROVIDED <= {p.name for p in own_pins(ROOT / "requirements-dev.txt")}


@pytest.mark.parametrize("lock", [RUNTIME, RUNTIME + XRAY], ids=["default", "xray"])
def test_locks_are_complete_for_no_deps_install(lock: list[Pin]) -> None:
    pinned = {p.name: p.version for p in lock}
    missing = {}
    for pin in lock:
        for requirement in dependencies(pin.name, pin.extras):
            name = canonical(requirement.name)
            if name in LAMBDA_PROVIDED:
                continue
            if name not in pinned:
                missing[f"{pin.name} -> {requirement}"] = "not pinned"
            elif not requirement.specifier.contains(pinned[name], prereleases=True):
                missing[f"{pin.name} -> {requirement}"] = f"pinned {pinned[name]}"
    assert missing == {}, "infra/package.sh installs with --no-deps: pin these in the same lock"


def test_the_default_lambda_ships_no_xray_sdk() -> None:
    assert "aws-xray-sdk" not in {p.name for p in RUNTIME}
    assert {p.name for p in XRAY} >= {"aws-xray-sdk"}


# Installed by the venv itself or by `make venv` from this checkout, never locked.
_NOT_LOCKED = {"pip", "setuptools", "wheel", "hospital-booking"}


def test_the_dev_lock_pins_every_installed_package() -> None:
    """requirements-dev.lock is this venv, exactly: no package floats, every pin agrees."""
    locked = {canonical(p.name): p.version for p in read_pins(ROOT / "requirements-dev.lock")}
    installed = {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    unlocked = {n: v for n, v in installed.items() if n not in _NOT_LOCKED and locked.get(n) != v}
    assert unlocked == {}, "installed but not locked at this version: run `make lock`"
    disagreeing = {p.name: (p.version, locked.get(canonical(p.name))) for p in DEV
                   if locked.get(canonical(p.name)) != p.version}
    assert disagreeing == {}, "requirements-dev.txt and requirements-dev.lock disagree"
