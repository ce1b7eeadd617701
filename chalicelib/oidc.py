"""Tokens of the hospital's OpenID Connect provider (API.md, "OpenID Connect"): RS256 or
ES256 JWTs checked against the provider's JWKS, `iss`, `aud`, `exp`, `nbf` and `iat` with
30 s of leeway, and the tenant, role and patient id read from the configured claims.

The algorithm is the one of the key the token's `kid` names (chalicelib/jwks.py): a token
whose header says anything else (`none`, HS256 signed with the public key, ...) is refused.
"""
from __future__ import annotations

import hashlib
import threading
from typing import Any, Callable, Mapping, Optional, Protocol

from chalicelib.auth import LEEWAY_S, ROLES, Principal, check_lifetime, principal_from_claims
from chalicelib.http import ApiError
from chalicelib.jwks import KeyStore, SharedCopy, discover_jwks_url
from chalicelib.settings import OidcSettings, Settings

# A role claim that is a list (Cognito's `cognito:groups`): the first of these it holds wins.
ROLE_PRIORITY = ("admin", "staff", "patient", "operator")

SHARED_COPY_TTL_S = 86400

_stores: dict[OidcSettings, KeyStore] = {}
_stores_lock = threading.Lock()
_shared_copy: Optional[Callable[[str], SharedCopy]] = None


class ValueStore(Protocol):
    """Plain values with a lifetime (chalicelib.cache.redis_tier.RedisTier)."""

    def get_value(self, key: str) -> Optional[bytes]: ...

    def set_value(self, key: str, value: bytes, ttl_s: int) -> None: ...


class SharedKeys:
    """A provider's JWKS document under one key of a shared store, for every container."""

    def __init__(self, store: ValueStore, key: str) -> None:
        self.store = store
        self.key = key

    def load(self) -> Optional[bytes]:
        return self.store.get_value(self.key)

    def save(self, document: bytes) -> None:
        self.store.set_value(self.key, document, SHARED_COPY_TTL_S)


def share_keys_through(store: Optional[ValueStore], namespace: str = "") -> None:
    """Keep every provider's keys in `store` too (the app wires Redis here), under
    `<namespace>:jwks:<digest of the issuer>`; None: this container's memory only."""
    global _shared_copy
    if store is None:
        _shared_copy = None
        return
    _shared_copy = lambda issuer: SharedKeys(  # noqa: E731
        store, f"{namespace}:jwks:{hashlib.sha256(issuer.encode()).hexdigest()[:16]}")


def key_store(oidc: OidcSettings) -> KeyStore:
    """This container's key store for a provider (one per configuration, kept while warm)."""
    store = _stores.get(oidc)
    if store is not None and store.shared is None and _shared_copy is not None:
        store.shared = _shared_copy(oidc.issuer)  # the cache was wired after the store was made
    if store is None:
        with _stores_lock:
            store = _stores.get(oidc)
            if store is None:
                url = oidc.jwks_url
                shared = _shared_copy(oidc.issuer) if _shared_copy is not None else None
                store = KeyStore((lambda: url) if url else (lambda: discover_jwks_url(oidc.issuer)),
                                 oidc.jwks_min_refresh_s, shared)
                _stores[oidc] = store
    return store


def forget_keys() -> None:
    """Drop every key store (tests; after a fork or restore the keys would still be valid)."""
    with _stores_lock:
        _stores.clear()


def _role(value: Any) -> Any:
    """A role claim as a role name: a string as is, a list by ROLE_PRIORITY."""
    if isinstance(value, list):
        return next((role for role in ROLE_PRIORITY if role in value), None)
    return value


def _number(value: Any) -> Any:
    """A tenant or patient claim: an integer, or digits as a string (Cognito's custom
    attributes are strings)."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 10:
        return int(value)
    return value


def _mapped_claims(claims: Mapping[str, Any], oidc: OidcSettings) -> dict[str, Any]:
    """The provider's claims in the shape of our own tokens (tenant, role, patientId)."""
    mapped = {"sub": claims.get("sub"), "role": _role(claims.get(oidc.role_claim)),
              "tenant": _number(claims.get(oidc.tenant_claim)),
              "patientId": _number(claims.get(oidc.patient_claim))}
    if mapped["role"] not in ROLES:
        raise ApiError(401, f"The token's {oidc.role_claim} claim names none of admin, staff, patient, operator.")
    return mapped


def verify(token: str, settings: Settings) -> Principal:
    """The principal of a provider's token; ApiError(401) on any defect."""
    import jwt

    oidc = settings.oidc
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise ApiError(401, "The token is not valid.") from None
    kid = header.get("kid")
    key = key_store(oidc).key(kid) if isinstance(kid, str) else None
    if key is None:
        raise ApiError(401, "The token is not signed by a key of the identity provider.")
    if header.get("alg") != key.algorithm:
        raise ApiError(401, "The token's algorithm is not the one of its key.")
    try:
        claims = jwt.decode(token, key.key, algorithms=[key.algorithm], audience=oidc.audience,
                            issuer=oidc.issuer, leeway=LEEWAY_S,
                            options={"require": ["sub", "exp", "iss", "aud"], "verify_iat": False})
    except jwt.InvalidTokenError:
        raise ApiError(401, "The token is not valid.") from None
    expires_at = check_lifetime(claims, settings.auth_max_token_ttl_s)
    return principal_from_claims(_mapped_claims(claims, oidc), expires_at + LEEWAY_S, issuer=oidc.issuer)
