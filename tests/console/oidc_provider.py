"""A small, real OpenID Connect provider for the tests: a Starlette app under uvicorn on loopback
serving discovery, JWKS, authorize and token with its own RSA key. It checks what a provider
checks (the client's id and secret, the redirect URI, the PKCE verifier against the challenge,
one use per code) and signs ID tokens with RS256. Its ``user`` is who is "signed in" at it (the
authorize endpoint consents at once); ``tamper`` changes the next ID token's claims, ``sign_with``
signs it with another key under the same key id — what the tests of refusals need."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.pg import free_port
from tests.threaded_server import ThreadedServer

CLIENT_ID = "idsync-console"
CLIENT_SECRET = "provider secret: s3cr3t/+="
KID = "test-key-1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Provider:
    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65_537, key_size=2048)
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}/realms/staff"
        self.user: dict[str, Any] = {"sub": "u-1", "email": "alice@example.com", "email_verified": True}
        self.tamper: dict[str, Any] = {}
        self.sign_with: rsa.RSAPrivateKey | None = None
        self.kid = KID
        self.codes: dict[str, dict[str, str]] = {}
        self.token_requests: list[dict[str, Any]] = []
        prefix = "/realms/staff"
        self.app = Starlette(routes=[
            Route(f"{prefix}/.well-known/openid-configuration", self.discovery),
            Route(f"{prefix}/jwks", self.jwks),
            Route(f"{prefix}/authorize", self.authorize),
            Route(f"{prefix}/token", self.token, methods=["POST"]),
        ])
        self.server = ThreadedServer(self.app, self.port, "oidc-provider")

    def start(self) -> Provider:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    async def discovery(self, request: Request) -> Response:
        return JSONResponse({"issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
                             "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
                             "response_types_supported": ["code"], "code_challenge_methods_supported": ["S256"],
                             "id_token_signing_alg_values_supported": ["RS256"]})

    async def jwks(self, request: Request) -> Response:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return JSONResponse({"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]})

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        assert q["response_type"] == "code" and q["client_id"] == CLIENT_ID and "openid" in q["scope"].split()
        assert q["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"challenge": q["code_challenge"], "nonce": q["nonce"], "redirect_uri": q["redirect_uri"]}
        return RedirectResponse(f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}", 302)

    async def token(self, request: Request) -> Response:
        form = {key: values[0] for key, values in parse_qs((await request.body()).decode()).items()}
        self.token_requests.append(form)
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{_quote(CLIENT_SECRET)}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        grant = self.codes.pop(str(form.get("code")), None)
        if grant is None or form.get("grant_type") != "authorization_code":
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return JSONResponse({"error": "invalid_grant", "error_description": "redirect_uri"}, status_code=400)
        verifier = str(form.get("code_verifier", ""))
        if _b64(hashlib.sha256(verifier.encode()).digest()) != grant["challenge"]:
            return JSONResponse({"error": "invalid_grant", "error_description": "PKCE"}, status_code=400)
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": CLIENT_ID, "iat": now, "exp": now + 300, "nonce": grant["nonce"],
                  **self.user, **self.tamper}
        claims = {key: value for key, value in claims.items() if value is not None}
        token = jwt.encode(claims, self.sign_with or self.key, algorithm="RS256", headers={"kid": self.kid})
        return JSONResponse({"access_token": "opaque", "token_type": "Bearer", "id_token": token})


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")
