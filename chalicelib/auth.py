"""Bearer-token check (JWT, HS256 pinned) and the tenant and role guards."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Mapping

import jwt

from chalicelib.http import ApiError

ROLES = ("staff", "admin", "patient")
_REQUIRED = ["sub", "tenant", "role", "exp"]
_VERIFIED_MAX = 4096


@dataclass(frozen=True)
class Principal:
    """Who is calling: subject, tenant (clientId), role, and for patients their patientId."""

    sub: str
    tenant: int
    role: str
    patient_id: int | None
    expires_at: float

    @property
    def is_patient(self) -> bool:
        return self.role == "patient"


_verified: dict[tuple[str, str], Principal] = {}
_verified_lock = threading.Lock()


def _principal_from_claims(claims: Mapping[str, object]) -> Principal:
    tenant, role, sub = claims.get("tenant"), claims.get("role"), claims.get("sub")
    if not isinstance(tenant, int) or isinstance(tenant, bool) or tenant <= 0:
        raise ApiError(401, "The token's tenant claim is not a positive integer.")
    if role not in ROLES:
        raise ApiError(401, "The token's role claim is not one of staff, admin, patient.")
    if not isinstance(sub, str) or not sub:
        raise ApiError(401, "The token's sub claim is missing.")
    patient_id = claims.get("patientId")
    if role == "patient":
        if not isinstance(patient_id, int) or isinstance(patient_id, bool) or patient_id <= 0:
            raise ApiError(401, "A patient token needs a positive integer patientId claim.")
    else:
        patient_id = None
    return Principal(sub=sub, tenant=tenant, role=role, patient_id=patient_id,
                     expires_at=float(claims["exp"]))  # type: ignore[arg-type]


def verify_token(token: str, secret: str) -> Principal:
    """Verify a JWT and return its principal; raises ApiError(401) on any defect.

    Verified tokens are remembered (bounded) so a warm container pays for HMAC once per
    token; expiry is still checked on every use.
    """
    if not secret:
        raise ApiError(503, "The service has no AUTH_SECRET configured.", code="unavailable")
    cache_key = (token, secret)
    principal = _verified.get(cache_key)
    if principal is None:
        try:
            claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": _REQUIRED})
        except jwt.ExpiredSignatureError:
            raise ApiError(401, "The token has expired.") from None
        except jwt.InvalidTokenError:
            raise ApiError(401, "The token is not valid.") from None
        principal = _principal_from_claims(claims)
        with _verified_lock:
            if len(_verified) >= _VERIFIED_MAX:
                _verified.clear()
            _verified[cache_key] = principal
    if principal.expires_at <= time.time():
        raise ApiError(401, "The token has expired.")
    return principal


def principal_from_headers(headers: Mapping[str, str], secret: str) -> Principal:
    """The caller's principal from an `Authorization: Bearer <token>` header."""
    value = headers.get("authorization") or ""
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "Send an Authorization: Bearer <token> header.")
    return verify_token(token.strip(), secret)


def require_role(principal: Principal, *roles: str) -> None:
    """403 unless the principal has one of `roles`."""
    if principal.role not in roles:
        raise ApiError(403, f"The role '{principal.role}' may not do this.")


def require_tenant(principal: Principal, client_id: int) -> None:
    """403 unless the token belongs to the tenant named by clientId."""
    if principal.tenant != client_id:
        raise ApiError(403, "This token does not belong to that clientId.")


def issue_token(secret: str, tenant: int, role: str, sub: str | None = None,
                patient_id: int | None = None, ttl_s: int = 3600) -> str:
    """Sign a token (for the CLI, tests and benchmarks)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    claims: dict[str, object] = {"sub": sub or f"{role}-{tenant}", "tenant": tenant, "role": role,
                                 "exp": int(time.time()) + ttl_s}
    if role == "patient":
        if patient_id is None:
            raise ValueError("a patient token needs patient_id")
        claims["patientId"] = patient_id
    return jwt.encode(claims, secret, algorithm="HS256")
