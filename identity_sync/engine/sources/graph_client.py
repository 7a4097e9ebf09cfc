"""HTTP for the Microsoft Graph source: an app-only token, GETs with throttling honoured, paging.

**The token** is what a real Entra app registration gets with the client credentials grant
(Microsoft identity platform, "OAuth 2.0 client credentials flow"): a form POST to
``{login_url}/{tenant}/oauth2/v2.0/token`` with ``grant_type=client_credentials``, the client id,
``scope=https://graph.microsoft.com/.default`` (a national cloud's own Graph host there) and
either the client secret or a certificate *client assertion* — an RS256 JWT signed with the
certificate's private key, whose header names the certificate by its SHA-1 thumbprint (``x5t``,
and ``x5t#S256``) and whose claims are ``aud`` = the token endpoint, ``iss`` = ``sub`` = the
client id, ``jti``, ``nbf``, ``exp``. It is cached until a minute before ``expires_in`` runs out,
and fetched anew once when Graph answers 401 (a long read can outlive a token).

Why not msal: msal insists on an https authority and runs instance discovery against the real
login host, so it cannot be pointed at a local stand-in (the login URL is a setting precisely so
that tests can), and it brings ``requests`` next to the httpx2 we already use. The grant is two
small requests' worth of code; pyjwt and cryptography, already dependencies, sign the assertion.

**Requests** are GETs, safe to repeat. ``429`` and ``503`` (Graph's throttling answers, Microsoft
Graph throttling guidance) are retried after their ``Retry-After`` seconds; other ``5xx``, timeouts
and broken connections after an exponential backoff; at most ``max_retries`` times, then
:class:`~identity_sync.engine.model.SourceError`. ``sleep`` is injectable so that tests observe the
waits instead of sleeping them.

Nothing here lets a secret into a message: token errors show the OAuth ``error`` and the first
sentence of ``error_description`` (the ``AADSTS…`` code and its meaning), scrubbed of the secret.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from identity_sync.engine.client.transport import retry_after_seconds
from identity_sync.engine.model import SourceError

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
#: Graph's hosts in the national clouds, whose tokens are asked for with their own scope
#: (Microsoft Graph national cloud deployments); any other Graph URL (a proxy, the tests' stand-in)
#: stands for the global service.
_NATIONAL_GRAPH_HOSTS = frozenset({"graph.microsoft.us", "dod-graph.microsoft.us", "microsoftgraph.chinacloudapi.cn"})
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Refresh a token this long before it expires (a page in flight must not carry a dying token).
_EXPIRY_MARGIN_SECONDS = 60.0
_DEFAULT_LIFETIME_SECONDS = 3599.0  # what Entra issues for app-only tokens
#: A client assertion is used once, at once: a short life limits what a leaked one is worth.
_ASSERTION_LIFETIME_SECONDS = 600
_BACKOFF_BASE_SECONDS = 0.5
_BACKOFF_CAP_SECONDS = 30.0
_DETAIL_CHARS = 200
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.DOTALL)

Sleep = Callable[[float], None]


class GraphStatusError(SourceError):
    """Graph answered an error status that is not retried; ``code`` is Graph's error code
    (``syncStateNotFound``, ``Authorization_RequestDenied``…) when it sent one."""

    def __init__(self, message: str, *, status: int, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class Certificate:
    """A certificate credential: the PEM holds the private key and the certificate (as the
    ``.pem`` Entra's docs have one create with openssl, or an export of both)."""

    def __init__(self, pem: str) -> None:
        blocks = {match.group(1): match.group(0) for match in _PEM_BLOCK.finditer(pem)}
        certificate = blocks.get("CERTIFICATE")
        key = next((blocks[name] for name in ("PRIVATE KEY", "RSA PRIVATE KEY") if name in blocks), None)
        if certificate is None or key is None:
            raise ValueError("the certificate file must hold a CERTIFICATE and its unencrypted (RSA) PRIVATE KEY")
        try:
            loaded = x509.load_pem_x509_certificate(certificate.encode())
            private_key = serialization.load_pem_private_key(key.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"the certificate file cannot be read ({type(exc).__name__})") from None
        if not isinstance(private_key, RSAPrivateKey):
            raise ValueError("the certificate's key must be RSA (Entra signs client assertions with RS256)")
        der = loaded.public_bytes(serialization.Encoding.DER)
        self._key = private_key
        self.x5t = _b64url(hashlib.sha1(der).digest())  # the thumbprint Entra names it by
        self.x5t_s256 = _b64url(loaded.fingerprint(hashes.SHA256()))

    def __repr__(self) -> str:
        return f"Certificate(x5t={self.x5t!r})"

    def assertion(self, client_id: str, audience: str, now: float) -> str:
        """A client assertion for one token request."""
        claims = {"aud": audience, "iss": client_id, "sub": client_id, "jti": str(uuid.uuid4()),
                  "nbf": int(now), "iat": int(now), "exp": int(now) + _ASSERTION_LIFETIME_SECONDS}
        headers = {"x5t": self.x5t, "x5t#S256": self.x5t_s256}
        return jwt.encode(claims, self._key, algorithm="RS256", headers=headers)


class GraphHttp:
    """GETs against Microsoft Graph for one tenant with an app-only token (see the module docstring)."""

    def __init__(self, tenant: str, client_id: str, *, client_secret: str | None = None,
                 certificate: Certificate | None = None, graph_url: str, login_url: str,
                 max_retries: int = 5, timeout: float = 60.0, sleep: Sleep = time.sleep,
                 clock: Callable[[], float] = time.time, transport: httpx2.BaseTransport | None = None) -> None:
        if (client_secret is None) == (certificate is None):
            raise ValueError("give a client secret or a certificate, not both")
        self.tenant = tenant
        self.client_id = client_id
        self.token_url = f"{login_url.rstrip('/')}/{tenant}/oauth2/v2.0/token"
        self.graph_url = graph_url.rstrip("/")
        host = httpx2.URL(self.graph_url).host
        self.scope = f"https://{host}/.default" if host in _NATIONAL_GRAPH_HOSTS else GRAPH_SCOPE
        self.max_retries = max_retries
        self.timeout = timeout
        self._secret = client_secret
        self._certificate = certificate
        self._sleep = sleep
        self._clock = clock
        self._transport = transport  # tests answer with httpx2.MockTransport
        self._token: str | None = None
        self._expires_at = 0.0
        self._http: httpx2.Client | None = None
        #: Requests sent and tokens fetched (logs, tests and benchmarks read them).
        self.requests_sent = 0
        self.tokens_fetched = 0
        #: Every wait before a retry, in seconds (tests check Retry-After was honoured).
        self.waits: list[float] = []

    def __repr__(self) -> str:
        return f"GraphHttp({self.tenant!r}, {self.client_id!r}, ****)"

    def __enter__(self) -> GraphHttp:
        # One connection pool per read; closed after it, so a job that is never closed leaks nothing.
        self._http = httpx2.Client(timeout=self.timeout, follow_redirects=False, transport=self._transport,
                                   headers={"Accept": "application/json", "User-Agent": "identity-sync"})
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    # -- token -----------------------------------------------------------------------------------

    def _authorization(self) -> str:
        if self._token is None or self._clock() >= self._expires_at:
            self._fetch_token()
        return f"Bearer {self._token}"

    def _fetch_token(self) -> None:
        form = {"grant_type": "client_credentials", "client_id": self.client_id, "scope": self.scope}
        if self._certificate is not None:
            form["client_assertion_type"] = ASSERTION_TYPE
            form["client_assertion"] = self._certificate.assertion(self.client_id, self.token_url, self._clock())
        else:
            assert self._secret is not None
            form["client_secret"] = self._secret
        response = self._send("POST", self.token_url, "token endpoint", data=form, final=range(400, 500))
        body = _json(response)
        if response.status_code != 200:
            error = str(body.get("error") or "") if body else ""
            description = str(body.get("error_description") or "") if body else ""
            # "AADSTS7000215: Invalid client secret provided. Ensure …": the code and its first sentence.
            first = self._scrub(" ".join(description.split())).split(". ")[0][:_DETAIL_CHARS]
            raise SourceError(f"graph:{self.tenant}: the token endpoint refused the app's credentials: "
                              f"{response.status_code} {error or 'error'}" + (f": {first}" if first else ""))
        token = body.get("access_token") if body else None
        if not isinstance(token, str) or not token or any(c in token for c in "\r\n"):
            raise SourceError(f"graph:{self.tenant}: the token endpoint answered without a usable access_token")
        lifetime = body.get("expires_in") if body else None
        if isinstance(lifetime, str) and lifetime.isdigit():
            lifetime = int(lifetime)
        seconds = float(lifetime) if isinstance(lifetime, (int, float)) and lifetime > 0 else _DEFAULT_LIFETIME_SECONDS
        self._token = token
        self._expires_at = self._clock() + seconds - min(_EXPIRY_MARGIN_SECONDS, seconds / 10)
        self.tokens_fetched += 1

    # -- GET -------------------------------------------------------------------------------------

    def get(self, url: str, *, allow: range | tuple[int, ...] = ()) -> tuple[int, dict[str, Any]]:
        """GET ``url`` (absolute, or relative to the Graph URL) → (status, JSON object). A status
        in ``allow`` comes back as it is; any other error raises :class:`GraphStatusError`."""
        if not url.startswith(("http://", "https://")):
            url = f"{self.graph_url}/{url.lstrip('/')}"
        where = "GET " + _path(url)
        refreshed = False
        while True:
            authorization = self._authorization()
            response = self._send("GET", url, where, headers={"Authorization": authorization},
                                  final=range(400, 500), allow=allow)
            if response.status_code == 401 and not refreshed:
                refreshed = True  # an expired or revoked token: one new one, not counted as a retry
                self._token = None
                continue
            body = _json(response)
            if response.status_code < 300 or response.status_code in allow:
                if body is None:
                    kind = response.headers.get("Content-Type", "no content type").split(";")[0][:60]
                    raise SourceError(f"graph:{self.tenant}: {where}: {response.status_code} answer is not JSON "
                                      f"({kind})")
                return response.status_code, body
            code, message = _graph_error(body)
            raise GraphStatusError(f"graph:{self.tenant}: {where}: {response.status_code}"
                                   + (f" {code}" if code else "") + (f": {message}" if message else ""),
                                   status=response.status_code, code=code)

    def pages(self, url: str) -> Iterator[dict[str, Any]]:
        """Every page of a collection, following ``@odata.nextLink``; the last page is the one
        without a nextLink (a delta round's carries the ``@odata.deltaLink``)."""
        seen: set[str] = set()
        while True:
            _, page = self.get(url)
            if not isinstance(page.get("value"), list):
                raise SourceError(f"graph:{self.tenant}: GET {_path(url)}: the answer has no 'value' list")
            yield page
            next_link = page.get("@odata.nextLink")
            if not next_link:
                return
            if not isinstance(next_link, str) or next_link in seen:
                # A server that loops would otherwise keep this read going for ever.
                raise SourceError(f"graph:{self.tenant}: GET {_path(url)}: a broken or repeated @odata.nextLink")
            seen.add(next_link)
            url = next_link

    def _send(self, method: str, url: str, where: str, *, final: range, allow: range | tuple[int, ...] = (),
              headers: dict[str, str] | None = None, data: dict[str, str] | None = None) -> httpx2.Response:
        """One request with retries; answers below 300, in ``final`` or ``allow`` come back."""
        assert self._http is not None, "GraphHttp is used inside `with`"
        attempt = 0
        while True:
            try:
                self.requests_sent += 1
                response = self._http.request(method, url, headers=headers, data=data)
            except httpx2.TransportError as exc:
                reason = f"{type(exc).__name__}"
                if attempt >= self.max_retries:
                    raise SourceError(f"graph:{self.tenant}: {where}: no answer after {attempt + 1} attempts "
                                      f"({reason})") from None
                self._wait(self._backoff(attempt))
                attempt += 1
                continue
            status = response.status_code
            if status < 300 or status in allow or (status in final and status != 429):
                return response
            retryable = status in (429, 503) or (status >= 500 and status != 501)
            if not retryable or attempt >= self.max_retries:
                code, message = _graph_error(_json(response))
                what = "still throttled" if status in (429, 503) else "failed"
                raise GraphStatusError(f"graph:{self.tenant}: {where}: {what} after {attempt + 1} attempts: {status}"
                                       + (f" {code}" if code else "") + (f": {message}" if message else ""),
                                       status=status, code=code)
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            self._wait(self._backoff(attempt) if wait is None else wait)
            attempt += 1

    def _wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self._sleep(seconds)

    @staticmethod
    def _backoff(attempt: int) -> float:
        return min(_BACKOFF_CAP_SECONDS, _BACKOFF_BASE_SECONDS * 2**attempt)

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "[redacted]") if self._secret else text


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _path(url: str) -> str:
    """The path of ``url`` without its query: tokens and filters stay out of messages."""
    return httpx2.URL(url).path


def _json(response: httpx2.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _graph_error(body: dict[str, Any] | None) -> tuple[str, str]:
    """(code, message) of Graph's error body ``{"error": {"code", "message"}}``, one line each."""
    error = body.get("error") if body else None
    if not isinstance(error, dict):
        return "", ""
    code = " ".join(str(error.get("code") or "").split())[:60]
    message = " ".join(str(error.get("message") or "").split())[:_DETAIL_CHARS]
    return code, message
