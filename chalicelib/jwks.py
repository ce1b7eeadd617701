"""The identity provider's signing keys: its JWKS, fetched over HTTP(S), kept in this
container and (through `SharedCopy`) in Redis for the other containers.

Rules (API.md, "OpenID Connect"):
- a key's algorithm comes from the key itself (RSA: RS256; EC on P-256: ES256), never from
  a token; keys for other uses or of other types are ignored;
- an unknown `kid` refetches the JWKS at most once per `min_refresh_s`;
- while the provider cannot be reached, the keys already known keep verifying.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 2.0
MAX_DOCUMENT_BYTES = 256 * 1024


class JwksUnavailable(Exception):
    """The provider's JWKS (or discovery document) could not be fetched or read."""


@dataclass(frozen=True)
class SigningKey:
    """One verification key and the one algorithm it verifies."""

    kid: str
    algorithm: str
    key: Any  # a cryptography public key


class SharedCopy(Protocol):
    """Where containers share the last JWKS document (Redis); every method may fail quietly."""

    def load(self) -> Optional[bytes]: ...

    def save(self, document: bytes) -> None: ...


def _algorithm(jwk: dict[str, Any]) -> Optional[str]:
    """The algorithm a JWK verifies, from its type (and curve); None when unsupported or
    when the key declares another algorithm or use."""
    kty, crv = jwk.get("kty"), jwk.get("crv")
    algorithm = "RS256" if kty == "RSA" else "ES256" if (kty, crv) == ("EC", "P-256") else None
    if algorithm is None or jwk.get("use", "sig") != "sig":
        return None
    if jwk.get("alg", algorithm) != algorithm:
        return None
    return algorithm


def parse_jwks(document: bytes) -> dict[str, SigningKey]:
    """The usable signing keys of a JWKS document, by kid; JwksUnavailable when it is not one."""
    from jwt.algorithms import ECAlgorithm, RSAAlgorithm

    try:
        keys = json.loads(document)["keys"]
    except (ValueError, KeyError, TypeError):
        raise JwksUnavailable("the JWKS document is not a JSON object with a keys list") from None
    out: dict[str, SigningKey] = {}
    for jwk in keys if isinstance(keys, list) else []:
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
            continue
        algorithm = _algorithm(jwk)
        if algorithm is None:
            continue
        reader = RSAAlgorithm if algorithm == "RS256" else ECAlgorithm
        try:
            key = reader.from_jwk(jwk)
        except Exception:  # noqa: BLE001 - a malformed key is skipped, the others still count
            continue
        out[jwk["kid"]] = SigningKey(jwk["kid"], algorithm, key)
    return out


def fetch(url: str) -> bytes:
    """GET `url` (bounded in time and size); JwksUnavailable on any failure."""
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as response:  # noqa: S310 - https or loopback (settings)
            body = response.read(MAX_DOCUMENT_BYTES + 1)
    except (OSError, ValueError) as exc:
        raise JwksUnavailable(f"could not fetch the identity provider's document ({type(exc).__name__})") from None
    if len(body) > MAX_DOCUMENT_BYTES:
        raise JwksUnavailable("the identity provider's document is too large")
    return body


def discover_jwks_url(issuer: str) -> str:
    """The `jwks_uri` of the issuer's OpenID discovery document."""
    document = fetch(issuer.rstrip("/") + "/.well-known/openid-configuration")
    try:
        url = json.loads(document)["jwks_uri"]
    except (ValueError, KeyError, TypeError):
        raise JwksUnavailable("the discovery document names no jwks_uri") from None
    if not isinstance(url, str) or not url.startswith("https://"):
        raise JwksUnavailable("the discovery document's jwks_uri is not an https:// URL")
    return url


class KeyStore:
    """The provider's keys as this container knows them (module-level, so they survive warm
    invocations). Thread-safe; a refetch happens under one lock."""

    def __init__(self, jwks_url: Callable[[], str], min_refresh_s: float,
                 shared: Optional[SharedCopy] = None) -> None:
        self._jwks_url = jwks_url
        self.min_refresh_s = min_refresh_s
        self.shared = shared
        self.keys: dict[str, SigningKey] = {}
        self.fetches = 0
        self._fetched_at = float("-inf")
        self._tried_shared = False
        self._lock = threading.Lock()

    def key(self, kid: str) -> Optional[SigningKey]:
        """The key with this kid: known, from the shared copy, or after a refetch (at most one
        per `min_refresh_s`); None when the provider has no such key or cannot be reached."""
        found = self.keys.get(kid)
        if found is not None:
            return found
        with self._lock:
            if kid not in self.keys and not self._tried_shared:
                self._tried_shared = True
                self._adopt_shared()
            if kid not in self.keys and time.monotonic() - self._fetched_at >= self.min_refresh_s:
                self._refetch()
            return self.keys.get(kid)

    def _adopt_shared(self) -> None:
        document = self.shared.load() if self.shared is not None else None
        if document:
            try:
                self.keys = parse_jwks(document)
            except JwksUnavailable:
                pass

    def _refetch(self) -> None:
        self._fetched_at = time.monotonic()
        self.fetches += 1
        try:
            document = fetch(self._jwks_url())
            keys = parse_jwks(document)
        except JwksUnavailable as exc:
            log.warning("identity provider keys not refreshed: %s; the known keys keep verifying", exc)
            return
        self.keys = keys
        if self.shared is not None:
            self.shared.save(document)
