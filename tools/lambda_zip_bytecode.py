"""Put bytecode in a Lambda deployment zip: `python tools/lambda_zip_bytecode.py ZIP SAM_JSON`
(infra/package.sh runs it after `chalice package`).

Lambda unpacks the zip into /var/task, which is read-only: a module without a usable .pyc
there is compiled from source at every cold start, and the .pyc cannot be written for the
next one. This rewrites the zip with `__pycache__/<name>.cpython-XY.pyc` beside every .py,
compiled by this interpreter, which must be the template's runtime version (the bytecode
format changes with it), in invalidation mode unchecked-hash: Python uses such a .pyc
without comparing it with the source's timestamp (which unzipping does not keep) or hash.
The __pycache__ entries chalice copies from the working tree (timestamp-based, from
whatever ran there last) are left out. Standard library only.
"""
from __future__ import annotations

import compileall
import importlib.util
import json
import os
import py_compile
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

LAMBDA_TASK_ROOT = "/var/task"  # where the sources are at run time (names in tracebacks)


def runtimes(template: dict[str, Any]) -> set[str]:
    """Every Lambda runtime the template names (Globals and each function)."""
    found = {template.get("Globals", {}).get("Function", {}).get("Runtime")}
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            found.add(resource.get("Properties", {}).get("Runtime"))
    return {runtime for runtime in found if runtime}


def is_bytecode(name: str) -> bool:
    """A .pyc or anything else in a __pycache__ folder."""
    return name.endswith(".pyc") or "__pycache__/" in name


def compile_sources(archive: zipfile.ZipFile, scratch: Path) -> dict[str, Path]:
    """Compile every .py of the archive, unpacked under `scratch`: {source name: its .pyc}.
    Raises when a source does not compile."""
    sources = [name for name in archive.namelist() if name.endswith(".py")]
    for name in sources:
        archive.extract(name, scratch)
    ok = compileall.compile_dir(scratch, quiet=1, stripdir=str(scratch), prependdir=LAMBDA_TASK_ROOT,
                                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    if not ok:
        raise RuntimeError("some sources of the zip do not compile (see above)")
    return {name: scratch / importlib.util.cache_from_source(name) for name in sources}


def add_bytecode(zip_path: Path, template_path: Path) -> tuple[int, int, int]:
    """Rewrite `zip_path` with bytecode; (modules compiled, size before, size after)."""
    wanted = f"python{sys.version_info.major}.{sys.version_info.minor}"
    found = runtimes(json.loads(template_path.read_text()))
    if found != {wanted}:
        raise RuntimeError(f"the template's runtimes are {sorted(found)}; this interpreter compiles for {wanted}")
    before = zip_path.stat().st_size
    with tempfile.TemporaryDirectory(prefix="lambda-bytecode-") as scratch:
        rewritten = Path(scratch) / "deployment.zip"
        with zipfile.ZipFile(zip_path) as source, zipfile.ZipFile(rewritten, "w", zipfile.ZIP_DEFLATED) as out:
            compiled = compile_sources(source, Path(scratch) / "src")
            for info in source.infolist():
                if is_bytecode(info.filename):
                    continue
                out.writestr(info, source.read(info))
                if info.filename in compiled:
                    entry = zipfile.ZipInfo(importlib.util.cache_from_source(info.filename), info.date_time)
                    entry.external_attr = info.external_attr
                    out.writestr(entry, compiled[info.filename].read_bytes(), zipfile.ZIP_DEFLATED)
        os.replace(rewritten, zip_path)
    return len(compiled), before, zip_path.stat().st_size


def main(argv: list[str]) -> int:
    """CLI entry point: 0 when the zip now holds bytecode for every source."""
    if len(argv) != 2:
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    try:
        count, before, after = add_bytecode(Path(argv[0]), Path(argv[1]))
    except RuntimeError as exc:
        print(f"lambda_zip_bytecode: {exc}", file=sys.stderr)
        return 1
    print(f"bytecode: {count} modules compiled for python{sys.version_info.major}.{sys.version_info.minor}"
          f" (unchecked-hash); zip {before / 1e6:.2f} MB -> {after / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
