"""Secrets for AWS: values from Secrets Manager, named by ARNs in the environment.

Locally no ARN is set and this returns nothing, so settings come from the environment.
Reads go through Powertools' `parameters.get_secret`, which caches each value for
`SECRET_MAX_AGE_S` seconds per container. Its boto3 client honours the standard endpoint
variables `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_SECRETS_MANAGER`, which is how
LocalStack or moto's server stand in for Secrets Manager.
"""
from __future__ import annotations

import json
import os
from typing import Any

SECRET_MAX_AGE_S = 300

# Environment variable naming a secret -> aliases for the lowercase/camelCase keys that
# AWS writes into such secrets (RDS: username/password/host/port/dbname; an ElastiCache
# AUTH token as password or authToken). Upper-case keys are setting names and pass as is.
SECRET_KEY_ALIASES: dict[str, dict[str, str]] = {
    "DB_SECRET_ARN": {
        "username": "PGUSER", "password": "PGPASSWORD", "host": "PGHOST",
        "port": "PGPORT", "dbname": "PGDATABASE",
    },
    "REDIS_SECRET_ARN": {"password": "REDIS_PASSWORD", "authToken": "REDIS_PASSWORD"},
    "AUTH_SECRET_ARN": {},
}


def secret_settings(arn_variable: str, text: str) -> dict[str, str]:
    """Setting names and values from one secret's text, read as named by `arn_variable`.

    A JSON object gives its upper-case keys as they are plus the known aliases
    (`SECRET_KEY_ALIASES`); other keys (engine, dbInstanceIdentifier...) are dropped.
    Any other text is the value of AUTH_SECRET when it comes from AUTH_SECRET_ARN.
    """
    try:
        value: Any = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        return {"AUTH_SECRET": text} if arn_variable == "AUTH_SECRET_ARN" else {}
    aliases = SECRET_KEY_ALIASES[arn_variable]
    out: dict[str, str] = {}
    for key, item in value.items():
        name = aliases.get(key, key if key.isupper() else None)
        if name is not None and item is not None:
            out[name] = str(item)
    return out


def load_secret_values(force_fetch: bool = False) -> dict[str, str]:
    """Read DATABASE_URL / PG* / REDIS_* / AUTH_SECRET style values from Secrets Manager.

    Each of `DB_SECRET_ARN`, `REDIS_SECRET_ARN` and `AUTH_SECRET_ARN` in the environment
    names a secret whose value is a JSON object (see `secret_settings`) or, for
    AUTH_SECRET_ARN, a plain string. Returns {} when none is set. Values are cached for
    `SECRET_MAX_AGE_S` seconds unless `force_fetch` (after a rotation); later secrets win
    where two set the same name.
    """
    arns = {name: os.environ.get(name) for name in SECRET_KEY_ALIASES}
    if not any(arns.values()):
        return {}
    from aws_lambda_powertools.utilities import parameters

    out: dict[str, str] = {}
    for name, arn in arns.items():
        if not arn:
            continue
        raw = parameters.get_secret(arn, max_age=SECRET_MAX_AGE_S, force_fetch=force_fetch)
        out.update(secret_settings(name, raw.decode() if isinstance(raw, bytes) else str(raw)))
    return out
