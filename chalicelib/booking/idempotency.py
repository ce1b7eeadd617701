"""Idempotency-Key: a keyed write runs at most once per (tenant, principal, key) and every
retry within 24 hours gets its first answer.

A principal is everything that tells callers apart (`Principal.identity`: tenant, issuer,
subject, role, patient id), so two tokens that share a `sub` never see each other's keys:
another principal's key is simply not there (no 422 oracle). A stored answer is replayed
only after the same authorization a fresh request gets (the caller's `authorize` runs first,
in the same transaction).

Requests with one key are serialized by a transaction-scoped advisory lock; the answer
(success or 409) is stored with the write in the same transaction. A stored answer is
replayed only to the same operation with the same request (hash of its body and target);
anything else with that key is 422 `idempotency_key_reused`. An expired key's row is
replaced. A principal holds at most `max_live_keys(role)` live keys; a new key past that is
429 with `Retry-After` (when its oldest key expires).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import orjson

from chalicelib.booking.errors import KeyReused, TooManyKeys
from chalicelib.booking.outcome import WriteResult
from chalicelib.db import connection as db

# How long an Idempotency-Key's answer is kept and replayed (API.md: 24 hours).
IDEMPOTENCY_RETENTION = "24 hours"

_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtextextended(:s || '/' || :k, :t))"
# Live keys of one principal, and the seconds until the oldest of them expires.
_LIVE_KEYS_SQL = f"""
SELECT count(*), coalesce(ceil(extract(epoch FROM min(created_at) + interval '{IDEMPOTENCY_RETENTION}' - now())), 0)
FROM idempotency_key
WHERE tenant_id = :t AND subject = :s AND created_at > now() - interval '{IDEMPOTENCY_RETENTION}'"""
# Live keys a principal may hold: a patient books a handful of appointments a day, a desk
# clerk hundreds (docs/security.md, "Bounded state").
MAX_LIVE_KEYS = {"patient": 100}
MAX_LIVE_KEYS_STAFF = 5000
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
    """A client's Idempotency-Key, scoped to its tenant and the principal's identity
    (`Principal.identity`), with the most live keys that principal may hold."""

    tenant: int
    subject: str
    key: str
    max_live_keys: int


def max_live_keys(role: str) -> int:
    """How many live Idempotency-Keys a principal of `role` may hold."""
    return MAX_LIVE_KEYS.get(role, MAX_LIVE_KEYS_STAFF)


def request_hash(request: Mapping[str, Any]) -> str:
    """A stable hash of a request's fields (key order does not matter)."""
    return hashlib.sha256(orjson.dumps(dict(request), option=orjson.OPT_SORT_KEYS)).hexdigest()


def _nothing_to_check(conn: db.Transaction) -> None:
    """Writes whose whole authorization happened before the transaction."""


def run_once(idempotency: IdempotencyKey, operation: str, hashed: str,
             write: Callable[[db.Transaction], WriteResult],
             authorize: Callable[[db.Transaction], None] = _nothing_to_check) -> WriteResult:
    """`write(transaction)` unless this key already answered: then its stored answer
    (touching nothing), or 422 when it answered another operation or request. `authorize`
    runs first either way (it raises what a fresh request would get). A new key past the
    principal's live-key cap is 429."""
    scope = {"t": idempotency.tenant, "s": idempotency.subject, "k": idempotency.key}
    with db.transaction() as conn:
        authorize(conn)
        conn.run(_LOCK_SQL, **scope)
        stored = conn.run(_LOOKUP_SQL, **scope)
        if stored:
            return _replay(stored[0], operation, hashed)
        _check_live_keys(conn, idempotency)
        result = write(conn)
        conn.run(_STORE_SQL, **scope, o=operation, h=hashed, c=result.status, b=result.body)
    return result.committed_at(conn.position)


def _replay(stored: list[Any], operation: str, hashed: str) -> WriteResult:
    """The stored answer of this key, or 422 when it answered another request."""
    previous_operation, previous_hash, status, previous_body = stored
    if (previous_operation, previous_hash) != (operation, hashed):
        raise KeyReused("This Idempotency-Key was already used with a different request.")
    return WriteResult(status, previous_body, None)


def _check_live_keys(conn: db.Transaction, idempotency: IdempotencyKey) -> None:
    """TooManyKeys (with the seconds until the oldest expires) when the principal already
    holds its most live keys."""
    held, oldest_expires_in = conn.run(_LIVE_KEYS_SQL, t=idempotency.tenant, s=idempotency.subject)[0]
    if held >= idempotency.max_live_keys:
        raise TooManyKeys(f"This caller already holds {idempotency.max_live_keys} Idempotency-Keys from the"
                          " last 24 hours; retry later or send the request without a key.",
                          retry_after_s=max(1, int(oldest_expires_in)))
