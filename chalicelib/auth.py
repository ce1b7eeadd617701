"""Bearer-token check (JWT, HS256 pinned) and the tenant and role guards.

Token rules (API.md): a token lives at most `AUTH_MAX_TOKEN_TTL` seconds (default 24 h)
past its `iat` (and never expires later than that from now, `iat` or not); clocks may
differ by `LEEWAY_S`; the secret must be at least `settings.MIN_SECRET_BYTES` long.
"""
from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping, TypeGuard

from chalicelib.http import ApiError
from chalicelib.settings import Settings, SettingsError, secret_problem

ROLES = ("staff", "admin", "patient", "operator")
STAFF = ("staff", "admin")  # the hospital's own people
OPERATOR = "operator"  # the platform's own role: fleet statistics, the monitor page; no tenant's data
DIAGNOSTIC_ROLES = ("staff", "admin", "operator")  # may see X-Cache and Server-Timing
SHARED_SECRET_ISSUER = "shared-secret"  # the issuer of the HS256 development tokens
_REQUIRED = ["sub", "role", "exp"]  # and `tenant`, except for operator tokens
_VERIFIED_MAX = 4096
LEEWAY_S = 30
DEFAULT_MAX_TTL_S = 24 * 3600
_MAX_TOKEN_BYTES = 8192


@dataclass(frozen=True)
class Principal:
    """Who is calling: subject, tenant (clientId), role, and for patients their patientId."""

    sub: str
    tenant: int
    role: str
    patient_id: int | None
    expires_at: float
    issuer: str = SHARED_SECRET_ISSUER

    @property
    def is_patient(self) -> bool:
        return self.role == "patient"

    @property
    def sees_diagnostics(self) -> bool:
        """May this caller see which tier answered (X-Cache, Server-Timing)?"""
        return self.role in DIAGNOSTIC_ROLES

    @property
    def identity(self) -> str:
        """A fixed-length digest of everything that tells principals apart: tenant, issuer,
        subject, role and patient id (two tokens that share a `sub` but not a patient id are
        different principals). Scopes what a principal stores, such as Idempotency-Keys."""
        parts = (str(self.tenant), self.issuer, self.sub, self.role, str(self.patient_id or ""))
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


_verified: dict[tuple[str, str], Principal] = {}
_verified_lock = threading.Lock()


def _timestamp(value: object) -> float | None:
    """A NumericDate claim as a float, or None when it is not a finite number of a sane size."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not -2**53 <= value <= 2**53:  # no overflow on conversion (exp = 10**400)
        return None
    number = float(value)
    return number if number == number else None  # NaN


def check_lifetime(claims: Mapping[str, object], max_ttl_s: float) -> float:
    """The token's expiry; 401 when exp or iat is malformed or the lifetime exceeds max_ttl_s."""
    exp = _timestamp(claims.get("exp"))
    if exp is None:
        raise ApiError(401, "The token's exp claim is not a number of seconds.")
    now = time.time()
    if exp > now + max_ttl_s + LEEWAY_S:
        raise ApiError(401, f"The token lives longer than the allowed {int(max_ttl_s)} seconds.")
    if "iat" in claims:
        iat = _timestamp(claims.get("iat"))
        if iat is None or iat > now + LEEWAY_S:
            raise ApiError(401, "The token's iat claim is not a past time.")
        if exp - iat > max_ttl_s:
            raise ApiError(401, f"The token lives longer than the allowed {int(max_ttl_s)} seconds.")
    return exp


def _printable(value: object) -> TypeGuard[str]:
    """A `sub` claim: 1 to 200 printable characters that UTF-8 can encode (no NUL, no
    control characters, no lone surrogates)."""
    if not isinstance(value, str) or not 1 <= len(value) <= 200 or not value.isprintable():
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def principal_from_claims(claims: Mapping[str, object], expires_at: float,
                          issuer: str = SHARED_SECRET_ISSUER) -> Principal:
    """The principal a verified token's claims describe; ApiError(401) when they are unusable."""
    tenant, role, sub = claims.get("tenant"), claims.get("role"), claims.get("sub")
    if role not in ROLES:
        raise ApiError(401, "The token's role claim is not one of staff, admin, patient, operator.")
    if role == OPERATOR and tenant is None:
        tenant = 0  # the platform's role belongs to no tenant
    elif not isinstance(tenant, int) or isinstance(tenant, bool) or not 0 < tenant <= 2_147_483_647:
        raise ApiError(401, "The token's tenant claim is not a positive integer.")
    if not _printable(sub):
        raise ApiError(401, "The token's sub claim must be 1 to 200 printable characters.")
    patient_id = claims.get("patientId")
    if role == "patient":
        if (not isinstance(patient_id, int) or isinstance(patient_id, bool)
                or not 0 < patient_id <= 2_147_483_647):
            raise ApiError(401, "A patient token needs a positive integer patientId claim.")
    else:
        patient_id = None
    return Principal(sub=sub, tenant=tenant, role=role, patient_id=patient_id, expires_at=expires_at, issuer=issuer)


def verify_token(token: str, secret: str, max_ttl_s: float = DEFAULT_MAX_TTL_S) -> Principal:
    """Verify a development (HS256) JWT and return its principal; raises ApiError(401) on
    any defect, and SettingsError when the service's own secret is missing or too short.

    Verified tokens are remembered (bounded) so a warm container pays for HMAC once per
    token; expiry is still checked on every use.
    """
    return _remembered((token, secret), lambda: _verify_shared_secret(token, secret, max_ttl_s))


def _verify_shared_secret(token: str, secret: str, max_ttl_s: float) -> Principal:
    problem = secret_problem(secret)
    if problem is not None:
        raise SettingsError([problem])
    if len(token) > _MAX_TOKEN_BYTES:
        raise ApiError(401, "The token is not valid.")
    import jwt  # PyJWT (and cryptography) on the first token, not at a cold start

    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], leeway=LEEWAY_S,
                            options={"require": _REQUIRED, "verify_exp": False, "verify_iat": False})
    except jwt.InvalidTokenError:
        raise ApiError(401, "The token is not valid.") from None
    expires_at = check_lifetime(claims, max_ttl_s)
    if expires_at + LEEWAY_S <= time.time():
        raise ApiError(401, "The token has expired.")
    return principal_from_claims(claims, expires_at + LEEWAY_S)


def _remembered(cache_key: tuple[str, str], verify: Callable[[], Principal]) -> Principal:
    """The principal of a token verified once per container (`verify()` the first time;
    bounded memory), its expiry checked on every use."""
    principal = _verified.get(cache_key)
    if principal is None:
        principal = verify()
        with _verified_lock:
            if len(_verified) >= _VERIFIED_MAX:
                _verified.clear()
            _verified[cache_key] = principal
    if principal.expires_at <= time.time():
        raise ApiError(401, "The token has expired.")
    return principal


def principal_from_headers(headers: Mapping[str, str], settings: Settings) -> Principal:
    """The caller's principal from an `Authorization: Bearer <token>` header: a token of
    the configured OpenID Connect provider (its `iss`), else a development HS256 token
    unless `AUTH_SHARED_SECRET_TOKENS=0`."""
    value = headers.get("authorization") or ""
    scheme, _, token = value.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "Send an Authorization: Bearer <token> header.")
    if settings.oidc.enabled and _claimed_issuer(token) == settings.oidc.issuer:
        return _provider_principal(token, settings)
    if not settings.shared_secret_tokens:
        raise ApiError(401, "This service accepts only tokens of its identity provider.")
    return verify_token(token, settings.auth_secret, settings.auth_max_token_ttl_s)


def _claimed_issuer(token: str) -> object:
    """The `iss` a token claims, before any check (it only picks the verifier)."""
    if len(token) > _MAX_TOKEN_BYTES:
        return None
    import jwt

    try:
        return jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.InvalidTokenError:
        return None


def _provider_principal(token: str, settings: Settings) -> Principal:
    """An identity provider's token (chalicelib/oidc.py), remembered like the development
    tokens."""

    def verify() -> Principal:
        from chalicelib import oidc

        return oidc.verify(token, settings)

    return _remembered((token, settings.oidc.issuer), verify)


def require_role(principal: Principal, *roles: str) -> None:
    """403 unless the principal has one of `roles`."""
    if principal.role not in roles:
        raise ApiError(403, f"The role '{principal.role}' may not do this.")


def require_tenant(principal: Principal, client_id: int) -> None:
    """403 unless the token belongs to the tenant named by clientId (an operator token
    belongs to none: the platform's role reads no tenant's data)."""
    if principal.tenant != client_id or principal.role == OPERATOR:
        raise ApiError(403, "This token does not belong to that clientId.")


def default_subject(tenant: int, role: str, patient_id: int | None = None) -> str:
    """The `sub` of a development token: one per patient, one per staff role of a tenant."""
    if role == OPERATOR:
        return "operator"
    return f"patient-{tenant}-{patient_id}" if role == "patient" else f"{role}-{tenant}"


def issue_token(secret: str, tenant: int, role: str, sub: str | None = None,
                patient_id: int | None = None, ttl_s: int = 3600) -> str:
    """Sign a token (for the CLI, tests and benchmarks)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if role == "patient" and patient_id is None:
        raise ValueError("a patient token needs patient_id")
    now = int(time.time())
    claims: dict[str, object] = {"sub": sub or default_subject(tenant, role, patient_id), "role": role,
                                 "iat": now, "exp": now + ttl_s}
    if role != OPERATOR:
        claims["tenant"] = tenant
    if role == "patient":
        claims["patientId"] = patient_id
    import jwt

    return jwt.encode(claims, secret, algorithm="HS256")
