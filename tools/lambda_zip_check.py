"""Build the deployment zip and run it the way Lambda would, with no site-packages.

    .venv/bin/python tools/lambda_zip_check.py                 # stages prod and prod-xray
    .venv/bin/python tools/lambda_zip_check.py --stage prod    # one stage
    .venv/bin/python tools/lambda_zip_check.py --out-dir DIR   # reuse DIR/<stage> packages

For each stage: runs infra/package.sh (chalice package + cfn-lint) into a temporary or
given folder, unpacks deployment.zip into an empty temporary folder, and starts
tools/lambda_zip_probe.py there with `python -S -I -B`: sys.path is the unpacked folder and
the standard library, nothing else. The environment is Lambda's (AWS_LAMBDA_FUNCTION_NAME,
AWS_REGION, AWS_EXECUTION_ENV, LAMBDA_TASK_ROOT, ...) plus the stage's variables from the
packaged template (the secrets' ARNs left out), DATABASE_URL and REDIS_URL on ports where
nothing listens and a random 48-byte AUTH_SECRET. The probe times the cold `import app` and
sends REST proxy events through `app.app(event, context)`: /api/openapi.json must answer
200, /api/health 503 and /api/departments?clientId=1 with a valid token 503, all JSON. A
stage that accepts only its identity provider's tokens (AUTH_SHARED_SECRET_TOKENS=0, as
prod) gets a stand-in provider: the template's OIDC parameters are filled in, the probe
serves a JWKS on loopback and signs an ES256 token with the zip's own PyJWT and
cryptography (503 expected), and a development token must be refused (401).
Every .py of the zip must have its .pyc beside it (infra/package.sh compiles them), and no
module the probe loads from the zip may be compiled from source.

A stage with X-Ray on must import aws_xray_sdk from the zip and send trace segments to a
stand-in daemon; aws_xray_sdk needs botocore, which Lambda's runtime provides and the zip
does not ship, so for that stage only, a folder linking this venv's boto3/botocore (and
their dependencies) stands in for the runtime's SDK, after the unpacked folder on sys.path.
The default stage must import neither aws_xray_sdk nor botocore.

Prints one line per check and a summary; exits 1 when any check fails. Standard library
only; needs the project's venv for chalice and cfn-lint (infra/package.sh finds them).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
PROBE = ROOT / "tools" / "lambda_zip_probe.py"
for path in (ROOT, ROOT / "tools"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
import chalice_stage  # noqa: E402

from support.ports import free_port  # noqa: E402

DEFAULT_STAGES = ("prod", "prod-xray")
# What Lambda's Python runtime ships besides the standard library, and aws_xray_sdk needs.
RUNTIME_SDK = ("boto3", "botocore", "s3transfer", "urllib3", "jmespath", "dateutil", "six")


@dataclass
class StageResult:
    """What one stage's build and probe produced."""

    stage: str
    xray: bool
    ok: bool = False
    build_s: float = 0.0
    zip_bytes: int = 0
    unzipped_bytes: int = 0
    probe: dict[str, Any] = field(default_factory=dict)
    import_ms: list[float] = field(default_factory=list)
    sources: int = 0
    sources_without_bytecode: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def build(stage: str, out: Path) -> float:
    """Run infra/package.sh for `stage` into `out`; seconds taken. Raises on failure."""
    env = {**os.environ, "STAGE": stage,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    started = time.perf_counter()
    proc = subprocess.run(["bash", str(ROOT / "infra" / "package.sh"), str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"infra/package.sh failed for {stage}:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    return time.perf_counter() - started


# What a deployment passes for the template's parameters without a default (the identity
# provider): the probe stands in for that provider (tools/lambda_zip_probe.py).
PROBE_PARAMETERS = {"OidcIssuer": "https://login.example.org/hospital", "OidcAudience": "hospital-booking-probe"}


def stage_environment(template: dict[str, Any], jwks_url: str) -> dict[str, str]:
    """The API function's variables in the packaged template: Globals then its own, plain
    strings and parameters (their defaults, PROBE_PARAMETERS, and `jwks_url`, the probe's
    own key set, for OidcJwksUrl); references to resources cannot resolve here and are left
    out, as are the secrets' ARNs."""
    merged = {**template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}),
              **template["Resources"]["APIHandler"]["Properties"].get("Environment", {}).get("Variables", {})}
    parameters = {name: spec.get("Default") for name, spec in template.get("Parameters", {}).items()}
    parameters.update(PROBE_PARAMETERS, OidcJwksUrl=jwks_url)
    resolved = {k: parameters.get(v["Ref"]) if isinstance(v, dict) and "Ref" in v else v for k, v in merged.items()}
    return {k: v for k, v in resolved.items() if isinstance(v, str) and not k.endswith("_SECRET_ARN")}


def closed_port(stack: ExitStack) -> int:
    """A loopback TCP port that is bound but not listening (connections are refused), held
    for as long as `stack` is open so nothing else takes it."""
    sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


def lambda_environment(task_root: Path, stage_env: dict[str, str], db_port: int, redis_port: int,
                       runtime_dir: Optional[Path]) -> dict[str, str]:
    """A fresh environment like Lambda's for the API function (nothing inherited)."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "en_US.UTF-8", "TZ": ":UTC",
        "AWS_LAMBDA_FUNCTION_NAME": "hospital-booking-APIHandler", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024", "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/hospital-booking",
        "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{sys.version_info[0]}.{sys.version_info[1]}",
        "LAMBDA_TASK_ROOT": str(task_root), "LAMBDA_RUNTIME_DIR": str(runtime_dir or task_root),
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{db_port}",
        **stage_env,
        "DATABASE_URL": f"postgresql://hb:unused@127.0.0.1:{db_port}/hospital",
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "AUTH_SECRET": secrets.token_urlsafe(48),
    }
    if runtime_dir is not None:
        env["PROBE_RUNTIME_DIR"] = str(runtime_dir)
        env["AWS_XRAY_CONTEXT_MISSING"] = "LOG_ERROR"
    return env


def runtime_sdk_dir(parent: Path) -> Path:
    """A folder standing in for the runtime's SDK: links to this venv's RUNTIME_SDK."""
    folder = parent / "runtime"
    folder.mkdir()
    for name in RUNTIME_SDK:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin:
            raise RuntimeError(f"{name} is not installed in {sys.prefix}: run make venv")
        source = Path(spec.origin).parent if spec.submodule_search_locations else Path(spec.origin)
        (folder / source.name).symlink_to(source)
    return folder


def unpack(zip_path: Path, dest: Path) -> int:
    """Unpack the zip into the empty folder `dest`; the unpacked size in bytes."""
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(dest)
        return sum(info.file_size for info in archive.infolist())


def sources_without_bytecode(task_root: Path) -> tuple[int, list[str]]:
    """(number of .py files under `task_root`, those without the .pyc this Python reads)."""
    sources = sorted(task_root.rglob("*.py"))
    missing = [str(path.relative_to(task_root)) for path in sources
               if not Path(importlib.util.cache_from_source(str(path))).is_file()]
    return len(sources), missing


def probe(task_root: Path, env: dict[str, str], result_path: Path) -> tuple[dict[str, Any], str]:
    """Run the probe in `python -S -I -B` inside the unpacked folder; its result and output.
    -B: no .pyc is written, as in Lambda's read-only task root, so every run compiles the
    zip's sources as a cold start there does."""
    proc = subprocess.run([sys.executable, "-S", "-I", "-B", str(PROBE), str(result_path)], cwd=task_root, env=env,
                          capture_output=True, text=True, timeout=120)
    output = proc.stdout + proc.stderr
    if not result_path.exists():
        return {"ok": False, "crash": f"exit {proc.returncode}"}, output
    return json.loads(result_path.read_text()), output


def judge(result: StageResult) -> None:
    """Fill result.problems from the probe's findings; result.ok when there are none."""
    found = result.probe
    if "import_error" in found:
        result.problems.append("import app failed:\n" + found["import_error"])
    elif "crash" in found:
        result.problems.append(f"the probe crashed ({found['crash']})")
    else:
        for check in found["checks"]:
            if not check["ok"]:
                result.problems.append(f"{check['name']}: {check.get('error') or '; '.join(check['problems'])}")
        if found["zip_modules_compiled"]:
            result.problems.append(f"{len(found['zip_modules_compiled'])} modules of the zip were compiled from"
                                   f" source at import: {found['zip_modules_compiled'][:5]}")
        if result.xray:
            if not found["xray_loaded"] or "aws_xray_sdk" not in found["modules"]["zip"]:
                result.problems.append("X-Ray stage: aws_xray_sdk was not imported from the zip")
            if not any(name.startswith("## ") for name in found["xray_segments"]):
                result.problems.append("X-Ray stage: no handler subsegment reached the stand-in daemon")
            extra = set(found["modules"]["runtime"]) - set(RUNTIME_SDK)
            if extra:
                result.problems.append(f"modules from the runtime stand-in that it should not supply: {extra}")
        else:
            if found["xray_loaded"]:
                result.problems.append("default stage imported aws_xray_sdk")
            if found["boto_loaded"]:
                result.problems.append(f"default stage imported {found['boto_loaded']}")
    if result.sources_without_bytecode:
        result.problems.append(f"{len(result.sources_without_bytecode)} of {result.sources} sources have no .pyc:"
                               f" {result.sources_without_bytecode[:5]}")
    result.ok = not result.problems


def probe_package(stage: str, package: Path, verbose: bool = False, runs: int = 1) -> StageResult:
    """Unpack and probe a package infra/package.sh built for `stage` (deployment.zip and
    sam.json in `package`), `runs` times in fresh processes; the first run's outcome,
    judged, with every run's cold import time."""
    result = StageResult(stage=stage, xray=chalice_stage.xray_enabled(chalice_stage.load_config(), stage))
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"zipcheck-{stage}-")))
        zip_path = package / "deployment.zip"
        result.zip_bytes = zip_path.stat().st_size
        task_root = scratch / "task"
        task_root.mkdir()
        result.unzipped_bytes = unpack(zip_path, task_root)
        result.sources, result.sources_without_bytecode = sources_without_bytecode(task_root)
        runtime_dir = runtime_sdk_dir(scratch) if result.xray else None
        template = json.loads((package / "sam.json").read_text())
        jwks_port = free_port()
        env = lambda_environment(task_root, stage_environment(template, f"http://127.0.0.1:{jwks_port}/jwks"),
                                 closed_port(stack), closed_port(stack), runtime_dir)
        env["PROBE_JWKS_PORT"] = str(jwks_port)
        for run in range(max(1, runs)):
            found, output = probe(task_root, env, scratch / f"result{run}.json")
            result.probe = result.probe or found
            if "import_ms" in found:
                result.import_ms.append(found["import_ms"])
            if verbose and run == 0:
                print(output)
    judge(result)
    return result


def check_stage(stage: str, out_dir: Optional[Path], rebuild: bool, verbose: bool, runs: int) -> StageResult:
    """Build (or reuse) and probe one stage."""
    with tempfile.TemporaryDirectory(prefix=f"zipcheck-build-{stage}-") as scratch:
        package = (out_dir / stage) if out_dir else Path(scratch) / "package"
        build_s = 0.0
        if rebuild or not (package / "deployment.zip").is_file():
            try:
                build_s = build(stage, package)
            except RuntimeError as exc:
                return StageResult(stage=stage, xray=False, problems=[str(exc)])
        result = probe_package(stage, package, verbose, runs)
        result.build_s = build_s
        return result


def report(result: StageResult) -> None:
    """Print one stage's checks and outcome."""
    found = result.probe
    mode = "X-Ray on" if result.xray else "X-Ray off"
    built = f", built in {result.build_s:.1f} s" if result.build_s else ""
    print(f"== stage {result.stage} ({mode}): zip {result.zip_bytes / 1e6:.2f} MB "
          f"({result.unzipped_bytes / 1e6:.1f} MB unpacked){built}")
    if result.import_ms:
        times = sorted(result.import_ms)
        spread = f" (median of {len(times)}; {times[0]:.0f}-{times[-1]:.0f} ms)" if len(times) > 1 else ""
        print(f"   cold import app: {statistics.median(times):.0f} ms{spread}; python -S -I -B, sys.path = zip"
              f"{' + runtime SDK stand-in' if result.xray else ''} + stdlib")
    if "zip_modules_loaded" in found:
        print(f"   bytecode: {result.sources - len(result.sources_without_bytecode)} of {result.sources} sources"
              f" have a .pyc; {found['zip_modules_loaded']} modules loaded from the zip,"
              f" {len(found['zip_modules_compiled'])} compiled from source")
    for check in found.get("checks", []):
        mark = "ok  " if check["ok"] else "FAIL"
        print(f"   {mark} {check['name']}: {check.get('status')} in {check.get('ms', 0):.1f} ms"
              f"  {check.get('body', '')[:90]}")
    if result.xray and found.get("xray_segments") is not None:
        print(f"   X-Ray segments sent: {found['xray_segments']}; from the runtime stand-in: "
              f"{found['modules']['runtime']}")
    for problem in result.problems:
        print(f"   FAIL {problem}")
    print(f"   {'PASS' if result.ok else 'FAIL'} {result.stage}")


def main(argv: Optional[list[str]] = None) -> int:
    """CLI entry point; 0 when every stage passed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", action="append", help="stage to check (repeatable; default: prod, prod-xray)")
    parser.add_argument("--out-dir", type=Path, help="keep packages in OUT_DIR/<stage> (default: a temporary folder)")
    parser.add_argument("--no-build", action="store_true", help="with --out-dir: reuse a package already there")
    parser.add_argument("--verbose", action="store_true", help="show the app's log lines")
    parser.add_argument("--runs", type=int, default=1, help="cold imports to time per stage (fresh processes)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = []
    for stage in args.stage or DEFAULT_STAGES:
        problems = chalice_stage.problems(chalice_stage.load_config(), stage)
        if problems:
            print(f"== stage {stage}: FAIL {'; '.join(problems)}")
            results.append(StageResult(stage=stage, xray=False, problems=problems))
            continue
        result = check_stage(stage, args.out_dir, rebuild=not args.no_build, verbose=args.verbose, runs=args.runs)
        report(result)
        results.append(result)
    passed = sum(r.ok for r in results)
    print(f"lambda_zip_check: {passed}/{len(results)} stages passed in {time.perf_counter() - started:.1f} s")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
