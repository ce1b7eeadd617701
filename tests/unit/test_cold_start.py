"""A cold start imports only what app.py needs to exist (docs/performance.md, "Cold start"):
`import app` in a new process leaves the heavy libraries and the modules behind the routes
out of sys.modules; the first use of a stand-in imports its module and puts it in place."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from chalicelib.lazy import lazy_module

ROOT = Path(__file__).resolve().parents[2]
HEAVY_LIBRARIES = {"redis", "pydantic", "jwt", "cryptography", "pg8000", "boto3", "botocore",
                   "aws_lambda_powertools"}
DEFERRED_MODULES = {"chalicelib.booking.service", "chalicelib.openapi", "chalicelib.cache.tiered",
                    "chalicelib.db.connection", "chalicelib.booking.models"}


def _modules_after(statements: str) -> set[str]:
    """sys.modules of a new interpreter (run from the project root) after `statements`."""
    code = f"{statements}\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def _heavy(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules} & HEAVY_LIBRARIES


def test_import_app_imports_no_heavy_library() -> None:
    modules = _modules_after("import app")
    assert "app" in modules and "chalice" in modules
    assert not _heavy(modules), f"import app imported {sorted(_heavy(modules))}"
    assert not modules & DEFERRED_MODULES, f"import app imported {sorted(modules & DEFERRED_MODULES)}"


def test_first_use_of_the_service_imports_it_and_replaces_the_stand_in() -> None:
    modules = _modules_after("import types, app\n"
                             "assert callable(app.service.book)\n"
                             "assert isinstance(app.service, types.ModuleType), app.service")
    assert "chalicelib.booking.service" in modules
    assert {"redis", "pydantic", "pg8000"} <= _heavy(modules)


def test_lazy_module_binds_the_module_in_place_of_its_stand_in() -> None:
    namespace: dict[str, object] = {}
    namespace["codec"] = namespace["alias"] = lazy_module("quopri", namespace)
    assert repr(namespace["codec"]) == "<lazy module 'quopri'>"
    assert namespace["codec"].encodestring(b"=") == b"=3D"  # type: ignore[attr-defined]
    import quopri

    assert namespace["codec"] is quopri and namespace["alias"] is quopri


def test_the_runtime_build_is_the_import_boundary_of_its_parts() -> None:
    """`import app` leaves pg8000, redis-py and the cache out; building the runtime imports
    them, so a request that finds the runtime built imports none of them."""
    modules = _modules_after("import os\n"
                             "os.environ.update(REDIS_DISABLED='1', AUTH_SECRET='x' * 40)\n"
                             "import app\n"
                             "from chalicelib import runtime\n"
                             "runtime.current()")
    assert {"chalicelib.db.connection", "chalicelib.cache.tiered", "chalicelib.plan_memo"} <= modules
    assert {"pg8000", "redis"} <= _heavy(modules)
