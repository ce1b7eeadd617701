"""OpenID Connect tokens against a real JWKS served over HTTP by a local server, with tokens
signed by an independent JOSE library (joserfc): accepted, refused, rotated, provider down,
claim mapping, and the development tokens switched off."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey, RSAKey

from tests.helpers_servers import patched_environ

ISSUER = "https://idp.hospital.test/realms/staff"
AUDIENCE = "booking-api"


class Provider:
    """A JWKS endpoint on loopback whose keys a test can rotate, and which it can stop."""

    def __init__(self) -> None:
        self.keys: list[Any] = []
        self.requests = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                provider.requests += 1
                body = json.dumps({"keys": [k.as_dict(private=False) for k in provider.keys]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _rsa(kid: str) -> RSAKey:
    """A new RSA key; kids are unique (a provider never reuses one for another key)."""
    return RSAKey.generate_key(2048, parameters={"kid": f"{kid}-{uuid.uuid4().hex[:8]}"})


def _ec(kid: str) -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": f"{kid}-{uuid.uuid4().hex[:8]}"})


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": f"user-{uuid.uuid4().hex[:8]}", "iat": now,
              "nbf": now, "exp": now + 600, "tenant": 1, "role": "admin"}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(key: Any, alg: str, **overrides: Any) -> str:
    return jose_jwt.encode({"alg": alg, "kid": key.kid}, _claims(**overrides), key)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _handmade(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None) -> str:
    """A JWT assembled by hand (for `none` and HS256 with the public key as its secret)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = _b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()) if secret else ""
    return f"{signing_input}.{signature}"


@pytest.fixture()
def provider(app_env) -> Iterator[Provider]:
    from chalicelib import oidc

    served = Provider()
    served.keys = [_rsa("rsa-1"), _ec("ec-1")]
    env = {"AUTH_OIDC_ISSUER": ISSUER, "AUTH_OIDC_AUDIENCE": AUDIENCE, "AUTH_OIDC_JWKS_URL": served.url,
           "AUTH_JWKS_MIN_REFRESH_S": "1"}
    oidc.forget_keys()
    try:
        with patched_environ(env):
            yield served
    finally:
        served.stop()
        oidc.forget_keys()


def _get(client, token: str, client_id: int = 1):
    return client.http.get(f"/api/departments?clientId={client_id}", headers={"Authorization": f"Bearer {token}"})


def _assert_401(response) -> None:
    assert response.status_code == 401, response.body
    assert response.json_body["error"]["code"] == "unauthorized"


def test_valid_rs256_and_es256_tokens_are_accepted(client, provider):
    rsa, ec = provider.keys
    assert _get(client, _sign(rsa, "RS256")).status_code == 200
    assert _get(client, _sign(ec, "ES256")).status_code == 200


@pytest.mark.parametrize("overrides", [
    {"iss": "https://idp.elsewhere.test/"},
    {"aud": "another-app"},
    {"exp": int(time.time()) - 120, "iat": int(time.time()) - 600, "nbf": int(time.time()) - 600},
    {"nbf": int(time.time()) + 600, "exp": int(time.time()) + 900},
    {"role": "janitor"},
    {"tenant": None},
], ids=["issuer", "audience", "expired", "not-yet-valid", "role", "no-tenant"])
def test_tokens_with_wrong_claims_are_401(client, provider, overrides):
    _assert_401(_get(client, _sign(provider.keys[0], "RS256", **overrides)))


def test_alg_none_is_401(client, provider):
    _assert_401(_get(client, _handmade({"alg": "none", "kid": provider.keys[0].kid, "typ": "JWT"}, _claims(), None)))


def test_hs256_signed_with_the_public_key_is_401(client, provider):
    public_pem = provider.keys[0].as_pem(private=False)
    kid = provider.keys[0].kid
    _assert_401(_get(client, _handmade({"alg": "HS256", "kid": kid, "typ": "JWT"}, _claims(), public_pem)))


def test_unknown_kid_and_tampered_payload_are_401(client, provider):
    stranger = _rsa("rsa-stranger")  # not in the JWKS
    _assert_401(_get(client, _sign(stranger, "RS256")))
    header, payload, signature = _sign(provider.keys[0], "RS256", role="staff").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["role"] = "admin"
    _assert_401(_get(client, f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"))


def test_another_tenant_is_403(client, provider):
    response = _get(client, _sign(provider.keys[0], "RS256", tenant=2))
    assert response.status_code == 403 and response.json_body["error"]["code"] == "forbidden"


def test_a_rotated_key_is_accepted_after_one_refetch(client, provider):
    from chalicelib import oidc
    from chalicelib.settings import get_settings

    assert _get(client, _sign(provider.keys[0], "RS256")).status_code == 200
    store = oidc.key_store(get_settings().oidc)
    fetched = store.fetches
    rotated = _rsa("rsa-2")
    provider.keys = [rotated]
    time.sleep(1.1)  # AUTH_JWKS_MIN_REFRESH_S
    for _ in range(5):  # a refetch, then the key is known: no more requests to the provider
        assert _get(client, _sign(rotated, "RS256")).status_code == 200
    assert store.fetches == fetched + 1
    # Unknown kids within the refresh interval do not hammer the provider.
    requests = provider.requests
    for n in range(10):
        _assert_401(_get(client, _sign(_rsa(f"junk-{n}"), "RS256")))
    assert provider.requests <= requests + 1


def test_the_provider_down_does_not_stop_known_keys(client, provider):
    from chalicelib import oidc

    rsa = provider.keys[0]
    assert _get(client, _sign(rsa, "RS256")).status_code == 200
    provider.stop()
    assert _get(client, _sign(rsa, "RS256")).status_code == 200  # a new token, the cached key
    # A new container (no keys in memory) verifies with the copy other containers left in Redis.
    oidc.forget_keys()
    assert _get(client, _sign(rsa, "RS256")).status_code == 200


def test_cognito_groups_and_string_attributes_map_to_role_and_tenant(client, provider):
    env = {"AUTH_ROLE_CLAIM": "cognito:groups", "AUTH_TENANT_CLAIM": "custom:tenant",
           "AUTH_PATIENT_CLAIM": "custom:patient_id"}
    with patched_environ(env):
        token = _sign(provider.keys[0], "RS256", role=None, tenant=None,
                      **{"cognito:groups": ["nurses", "staff", "admin"], "custom:tenant": "1"})
        assert _get(client, token).status_code == 200
        stats = client.http.get("/api/dashboard/stats?clientId=1", headers={"Authorization": f"Bearer {token}"})
        assert stats.status_code == 200  # admin won over staff: a staff-only route answers too
        patient = _sign(provider.keys[0], "RS256", role=None, tenant=None,
                        **{"cognito:groups": ["patient"], "custom:tenant": "1", "custom:patient_id": "7"})
        listed = client.http.get("/api/appointments/list?clientId=1", headers={"Authorization": f"Bearer {patient}"})
        assert listed.status_code == 200
        assert {a["patientId"] for a in listed.json_body["appointments"]} <= {7}


def test_shared_secret_tokens_can_be_switched_off(client, app_env, provider):
    with patched_environ({"AUTH_SHARED_SECRET_TOKENS": "0"}):
        _assert_401(_get(client, app_env.token(role="admin")))
        assert _get(client, _sign(provider.keys[0], "RS256")).status_code == 200
    assert _get(client, app_env.token(role="admin")).status_code == 200


def test_an_l1_hit_asks_the_provider_nothing(client, provider):
    token = _sign(provider.keys[0], "RS256")
    assert _get(client, token).status_code == 200
    requests = provider.requests
    for _ in range(20):
        response = _get(client, token)
        assert response.status_code == 200
    assert response.headers["X-Cache"] == "L1"
    assert provider.requests == requests
