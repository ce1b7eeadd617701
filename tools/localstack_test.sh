#!/usr/bin/env bash
# Run the AWS-facing tests against real LocalStack (no Docker), then stop it.
#
#   tools/localstack_test.sh [pytest args...]
#
# 1. creates or reuses .local/localstack-venv with localstack-core[runtime]==4.13.1 (the
#    last release that runs on Python 3.11 without an account) and the pins it needs; a
#    stamp file holding the pins skips the install on later runs;
# 2. starts LocalStack's runtime in the background on 127.0.0.1:4566 (log:
#    .local/localstack.log) and waits until the services answer (at most 60 s);
# 3. runs AWS_TEST_FILES with AWS_ENDPOINT_URL=http://127.0.0.1:4566 and dummy credentials;
# 4. stops LocalStack (its whole process group) and exits with pytest's status.
#
# If the install fails, it says so and runs the same tests against moto's server instead
# (what `make test` does anyway) and exits with their status. If port 4566 is already in
# use it stops with an error rather than testing against whatever answers there.
# Expects the main venv (.venv, `make venv`) and the settings of tools/localenv.py.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LOCAL="$ROOT/.local"
LS_VENV="${LOCALSTACK_VENV:-$LOCAL/localstack-venv}"  # another place, e.g. to try the fallback
LS_LOG="$LOCAL/localstack.log"
INSTALL_LOG="$LOCAL/localstack-install.log"
PY="$ROOT/.venv/bin/python"
PORT=4566
READY_TIMEOUT_S=60
AWS_TEST_FILES=(tests/e2e/test_secrets.py tests/e2e/test_aws_services.py)
PINS=("localstack-core[runtime]==4.13.1" "cbor2<6" "pyopenssl>=25,<26" "cryptography>=45.0.7,<47"
      "service-identity")
STAMP="$LS_VENV/.installed"

say() { echo "localstack: $*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

mkdir -p "$LOCAL"
eval "$("$PY" tools/localenv.py)"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN

run_tests() {
  # The AWS-facing test files, against whatever AWS_ENDPOINT_URL names (moto's server when unset).
  local label=$1 start status=0
  shift
  start=$(now)
  "$PY" -m pytest -q "${AWS_TEST_FILES[@]}" "$@" || status=$?
  say "tests against $label took $(since "$start") s, pytest status $status"
  return "$status"
}

install() {
  # Create or reuse the LocalStack venv; true when it is ready to run.
  local want start
  want=$(printf '%s\n' "${PINS[@]}")
  if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    say "venv $LS_VENV already installed"
    return 0
  fi
  start=$(now)
  : >"$INSTALL_LOG"
  [[ -x "$LS_VENV/bin/python" ]] || python3 -m venv "$LS_VENV" >>"$INSTALL_LOG" 2>&1 || return 1
  "$LS_VENV/bin/python" -m pip install -q --disable-pip-version-check "${PINS[@]}" >>"$INSTALL_LOG" 2>&1 \
    || return 1
  printf '%s\n' "$want" >"$STAMP"
  say "installed ${PINS[0]} into $LS_VENV in $(since "$start") s"
}

if ! install; then
  reason="$(grep -v '^WARNING' "$INSTALL_LOG" | tail -n 1); full output in $INSTALL_LOG"
  say "install failed ($reason); the moto path still runs in make test"
  unset AWS_ENDPOINT_URL
  status=0
  run_tests moto "$@" || status=$?
  exit "$status"
fi

if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  say "port $PORT is already in use on 127.0.0.1; stop what listens there and run again" >&2
  exit 1
fi

LS_PID=""
stop_localstack() {
  if [[ -n "$LS_PID" ]] && kill -0 "$LS_PID" 2>/dev/null; then
    kill -TERM -- "-$LS_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$LS_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$LS_PID" 2>/dev/null || true
  fi
}
trap stop_localstack EXIT

start=$(now)
# setsid: LocalStack gets a process group of its own, so the trap stops all of its children.
GATEWAY_LISTEN="127.0.0.1:$PORT" GATEWAY_SERVER=hypercorn DNS_ADDRESS=0 PERSISTENCE=0 \
  EAGER_SERVICE_LOADING=1 SERVICES=ssm,secretsmanager,events,logs,cloudwatch,sts,iam \
  LOCALSTACK_VOLUME_DIR="$LOCAL/localstack-volume" \
  setsid "$LS_VENV/bin/python" -m localstack.runtime.main >"$LS_LOG" 2>&1 </dev/null &
LS_PID=$!

ready() {
  # Every service we use reports "available" or "running" on the health endpoint.
  "$PY" -c '
import json, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as answer:
        services = json.load(answer).get("services", {})
except (OSError, ValueError):
    sys.exit(1)
needed = ("secretsmanager", "ssm", "events", "logs", "cloudwatch", "sts")
sys.exit(0 if all(services.get(name) in ("available", "running") for name in needed) else 1)' \
    "http://127.0.0.1:$PORT/_localstack/health"
}
deadline=$((SECONDS + READY_TIMEOUT_S))
until ready; do
  if ! kill -0 "$LS_PID" 2>/dev/null; then
    say "LocalStack exited while starting; last lines of $LS_LOG:"; tail -n 20 "$LS_LOG" >&2; exit 1
  fi
  if ((SECONDS >= deadline)); then
    say "LocalStack not ready after ${READY_TIMEOUT_S} s; last lines of $LS_LOG:"; tail -n 20 "$LS_LOG" >&2; exit 1
  fi
  sleep 0.2
done
say "LocalStack ready on 127.0.0.1:$PORT in $(since "$start") s (log: $LS_LOG)"

export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT"
status=0
run_tests LocalStack "$@" || status=$?
exit "$status"
