"""Idempotency-Key: a keyed write runs at most once per (tenant, subject, key) and every
retry within 24 hours gets its first answer.

Requests with one key are serialized by a transaction-scoped advisory lock; the answer
(success or 409) is stored with the write in the same transaction. A stored answer is
replayed only to the same operation with the same request (hash of its body and target);
anything else with that key is 422 `idempotency_key_reused`. An expired key's row is
replaced.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import orjson

from chalicelib.booking.outcome import WriteResult
from chalicelib.db import connection as db
from chalicelib.http import ApiError

# How long an Idempotency-Key's answer is kept and replayed (API.md: 24 hours).
IDEMPOTENCY_RETENTION = "24 hours"

_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtextextended(:s || '/' || :k, :t))"
_LOOKUP_SQL = f"""
SELECT operation, request_hash, status_code, body FROM idempotency_key
WHERE tenant_id = :t AND subject = :s AND key = :k AND created_at > now() - interval '{IDEMPOTENCY_RETENTION}'"""
_STORE_SQL = """
INSERT INTO idempotency_key (tenant_id, subject, key, operation, request_hash, status_code, body)
VALUES (:t, :s, :k, :o, :h, :c, :b)
ON CONFLICT (tenant_id, subject, key) DO UPDATE
SET operation = EXCLUDED.operation, request_hash = EXCLUDED.request_hash, status_code = EXCLUDED.status_code,
    body = EXCLUDED.body, created_at = now()"""
PURGE_IDEMPOTENCY_SQL = f"DELETE FROM idempotency_key WHERE created_at <= now() - interval '{IDEMPOTENCY_RETENTION}'"


@dataclass(frozen=True)
class IdempotencyKey:
    """A client's Idempotency-Key, scoped to its tenant and the token's subject."""

    tenant: int
    subject: str
    key: str


def request_hash(request: Mapping[str, Any]) -> str:
    """A stable hash of a request's fields (key order does not matter)."""
    return hashlib.sha256(orjson.dumps(dict(request), option=orjson.OPT_SORT_KEYS)).hexdigest()


def run_once(idempotency: IdempotencyKey, operation: str, hashed: str,
             write: Callable[[db.Transaction], WriteResult]) -> WriteResult:
    """`write(transaction)` unless this key already answered: then its stored answer
    (touching nothing), or 422 when it answered another operation or request."""
    scope = {"t": idempotency.tenant, "s": idempotency.subject, "k": idempotency.key}
    with db.transaction() as conn:
        conn.run(_LOCK_SQL, **scope)
        stored = conn.run(_LOOKUP_SQL, **scope)
        if stored:
            previous_operation, previous_hash, status, previous_body = stored[0]
            if (previous_operation, previous_hash) != (operation, hashed):
                raise ApiError(422, "This Idempotency-Key was already used with a different request.",
                               code="idempotency_key_reused")
            return WriteResult(status, previous_body, None)
        result = write(conn)
        conn.run(_STORE_SQL, **scope, o=operation, h=hashed, c=result.status, b=result.body)
        return result
