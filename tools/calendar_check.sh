#!/usr/bin/env bash
# Calendar check: the date-sensitive tests on 7 consecutive days at varied local times of
# day, under a fake clock (Debian's libfaketime) shared by the test process, everything it
# spawns and a private PostgreSQL started for each day under the same clock.
#
#   tools/calendar_check.sh                  # 7 days from today (UTC date)
#   CAL_START=2026-12-05 CAL_DAYS=3 tools/calendar_check.sh
#   CAL_FILES="tests/integration/test_seed.py" tools/calendar_check.sh
#
# Each day's clock is a fixed offset from the real one (FAKETIME="+N" seconds), so every
# process sees the same fake "now" and time keeps running. Redis stays the shared real one
# (REDIS_URL, default 127.0.0.1:6379): tests use their own key prefixes and the cache keeps
# its own timestamps. Run as root (PostgreSQL then runs as the `postgres` user; faketime
# is installed with apt-get when missing) or as an ordinary user owning PostgreSQL's
# binaries. Exits non-zero if any day fails; per-day logs are kept and their path printed.
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
CAL_DAYS=${CAL_DAYS:-7}
CAL_START=${CAL_START:-$(date -u +%F)}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
export AUTH_SECRET=${AUTH_SECRET:-calendar-check-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}

# Files whose tests read the seed's calendar or the clock: slots of a day, the seed's bands
# relative to today, the dashboard's today/upcoming days, slot extension up to the horizon,
# free slots "3 hours from now". Not here: tests that never look at dates or the seeded
# calendar (auth, bad input on queries only, cache envelope/memory/stampede, secrets,
# monitor, package) and the refresh-under-load timing test, whose data is relative anyway.
DEFAULT_FILES="tests/integration/test_api_routes.py tests/integration/test_smoke_api.py
tests/integration/test_bad_input.py tests/integration/test_seed.py tests/integration/test_slots_job.py
tests/integration/test_cache_tiers.py tests/integration/test_cache_db_down.py tests/integration/test_db_connection.py
tests/e2e/test_booking_concurrency.py tests/e2e/test_jobs.py tests/e2e/test_cache_redis_down.py
tests/e2e/test_cache_two_processes.py"
read -r -a FILES <<< "$(echo ${CAL_FILES:-$DEFAULT_FILES})"
DESELECT=(--deselect tests/e2e/test_jobs.py::test_readers_do_not_wait_during_refresh)

# Local time of day and zone per day (cycled): the small seed's tenant zones, just before
# and after a local midnight, one run that crosses a midnight while it runs, the seed's
# 12:00-14:00 "now" band, and the early morning before the first slots.
SCHEDULE=(
  "Europe/Berlin 23:55:00"
  "Asia/Tokyo 00:05:00"
  "America/New_York 23:59:30"
  "Europe/Berlin 12:30:00"
  "America/New_York 00:05:00"
  "Asia/Tokyo 23:55:00"
  "Europe/Berlin 07:45:00"
)

say() { printf '%s\n' "calendar_check: $*" >&2; }

[ -x "$PY" ] || { say "no Python at $PY (make the venv first, or set PYTHON)"; exit 2; }
[ -x "$PGBIN/initdb" ] || { say "no PostgreSQL server binaries in $PGBIN (set PGBIN)"; exit 2; }

find_libfaketime() {
  local lib
  for lib in /usr/lib/*/faketime/libfaketime.so.1 /usr/lib/faketime/libfaketime.so.1 /usr/local/lib/faketime/libfaketime.so.1; do
    [ -f "$lib" ] && { echo "$lib"; return 0; }
  done
  return 1
}
LIBFAKETIME=$(find_libfaketime)
if [ -z "$LIBFAKETIME" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing Debian's faketime"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q faketime >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q faketime >/dev/null; }
    LIBFAKETIME=$(find_libfaketime)
  fi
  [ -n "$LIBFAKETIME" ] || { say "libfaketime not found; install Debian's faketime package"; exit 2; }
fi

# Debian's libfaketime 0.9.10 with the monotonic clock left real mangles an absolute
# clock_nanosleep on it, which is how Python 3.11's time.sleep waits (EINVAL; libfaketime
# issue #426); faking the monotonic clock instead hangs timed lock waits (issue #390). A
# ten-line preload in front of it passes non-realtime clock_nanosleep straight to the kernel.
build_sleep_fix() {
  local cc
  cc=$(command -v cc || command -v gcc) || return 1
  cat > "$WORK/sleepfix.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int clock_nanosleep(clockid_t clock_id, int flags, const struct timespec *req, struct timespec *rem) {
    static int (*next)(clockid_t, int, const struct timespec *, struct timespec *);
    if (clock_id != CLOCK_REALTIME)
        return syscall(SYS_clock_nanosleep, clock_id, flags, req, rem) == 0 ? 0 : errno;
    if (!next)
        next = (int (*)(clockid_t, int, const struct timespec *, struct timespec *))dlsym(RTLD_NEXT, "clock_nanosleep");
    return next(clock_id, flags, req, rem);
}
C
  "$cc" -shared -fPIC -O2 -o "$WORK/sleepfix.so" "$WORK/sleepfix.c" -ldl 2>>"$WORK/sleepfix.log" || return 1
  LD_PRELOAD="$WORK/sleepfix.so:$LIBFAKETIME" FAKETIME=+86400 FAKETIME_DONT_FAKE_MONOTONIC=1 "$PY" -c \
    'import threading, time; time.sleep(0.01); threading.Event().wait(0.01)' 2>>"$WORK/sleepfix.log"
}

if [ "$(id -u)" = 0 ]; then as_pg() { runuser -u postgres -- "$@"; }; PGUSER_OS=postgres
else as_pg() { "$@"; }; PGUSER_OS=$(id -un); fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/calendar_check.XXXXXX")
chmod 755 "$WORK"
PGDIR=""
stop_pg() {
  if [ -n "$PGDIR" ] && [ -f "$PGDIR/data/postmaster.pid" ]; then
    as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -m immediate -w stop >/dev/null 2>&1
  fi
  [ -n "$PGDIR" ] && rm -rf "$PGDIR"
  PGDIR=""
}
trap 'stop_pg; exit 130' INT TERM
trap stop_pg EXIT

# Prints "<epoch> <label>" for local date CAL_START + i at the schedule's time and zone.
target() {
  "$PY" - "$CAL_START" "$1" "$2" "$3" <<'PY'
import datetime as dt, sys
from zoneinfo import ZoneInfo
start, i, zone, hms = dt.date.fromisoformat(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
local = dt.datetime.combine(start + dt.timedelta(days=i), dt.time.fromisoformat(hms), ZoneInfo(zone))
utc = local.astimezone(dt.timezone.utc)
print(int(utc.timestamp()), f"{local:%a %Y-%m-%d %H:%M:%S} {zone} (= {utc:%a %Y-%m-%d %H:%MZ})")
PY
}

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

if build_sleep_fix; then
  PRELOAD="$WORK/sleepfix.so:$LIBFAKETIME"; PY_FAKED=1
else
  PRELOAD="$LIBFAKETIME"; PY_FAKED=0
  say "no C compiler (or the sleep fix failed, see $WORK/sleepfix.log): only PostgreSQL runs under the fake"
  say "clock; the tests take every date and 'now' from it, but Python's own clock stays real"
fi

# redis-server (jemalloc) hangs at start under libfaketime; the tests' private Redis servers
# are found on PATH, so they get this wrapper, which starts the real one with the real clock
# (Redis only keeps relative TTLs).
mkdir -p "$WORK/bin"
real_redis=$(command -v redis-server || echo /usr/bin/redis-server)
printf '#!/bin/sh\nunset LD_PRELOAD FAKETIME\nexec %s "$@"\n' "$real_redis" > "$WORK/bin/redis-server"
chmod 755 "$WORK/bin/redis-server"

zones=$("$PY" -c 'import sys; sys.path.insert(0, sys.argv[1]); from chalicelib.db.seed import PLANS
print(" ".join(sorted({z for _, z, _ in PLANS["small"].tenants})))' "$ROOT" 2>/dev/null)
say "seed tenant zones: ${zones:-unknown}; libfaketime: $LIBFAKETIME; logs: $WORK"
say "files: ${FILES[*]}"

passed_days=0; failed_days=0; summary=()
started_all=$(date +%s)
for ((i = 0; i < CAL_DAYS; i++)); do
  read -r zone hms <<< "${SCHEDULE[$((i % ${#SCHEDULE[@]}))]}"
  read -r epoch label <<< "$(target "$i" "$zone" "$hms")"
  log="$WORK/day$((i + 1)).log"
  t0=$(date +%s)
  offset=$((epoch - t0))
  fake=(env LD_PRELOAD="$PRELOAD" FAKETIME="$(printf '%+d' "$offset")" FAKETIME_DONT_FAKE_MONOTONIC=1)
  if [ "$PY_FAKED" = 1 ]; then pyfake=("${fake[@]}"); else pyfake=(env); fi

  PGDIR=$(mktemp -d "$WORK/pg.XXXXXX")
  chown "$PGUSER_OS" "$PGDIR"
  port=$(free_port)
  {
    as_pg "${fake[@]}" "$PGBIN/initdb" -D "$PGDIR/data" -U postgres -A trust -E UTF8 --no-sync >/dev/null \
      && as_pg "${fake[@]}" "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w -t 60 -o \
           "-p $port -k $PGDIR -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
           start >/dev/null
  } >>"$log" 2>&1
  if [ $? -ne 0 ]; then
    cat "$PGDIR/server.log" >>"$log" 2>/dev/null
    result="FAIL: the private PostgreSQL did not start"
    rc=1
  else
    db_now=$("$PY" - "$port" 2>>"$log" <<'PY'
import sys
import pg8000.native
conn = pg8000.native.Connection(user="postgres", host="127.0.0.1", port=int(sys.argv[1]), database="postgres")
print(conn.run("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')")[0][0])
PY
)
    py_now=$("${pyfake[@]}" "$PY" -c 'import datetime as d; print(f"{d.datetime.now(d.timezone.utc):%Y-%m-%d %H:%M:%S}")')
    echo "fake clock: offset ${offset}s; PostgreSQL now() = ${db_now}Z; Python now = ${py_now}Z; target $label" >>"$log"
    ( cd "$ROOT" && DATABASE_URL="postgresql://postgres@127.0.0.1:$port/hospital" PATH="$WORK/bin:$PATH" \
        "${pyfake[@]}" "$PY" -m pytest -q -p no:cacheprovider "${DESELECT[@]}" "${FILES[@]}" ) >>"$log" 2>&1
    rc=$?
    tally=$(grep -E '(passed|failed|error).* in [0-9.]+s' "$log" | tail -1 | sed 's/=//g; s/^ *//; s/ *$//')
    if [ $rc -eq 0 ]; then result="PASS: $tally"; else result="FAIL: ${tally:-pytest exited $rc}"; fi
  fi
  stop_pg
  secs=$(( $(date +%s) - t0 ))
  line="day $((i + 1))/$CAL_DAYS $label: $result [${secs}s]"
  summary+=("$line")
  echo "$line"
  if [ $rc -eq 0 ]; then passed_days=$((passed_days + 1)); else
    failed_days=$((failed_days + 1))
    grep -E '^(FAILED|ERROR) ' "$log" | head -20 | sed 's/^/    /'
    echo "    log: $log"
  fi
done
total=$(( $(date +%s) - started_all ))
echo "calendar check: $passed_days passed, $failed_days failed (days) in $((total / 60))m$((total % 60))s; logs in $WORK"
[ "$failed_days" -eq 0 ]
