"""Locally generated keys and hand-made JWTs for the authentication tests (no network)."""

from __future__ import annotations

import base64
import json
import time
from functools import lru_cache
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ENTRA_TID = "11111111-2222-3333-4444-555555555555"
ENTRA_AUD = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"


@lru_cache(maxsize=4)
def rsa_key(name: str = "entra") -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwks(name: str = "entra", kid: str = "entra-kid-1") -> dict[str, Any]:
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key(name).public_key(), as_dict=True)
    return {"keys": [{**jwk, "kid": kid, "use": "sig", "alg": "RS256"}]}


def public_pem(name: str = "entra") -> bytes:
    return rsa_key(name).public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def sign(claims: dict[str, Any], key: Any = None, kid: str | None = "entra-kid-1", alg: str = "RS256") -> str:
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(claims, key if key is not None else rsa_key("entra"), algorithm=alg, headers=headers)


def entra_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": f"https://sts.windows.net/{ENTRA_TID}/", "aud": ENTRA_AUD, "tid": ENTRA_TID,
              "iat": now, "nbf": now, "exp": now + 3600, "appid": "00000014-0000-0000-c000-000000000000"}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _b64(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode()


def unsigned(claims: dict[str, Any], kid: str = "entra-kid-1") -> str:
    """An ``alg: none`` token."""
    header = {"alg": "none", "typ": "JWT", "kid": kid}
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."


def hs256_with_public_key(claims: dict[str, Any], pem: bytes, kid: str) -> str:
    """The algorithm-confusion attack: HS256 with the verifier's public key as the HMAC secret
    (pyjwt refuses to do this itself, so the token is built by hand)."""
    import hashlib
    import hmac

    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = _b64(json.dumps(claims).encode())
    signature = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"
