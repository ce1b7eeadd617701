"""Operator commands: migrate, seed, refresh-views, token, serve.

Run as `python -m chalicelib.cli <command> --help`. Every command reads the same settings
as the API (DATABASE_URL or PG*, REDIS_URL or REDIS_*, AUTH_SECRET); the process
environment always wins over defaults.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

from chalicelib.request_deadline import DEFAULT_CLIENT_TIMEOUT_S
from chalicelib.settings import SettingsError, get_settings, require_auth_secret


def _connect_admin_and_create() -> None:
    """Create the configured database if the server has no such database yet."""
    from chalicelib.db import connection, migrate
    from chalicelib.settings import DatabaseSettings

    db = get_settings().db
    admin = DatabaseSettings(**{**db.__dict__, "database": "postgres"})
    conn = connection.connect(admin)
    try:
        if migrate.ensure_database(conn, db.database):
            print(f"created database {db.database}")
    finally:
        conn.close()


def cmd_migrate(args: argparse.Namespace) -> int:
    from chalicelib.db import connection, migrate

    _connect_admin_and_create()
    conn = connection.connect()
    try:
        applied = migrate.apply_all(conn)
    finally:
        conn.close()
    print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0


SEED_TIMEOUT_MS = 15 * 60 * 1000


def cmd_seed(args: argparse.Namespace) -> int:
    from chalicelib.db import connection
    from chalicelib.db.seed import SeedRefused, seed

    conn = connection.connect(statement_timeout_ms=SEED_TIMEOUT_MS)
    started = time.perf_counter()
    try:
        counts = seed(conn, size=args.size, seed=args.seed, force=args.force,
                      progress=lambda line: print(line, flush=True))
    except SeedRefused as exc:
        print(f"seed: {exc}", file=sys.stderr)
        return 3 if args.if_empty else 2
    finally:
        conn.close()
    _bump_catalog()
    print(f"seeded {args.size} (seed {args.seed}) in {time.perf_counter() - started:.1f}s: "
          + ", ".join(f"{k}={v}" for k, v in counts.items()))
    return 0


def _bump_catalog() -> None:
    """New data: make every cached read of it stale (all tenants, all scopes)."""
    from chalicelib.cache.redis_tier import make_client

    settings = get_settings()
    if not settings.redis.enabled:
        return
    try:
        client = make_client(settings.redis)
        keys = list(client.scan_iter(match=f"{settings.cache.namespace}:v:*", count=1000))
        if keys:
            client.delete(*keys)
    except Exception as exc:  # noqa: BLE001 - Redis is optional for seeding
        print(f"note: could not clear cached versions in Redis ({type(exc).__name__})", file=sys.stderr)


def cmd_refresh(args: argparse.Namespace) -> int:
    from chalicelib.jobs.refresh import run_scheduled_refresh

    result = run_scheduled_refresh()
    print(result)
    return 0 if result.get("status") in ("ok", "skipped") else 1


def cmd_token(args: argparse.Namespace) -> int:
    from chalicelib.auth import issue_token

    settings = get_settings()
    secret = require_auth_secret(settings)
    if args.role == "patient" and args.patient_id is None:
        print("token: --patient-id is required with --role patient", file=sys.stderr)
        return 2
    if args.role != "operator" and args.tenant is None:
        print(f"token: --tenant is required with --role {args.role}", file=sys.stderr)
        return 2
    if not 1 <= args.ttl <= settings.auth_max_token_ttl_s:
        print(f"token: --ttl must be 1 to {settings.auth_max_token_ttl_s} seconds (AUTH_MAX_TOKEN_TTL)",
              file=sys.stderr)
        return 2
    print(issue_token(secret, args.tenant or 0, args.role, patient_id=args.patient_id, ttl_s=args.ttl))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from chalicelib.local_server import serve

    require_auth_secret(get_settings())
    serve(args.host, args.port, stage=args.stage, schedules=not args.no_schedules,
          client_timeout_s=args.client_timeout)
    return 0


def _positive_seconds(value: str) -> float:
    """A number of seconds greater than zero (argparse type)."""
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every operator command."""
    parser = argparse.ArgumentParser(
        prog="python -m chalicelib.cli",
        description="Operator commands for the hospital booking API. Settings come from the environment: "
                    "DATABASE_URL (or PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE), REDIS_URL (or REDIS_HOST/"
                    "REDIS_PORT/REDIS_PASSWORD/REDIS_TLS, REDIS_DISABLED=1), AUTH_SECRET.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    p = sub.add_parser("migrate", help="apply pending migrations (safe to repeat)",
                       description="Create the database if needed and apply pending SQL migrations in order.")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("seed", help="load deterministic demo data",
                       description="Load deterministic demo data. Refuses a database that already has data "
                                   "unless --force (which deletes it first).")
    p.add_argument("--size", choices=["small", "large"], default="small",
                   help="small: a few tenants, loads in seconds; large: >=1M appointments, ~20 tenants")
    p.add_argument("--seed", type=int, default=1, help="generator seed: the same seed gives the same rows")
    p.add_argument("--force", action="store_true", help="delete existing data first")
    p.add_argument("--if-empty", action="store_true", help="exit 0 without seeding when data exists")
    p.set_defaults(func=cmd_seed)

    p = sub.add_parser("refresh-views", help="refresh the materialized views once, as the schedule does",
                       description="Refresh the materialized views (and pre-warm Redis) exactly as the "
                                   "scheduled function does.")
    p.set_defaults(func=cmd_refresh)

    p = sub.add_parser("token", help="print a signed token", description="Print a signed HS256 token.")
    p.add_argument("--tenant", type=int, help="clientId of the hospital (every role but operator)")
    p.add_argument("--role", choices=["staff", "admin", "patient", "operator"], required=True,
                   help="operator: the platform's own role (fleet statistics, the monitor page), no tenant's")
    p.add_argument("--patient-id", type=int, help="patientId claim (required for --role patient)")
    p.add_argument("--ttl", type=int, default=3600,
                   help="seconds until the token expires (default 3600; at most AUTH_MAX_TOKEN_TTL, 86400)")
    p.set_defaults(func=cmd_token)

    p = sub.add_parser("serve", help="serve the API like `chalice local`, plus the local scheduler",
                       description="Serve the API with Chalice's local server (keep-alive safe: Nagle "
                                   "disabled) and run the scheduled functions locally.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--stage", default="dev", help="the .chalice/config.json stage (default dev)")
    p.add_argument("--no-schedules", action="store_true", help="do not run the local scheduler")
    p.add_argument("--client-timeout", type=_positive_seconds, default=DEFAULT_CLIENT_TIMEOUT_S, metavar="S",
                   help="seconds a client has to send a whole request (line, headers, body), counted from the "
                        "end of the previous answer on a keep-alive connection; after that it gets 408 and the "
                        f"connection is closed (default {DEFAULT_CLIENT_TIMEOUT_S:g})")
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: check the settings, then run the command. Refused settings exit 2 with
    one line per problem on stderr (the variable, its problem, what is allowed)."""
    args = build_parser().parse_args(argv)
    try:
        get_settings()
        return _run(args)
    except SettingsError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    """The command's exit status (`seed --if-empty` on a seeded database is a success)."""
    code: int = args.func(args)
    if args.command == "seed" and args.if_empty and code == 3:
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
