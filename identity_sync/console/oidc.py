"""Console sign-in through an OpenID Connect provider (docs/console.md, Single sign-on): the
authorization code flow with PKCE (S256), ``state`` and ``nonce``.

1. ``GET /admin/oidc/login`` reads the provider's discovery document, makes a ``state``, a
   ``nonce`` and a PKCE verifier, keeps them in a short-lived cookie signed with the console's key
   (nothing stored server-side before a sign-in succeeds: a stranger starting sign-ins writes no
   row) and sends the browser to the provider.
2. ``GET /admin/oidc/callback`` checks ``state`` against that cookie (and drops the cookie: one
   use), exchanges the code (with the verifier and, when configured, the client secret) at the
   token endpoint, and verifies the ID token: its signature against the provider's JWKS (the
   ``jwks_uri`` of the discovery document; fetched again once if the key id is unknown — a key
   rotation), ``iss`` equal to the configured issuer, ``aud`` containing our client id (and
   ``azp`` ours when there are several audiences), ``exp``/``iat`` (with the JWT leeway), and the
   ``nonce`` of the cookie.
3. The configured claim (``email``, which must then be verified, ``preferred_username`` or
   ``sub``) must name an **existing, enabled operator** — case-insensitively. The operator's role
   is the one of their account.

Why no account is created by a sign-in and no role comes from a claim: a provider typically
lets many people sign in (every employee of a company, sometimes anyone with an account at the
provider); creating operators from sign-ins would open the console to all of them, and taking
the role from a claim would hand console admin to whoever can set that claim at the provider.
An operator account created with ``identity-sync operator create`` is the decision that this
person may use the console; the provider only proves who they are.

Every refusal is a clear page (403, the reason in words) and a ``login-failed`` audit event with
the attributes ``oidc`` and the reason; nothing of the tokens is logged.

The library: PyJWT (already a dependency, ``pyjwt[crypto]``) verifies the ID token against the
keys of a ``PyJWKSet``; httpx2 (already the engine's HTTP client) fetches the discovery document,
the JWKS and the token — no redirects followed, https required (plain http only for a loopback
issuer, as in tests). Authlib would add a dependency for the same few checks, with its own
HTTP-client integration to keep in step; what it would save is the 30 lines of :meth:`OidcClient.verify`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

import anyio.to_thread
import httpx2
import jwt
import structlog
from itsdangerous import BadSignature, URLSafeSerializer
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from identity_sync.config import Settings
from identity_sync.service.operators import Operator

if TYPE_CHECKING:
    from identity_sync.console.routes import Console

log = structlog.get_logger("identity_sync.console.oidc")
#: How long a sign-in may take at the provider (the pending cookie's life).
PENDING_SECONDS = 600
DISCOVERY_SECONDS = 3_600
#: Signature algorithms accepted for ID tokens: asymmetric only (an HS256 token would be "signed"
#: with the client secret, and ``none`` with nothing).
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
MAX_DOCUMENT_BYTES = 256 * 1024
TIMEOUT_SECONDS = 10.0

#: What each refusal says on the page (its key is the reason in the audit event and the log).
REASONS = {
    "provider_error": "The identity provider did not sign you in.",
    "state": "This sign-in was not started here, or was already used (its state does not match): start again.",
    "expired_state": "This sign-in took too long: start again.",
    "token_exchange": "The identity provider refused to complete the sign-in.",
    "signature": "The identity provider's answer is not signed by one of its keys.",
    "issuer": "The ID token was issued by another provider.",
    "audience": "The ID token was issued for another application.",
    "expired": "The ID token has expired.",
    "nonce": "The ID token belongs to another sign-in (its nonce does not match).",
    "invalid_token": "The ID token is not valid.",
    "unverified_email": "The identity provider has not verified your e-mail address.",
    "unknown_operator": "You are signed in at the identity provider, but there is no console operator "
                        "of that name: an administrator creates one with identity-sync operator create.",
    "disabled": "Your operator account is disabled.",
    "unavailable": "The identity provider cannot be reached right now; try again in a moment.",
}


class OidcRefused(Exception):
    def __init__(self, reason: str, operator: Operator | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.operator = operator


@dataclass(frozen=True, slots=True)
class Pending:
    state: str
    nonce: str
    verifier: str
    at: float


def enabled(settings: Settings) -> bool:
    return bool(settings.console_oidc_issuer)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _allowed_url(url: object, issuer: str) -> bool:
    """https, or plain http to loopback when the issuer itself is on loopback (tests)."""
    if not isinstance(url, str):
        return False
    parts, issuer_parts = urlsplit(url), urlsplit(issuer)
    if parts.scheme == "https":
        return True
    loopback = ("127.0.0.1", "localhost", "::1")
    return parts.scheme == "http" and parts.hostname in loopback and issuer_parts.hostname in loopback


class OidcClient:
    """The provider as seen from here: its discovery document and keys (cached), the token call."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time,
                 transport: httpx2.BaseTransport | None = None) -> None:
        assert settings.console_oidc_issuer and settings.console_oidc_client_id
        self.settings = settings
        self.issuer = settings.console_oidc_issuer
        self.client_id = settings.console_oidc_client_id
        self.redirect_uri = settings.resolved_oidc_redirect_uri()
        self.clock = clock
        self.transport = transport
        self._lock = threading.Lock()
        self._discovery: tuple[float, dict[str, Any]] | None = None
        self._keys: jwt.PyJWKSet | None = None

    def _http(self) -> httpx2.Client:
        # A client per sign-in (a rare event), closed after: nothing held open between them.
        return httpx2.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False, transport=self.transport)

    def _get_json(self, url: str) -> dict[str, Any]:
        if not _allowed_url(url, self.issuer):
            raise OidcRefused("unavailable")
        with self._http() as http:
            response = http.get(url, headers={"Accept": "application/json"})
        if response.status_code != 200 or len(response.content) > MAX_DOCUMENT_BYTES:
            raise OidcRefused("unavailable")
        value = response.json()
        if not isinstance(value, dict):
            raise OidcRefused("unavailable")
        return value

    def discovery(self) -> dict[str, Any]:
        with self._lock:
            cached = self._discovery
        if cached is not None and self.clock() - cached[0] < DISCOVERY_SECONDS:
            return cached[1]
        document = self._get_json(self.issuer.rstrip("/") + "/.well-known/openid-configuration")
        # OpenID Connect Discovery 1.0, section 4.3: the document's issuer is exactly the one asked for.
        if document.get("issuer") != self.issuer:
            log.warning("console.oidc_discovery_issuer_mismatch")
            raise OidcRefused("unavailable")
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not _allowed_url(document.get(key), self.issuer):
                log.warning("console.oidc_discovery_bad_endpoint", endpoint=key)
                raise OidcRefused("unavailable")
        methods = document.get("code_challenge_methods_supported")
        if isinstance(methods, list) and "S256" not in methods:
            log.warning("console.oidc_no_pkce_s256")
            raise OidcRefused("unavailable")
        with self._lock:
            self._discovery = (self.clock(), document)
        return document

    def start(self) -> tuple[str, Pending]:
        """The provider's authorization URL to send the browser to, and what to remember meanwhile."""
        document = self.discovery()
        pending = Pending(secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(48),
                          self.clock())
        challenge = _b64(hashlib.sha256(pending.verifier.encode()).digest())
        query = urlencode({"response_type": "code", "client_id": self.client_id, "redirect_uri": self.redirect_uri,
                           "scope": self.settings.console_oidc_scopes, "state": pending.state,
                           "nonce": pending.nonce, "code_challenge": challenge, "code_challenge_method": "S256"})
        endpoint = document["authorization_endpoint"]
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}", pending

    def complete(self, params: dict[str, str], pending: Pending | None) -> dict[str, Any]:
        """The verified claims of the ID token of a callback's ``code``; raises :class:`OidcRefused`."""
        if pending is None or not hmac.compare_digest(params.get("state", "").encode(), pending.state.encode()):
            raise OidcRefused("state")
        if self.clock() - pending.at > PENDING_SECONDS:
            raise OidcRefused("expired_state")
        if "error" in params or not params.get("code"):
            log.info("console.oidc_provider_error", error=params.get("error", "")[:64])
            raise OidcRefused("provider_error")
        id_token = self._exchange(params["code"], pending)
        return self.verify(id_token, pending.nonce)

    def _exchange(self, code: str, pending: Pending) -> str:
        document = self.discovery()
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri,
                "code_verifier": pending.verifier, "client_id": self.client_id}
        auth: tuple[str, str] | None = None
        secret_file = self.settings.console_oidc_client_secret_file
        if secret_file is not None:
            secret = secret_file.read_text(encoding="utf-8").rstrip("\r\n")
            # client_secret_basic, each part form-encoded first (RFC 6749, section 2.3.1).
            auth = (quote(self.client_id, safe=""), quote(secret, safe=""))
        try:
            with self._http() as http:
                # Without a secret, the client's default auth, which is none (_http).
                response = http.post(document["token_endpoint"], data=form, headers={"Accept": "application/json"},
                                     auth=auth if auth is not None else httpx2.USE_CLIENT_DEFAULT)
        except httpx2.HTTPError as exc:
            log.warning("console.oidc_token_unreachable", error=type(exc).__name__)
            raise OidcRefused("unavailable") from None
        if response.status_code != 200:
            log.info("console.oidc_token_refused", status=response.status_code)
            raise OidcRefused("token_exchange")
        try:
            token = response.json().get("id_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str):
            raise OidcRefused("token_exchange")
        return token

    def _key(self, kid: str | None) -> jwt.PyJWK:
        with self._lock:
            keys = self._keys
        for attempt in range(2):
            if keys is None or attempt == 1:  # not fetched yet, or an unknown key id: a key rotation?
                try:
                    keys = jwt.PyJWKSet.from_dict(self._get_json(self.discovery()["jwks_uri"]))
                except jwt.PyJWKSetError:
                    raise OidcRefused("signature") from None
                with self._lock:
                    self._keys = keys
            matching = [key for key in keys.keys if kid is None or key.key_id == kid]
            if len(matching) == 1:
                return matching[0]
            if kid is None:
                break  # several keys and no key id in the token: none may be guessed
        raise OidcRefused("signature")

    def verify(self, id_token: str, nonce: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError:
            raise OidcRefused("invalid_token") from None
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise OidcRefused("signature")
        # PyJWT refuses a key of another type than the algorithm's (an EC key for RS256).
        key = self._key(header.get("kid"))
        try:
            claims = jwt.decode(id_token, key.key, algorithms=[algorithm], audience=self.client_id,
                                issuer=self.issuer, leeway=self.settings.jwt_leeway_seconds,
                                options={"require": ["exp", "iat", "iss", "aud", "sub"]})
        except jwt.InvalidSignatureError:
            raise OidcRefused("signature") from None
        except jwt.ExpiredSignatureError:
            raise OidcRefused("expired") from None
        except jwt.InvalidAudienceError:
            raise OidcRefused("audience") from None
        except jwt.InvalidIssuerError:
            raise OidcRefused("issuer") from None
        except jwt.PyJWTError:
            raise OidcRefused("invalid_token") from None
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.client_id:
            raise OidcRefused("audience")
        if not isinstance(claims.get("nonce"), str) or not hmac.compare_digest(claims["nonce"].encode(),
                                                                                 nonce.encode()):
            raise OidcRefused("nonce")
        return claims


class OidcRoutes:
    """``/admin/oidc/login`` and ``/admin/oidc/callback``, over :class:`OidcClient`."""

    def __init__(self, console: Console, client: OidcClient | None = None) -> None:
        self.console = console
        self.client = client or OidcClient(console.settings, clock=lambda: console.clock())
        secure = console.settings.console_secure_cookies
        self.cookie = "__Host-idsync-oidc" if secure else "idsync-oidc"
        self.secure = secure

    def _serializer(self) -> URLSafeSerializer:
        return URLSafeSerializer(self.console.sessions.serializer.secret_key, salt="identity-sync console oidc")

    def _pending(self, request: Request) -> Pending | None:
        raw = request.cookies.get(self.cookie)
        if not raw:
            return None
        try:
            data = self._serializer().loads(raw)
            return Pending(str(data["state"]), str(data["nonce"]), str(data["verifier"]), float(data["at"]))
        except (BadSignature, KeyError, TypeError, ValueError):
            return None

    async def login(self, request: Request) -> Response:
        try:
            url, pending = await anyio.to_thread.run_sync(self.client.start)
        except (OidcRefused, httpx2.HTTPError, ValueError, json.JSONDecodeError):
            return await self.refused(request, OidcRefused("unavailable"))
        response = RedirectResponse(url, 303)
        response.set_cookie(self.cookie, self._serializer().dumps(
            {"state": pending.state, "nonce": pending.nonce, "verifier": pending.verifier, "at": pending.at}),
            max_age=PENDING_SECONDS, path="/", secure=self.secure, httponly=True, samesite="lax")
        return response

    async def callback(self, request: Request) -> Response:
        params = {key: value[:2_048] for key, value in request.query_params.items()}
        pending = self._pending(request)

        def complete() -> Operator:
            claims = self.client.complete(params, pending)
            return self._operator(claims)
        try:
            operator = await anyio.to_thread.run_sync(complete)
        except OidcRefused as refusal:
            return await self.refused(request, refusal)
        except (httpx2.HTTPError, ValueError, OSError) as exc:
            log.warning("console.oidc_failed", error=type(exc).__name__)
            return await self.refused(request, OidcRefused("unavailable"))
        response = await self.console.logged_in(request, operator, "oidc")
        response.delete_cookie(self.cookie, path="/", secure=self.secure, httponly=True, samesite="lax")
        return response

    def _operator(self, claims: dict[str, Any]) -> Operator:
        claim = self.console.settings.console_oidc_operator_claim
        value = claims.get(claim)
        if claim == "email" and claims.get("email_verified") is not True:
            raise OidcRefused("unverified_email")
        if not isinstance(value, str) or not value:
            raise OidcRefused("unknown_operator")
        wanted = value.casefold()
        operator = next((o for o in self.console.operators.list() if o.name.casefold() == wanted), None)
        if operator is None:
            raise OidcRefused("unknown_operator")
        if operator.disabled:
            raise OidcRefused("disabled", operator)
        return operator

    async def refused(self, request: Request, refusal: OidcRefused) -> Response:
        operator = refusal.operator
        actor = f"console:{operator.name}" if operator else "console:unknown"
        await self.console.audit(actor, "login-failed", "Operator", operator.id if operator else "",
                                 ["oidc", refusal.reason])
        log.info("console.oidc_refused", reason=refusal.reason, client=request.client.host if request.client else None)
        status = 503 if refusal.reason == "unavailable" else 403
        response = self.console.render(request, "error.html", {
            "title": "Sign-in refused", "message": REASONS.get(refusal.reason, REASONS["invalid_token"])}, status)
        response.delete_cookie(self.cookie, path="/", secure=self.secure, httponly=True, samesite="lax")
        return response


def oidc_routes(console: Console) -> list[BaseRoute]:
    """The sign-in routes, when an issuer is configured (else none: the paths are 404)."""
    if not enabled(console.settings):
        return []
    routes = OidcRoutes(console)
    console.oidc = routes
    return [Route("/oidc/login", routes.login, methods=["GET"]),
            Route("/oidc/callback", routes.callback, methods=["GET"])]
