#!/usr/bin/env bash
# Package the app as a SAM/CloudFormation template merged with infra/resources.json,
# then lint it offline with cfn-lint. Needs no AWS account or credentials.
#
# Usage: infra/package.sh [OUT_DIR]        (default: build/package)
#   STAGE=prod         Chalice stage to package
#   WHEELHOUSE=DIR     where the Lambda's wheels are kept (default: build/wheelhouse)
#
# The wheelhouse holds the manylinux wheels of requirements.txt for the Lambda runtime.
# It is filled from the package index only when requirements.txt has changed since the
# last fill; chalice then builds from it alone (pip --no-index), so once filled,
# packaging runs with no network at all. Linux x86_64 hosts only (chalice's first pip
# step resolves for the host, which must then match the Lambda platform).
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

# Fill the wheelhouse for the runtime chalice picks: the local Python's major.minor.
python_version="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
stamp="$python_version $(sha256sum requirements.txt | cut -d' ' -f1)"
if [[ "$(cat "$wheelhouse/.stamp" 2>/dev/null)" != "$stamp" ]]; then
  echo "Filling $wheelhouse for python$python_version (manylinux2014_x86_64)"
  python3 -m pip download --quiet --requirement requirements.txt --dest "$wheelhouse" \
    --only-binary=:all: --platform manylinux2014_x86_64 --implementation cp \
    --python-version "$python_version"
  echo "$stamp" > "$wheelhouse/.stamp"
fi
export PIP_NO_INDEX=1 PIP_FIND_LINKS="$wheelhouse"

# chalice package builds boto3 clients without calling AWS: give it a region and keep
# botocore off the EC2 metadata address while it looks for credentials.
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export AWS_EC2_METADATA_DISABLED=true
chalice package --stage "$stage" --pkg-format cloudformation \
  --merge-template infra/resources.json "$out"

# cfn-lint 1.x validates SAM templates itself (Globals merged, SAM schemas), offline.
if cfn-lint --non-zero-exit-code error -- "$out/sam.json"; then
  echo "cfn-lint: $out/sam.json has no errors"
else
  echo "cfn-lint: errors in $out/sam.json" >&2
  exit 1
fi
