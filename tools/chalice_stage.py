"""What a Chalice stage in .chalice/config.json needs at packaging time.

X-Ray is one switch with two halves: `"xray": true` (Chalice sets `Tracing: Active` on the
functions and adds the X-Ray permissions) and `TRACING=1` in the stage's environment (the
app then imports the Powertools Tracer and wraps its handlers, see
chalicelib/observability.py). A stage with one half and not the other is refused: TRACING
without the SDK in the zip would fail every cold start; xray without TRACING records only
Lambda's own segment. A stage with X-Ray on is packaged with requirements-xray.txt added
to requirements.txt (infra/package.sh).

    python tools/chalice_stage.py STAGE     prints `xray=true` or `xray=false`;
                                            exits 1 with the problems otherwise
Standard library only: infra/package.sh runs it with any python3.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Mapping

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / ".chalice" / "config.json"
_TRUE = ("1", "true", "yes", "on")


def load_config(path: Path = CONFIG) -> dict[str, Any]:
    """The parsed .chalice/config.json."""
    return json.loads(path.read_text())


def _lookup(config: Mapping[str, Any], stage: str, key: str, default: Any) -> Any:
    """A setting the way Chalice chains it: the stage's value, else the top-level one."""
    stage_config = config.get("stages", {}).get(stage, {})
    return stage_config.get(key, config.get(key, default))


def xray_enabled(config: Mapping[str, Any], stage: str) -> bool:
    """Does Chalice turn X-Ray on for the stage's functions?"""
    return bool(_lookup(config, stage, "xray", False))


def environment(config: Mapping[str, Any], stage: str) -> dict[str, str]:
    """The stage's environment variables: top-level ones overridden by the stage's."""
    stage_config = config.get("stages", {}).get(stage, {})
    return {**config.get("environment_variables", {}), **stage_config.get("environment_variables", {})}


def problems(config: Mapping[str, Any], stage: str) -> list[str]:
    """Why the stage cannot be packaged as it is (empty when it can)."""
    if stage not in config.get("stages", {}):
        return [f"stage {stage!r} is not in .chalice/config.json"]
    out = []
    functions = {**config.get("lambda_functions", {}), **config["stages"][stage].get("lambda_functions", {})}
    for name, function in functions.items():
        if "xray" in function or "TRACING" in function.get("environment_variables", {}):
            out.append(f"stage {stage!r}: set xray and TRACING for the whole stage, not for {name!r} alone")
    xray = xray_enabled(config, stage)
    tracing = environment(config, stage).get("TRACING", "").strip().lower() in _TRUE
    if xray and not tracing:
        out.append(f'stage {stage!r} has "xray": true but not TRACING=1 in its environment_variables')
    if tracing and not xray:
        out.append(f'stage {stage!r} sets TRACING=1 without "xray": true (the zip would lack aws_xray_sdk)')
    return out


def main(argv: list[str]) -> int:
    """CLI: print `xray=true|false` for the stage, or the problems and exit 1."""
    if len(argv) != 1:
        print("usage: chalice_stage.py STAGE", file=sys.stderr)
        return 2
    config = load_config()
    found = problems(config, argv[0])
    for problem in found:
        print(f"chalice_stage: {problem}", file=sys.stderr)
    if found:
        return 1
    print(f"xray={'true' if xray_enabled(config, argv[0]) else 'false'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
