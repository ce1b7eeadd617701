#!/usr/bin/env bash
# Package the app as a SAM/CloudFormation template merged with infra/resources.json,
# then lint it offline with cfn-lint. Needs no AWS account or credentials.
#
# Usage: infra/package.sh [OUT_DIR]        (default: build/package)
#   STAGE=prod         Chalice stage to package (prod-xray: the same with X-Ray tracing)
#   WHEELHOUSE=DIR     where the Lambda's wheels are kept (default: build/wheelhouse)
#
# The zip gets exactly the pins of requirements.txt (a complete lock; pip --no-deps), and
# for a stage with X-Ray on ("xray": true + TRACING=1, checked by tools/chalice_stage.py)
# also those of requirements-xray.txt: chalice only reads PROJECT/requirements.txt, so such
# a stage is packaged from a copy of the project under build/stages/STAGE whose
# requirements.txt is the two files together. The default zip never carries aws_xray_sdk.
#
# The wheelhouse holds the manylinux wheels of those requirements for the Lambda runtime.
# It is filled from the package index only when a requirements set has not been filled
# before; chalice then builds from it alone (pip --no-index), so once filled, packaging
# runs with no network at all. Linux x86_64 hosts only (chalice's first pip step resolves
# for the host, which must then match the Lambda platform).
# The zip then gets a .pyc beside every .py (tools/lambda_zip_bytecode.py).
# Exits non-zero when a step fails or cfn-lint reports an error.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/build/package}"
stage="${STAGE:-prod}"
wheelhouse="${WHEELHOUSE:-$root/build/wheelhouse}"

# Prefer the project's venv; chalice runs pip with its own interpreter.
if [[ -x "$root/.venv/bin/chalice" ]]; then
  PATH="$root/.venv/bin:$PATH"
fi
cd "$root"
[[ "$out" = /* ]] || out="$root/$out"
[[ "$wheelhouse" = /* ]] || wheelhouse="$root/$wheelhouse"

# Which requirements the stage ships, and from which project directory chalice packages.
stage_info="$(python3 tools/chalice_stage.py "$stage")"  # xray=true|false, or exit 1
project="$root"
if [[ "$stage_info" == "xray=true" ]]; then
  project="$root/build/stages/$stage"   # keeps its .chalice/deployments cache between runs
  mkdir -p "$project/.chalice"
  rm -rf "$project/app.py" "$project/chalicelib"
  tar -C "$root" --exclude=__pycache__ -cf - app.py chalicelib | tar -C "$project" -xf -
  cp .chalice/config.json "$project/.chalice/config.json"
  cat requirements.txt requirements-xray.txt > "$project/requirements.txt"
  echo "Stage $stage has X-Ray on: packaging $project (requirements.txt + requirements-xray.txt)"
fi
requirements="$project/requirements.txt"

# Fill the wheelhouse for the runtime chalice picks: the local Python's major.minor. One
# stamp line per requirements set already filled (the default and the X-Ray one).
python_version="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
stamp="$python_version $(sha256sum "$requirements" | cut -d' ' -f1)"
mkdir -p "$wheelhouse"
if ! grep -qxF "$stamp" "$wheelhouse/.stamps" 2>/dev/null; then
  echo "Filling $wheelhouse for python$python_version (manylinux2014_x86_64)"
  python3 -m pip download --quiet --no-deps --requirement "$requirements" --dest "$wheelhouse" \
    --only-binary=:all: --platform manylinux2014_x86_64 --implementation cp \
    --python-version "$python_version"
  echo "$stamp" >> "$wheelhouse/.stamps"
fi
# --no-deps: the requirements files are complete locks (tests/unit/test_requirements.py); this
# keeps botocore, which aws-xray-sdk asks for and the Lambda runtime has, out of the zip.
export PIP_NO_INDEX=1 PIP_FIND_LINKS="$wheelhouse" PIP_NO_DEPS=1

# chalice package builds boto3 clients without calling AWS: give it a region and keep
# botocore off the EC2 metadata address while it looks for credentials.
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export AWS_EC2_METADATA_DISABLED=true
chalice --project-dir "$project" package --stage "$stage" --pkg-format cloudformation \
  --merge-template "$root/infra/resources.json" "$out"

# Lambda's /var/task is read-only: without bytecode in the zip every cold start compiles
# every module it imports. Compile it here, for the runtime's Python (unchecked-hash .pyc).
python3 "$root/tools/lambda_zip_bytecode.py" "$out/deployment.zip" "$out/sam.json"

# cfn-lint 1.x validates SAM templates itself (Globals merged, SAM schemas), offline.
if cfn-lint --non-zero-exit-code error -- "$out/sam.json"; then
  echo "cfn-lint: $out/sam.json has no errors"
else
  echo "cfn-lint: errors in $out/sam.json" >&2
  exit 1
fi
