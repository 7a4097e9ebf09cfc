"""How the engine authenticates to a target (entra-scim-requests.md §4).

* :class:`BearerToken` — the long-lived "Secret Token" (§4.1): ``Authorization: Bearer <token>``
  on every request.
* :class:`ClientCredentials` — OAuth 2.0 client credentials (§4.4, RFC 6749 §4.4): a form POST to
  the token endpoint with the client id and secret in a Basic header, in the body, or both (Entra's
  "Header", "Body", "Both"), an optional scope; the access token is cached until shortly before
  ``expires_in`` runs out, and fetched anew once when the target answers 401.

Neither ever lets a secret into a ``repr``, an exception or a log line; :attr:`secrets` lists what
the transport must scrub from the texts it reports.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol
from urllib.parse import quote_plus

import httpx2

from identity_sync.engine.client import errors

__all__ = ["Auth", "BearerToken", "ClientCredentials"]

#: Sends the token request: (url, form, headers) -> response. The transport provides it, so token
#: requests use the same TLS settings, timeouts and retries as SCIM requests.
TokenPoster = Callable[[str, dict[str, str], dict[str, str]], Awaitable[httpx2.Response]]

#: Refresh this long before the token expires (a request in flight must not carry a dying token),
#: but never more than a tenth of its lifetime.
_EXPIRY_MARGIN_SECONDS = 60.0
#: When the token endpoint omits ``expires_in`` (RFC 6749 §5.1: RECOMMENDED), assume this.
_DEFAULT_LIFETIME_SECONDS = 300.0


class Auth(Protocol):
    """What the transport needs from a credential."""

    secrets: tuple[str, ...]

    async def authorization(self, post: TokenPoster) -> str:
        """The ``Authorization`` header value for the next request."""
        ...

    def invalidate(self, authorization: str) -> bool:
        """The target refused ``authorization`` (401): forget it. True when a new one may work."""
        ...


class BearerToken:
    """A static bearer token (Entra's "Secret Token")."""

    def __init__(self, token: str) -> None:
        token = token.strip()
        if not token or any(c in token for c in "\r\n"):
            raise ValueError("bearer token: must be a non-empty single line")
        self._header = f"Bearer {token}"
        self.secrets: tuple[str, ...] = (token,)

    def __repr__(self) -> str:
        return "BearerToken(****)"

    async def authorization(self, post: TokenPoster) -> str:
        """``Bearer <token>``, the same on every request."""
        return self._header

    def invalidate(self, authorization: str) -> bool:
        """Nothing to renew: the same token would be refused again."""
        return False


class ClientCredentials:
    """OAuth 2.0 client credentials against ``token_endpoint``; ``send_credentials`` is Entra's
    "How credentials are sent": ``"header"`` (client_secret_basic, which RFC 6749 §2.3.1 obliges
    every server to accept), ``"body"`` (client_secret_post) or ``"both"``."""

    def __init__(self, token_endpoint: str, client_id: str, client_secret: str, scope: str | None = None, *,
                 send_credentials: Literal["header", "body", "both"] = "header",
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not token_endpoint.startswith(("https://", "http://")):
            raise ValueError("token endpoint: expected an http(s) URL")
        if not client_id or not client_secret:
            raise ValueError("client credentials: client id and client secret are both required")
        if send_credentials not in ("header", "body", "both"):
            raise ValueError("send_credentials: expected 'header', 'body' or 'both'")
        self.token_endpoint = token_endpoint
        self.client_id = client_id
        self._client_secret = client_secret
        self.scope = scope
        self.send_credentials = send_credentials
        self._clock = clock
        self._header: str | None = None
        self._expires_at = 0.0
        # One lock per event loop: a credential (and its cached token) may outlive the loop of one
        # cycle, and an asyncio.Lock may only be awaited on the loop it first waited on.
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        #: How many tokens were fetched (tests and benchmarks check the cache with it).
        self.tokens_fetched = 0
        self.secrets: tuple[str, ...] = (client_secret,)

    def __repr__(self) -> str:
        return f"ClientCredentials({self.token_endpoint!r}, {self.client_id!r}, ****)"

    async def authorization(self, post: TokenPoster) -> str:
        """``Bearer <access token>``, fetched with ``post`` when none is cached or it is about to expire."""
        async with self._loop_lock():  # concurrent requests wait for one token request, not one each
            if self._header is None or self._clock() >= self._expires_at:
                await self._fetch(post)
            assert self._header is not None
            return self._header

    def _loop_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    def invalidate(self, authorization: str) -> bool:
        """The target refused this token: the next request fetches a new one."""
        if self._header == authorization:
            self._header = None
        return True

    async def _fetch(self, post: TokenPoster) -> None:
        form = {"grant_type": "client_credentials"}
        headers = {"Accept": "application/json"}
        if self.send_credentials in ("body", "both"):
            form.update(client_id=self.client_id, client_secret=self._client_secret)
        if self.send_credentials in ("header", "both"):
            # RFC 6749 §2.3.1: both parts form-urlencoded before Basic encoding.
            pair = f"{quote_plus(self.client_id)}:{quote_plus(self._client_secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        if self.scope:
            form["scope"] = self.scope
        response = await post(self.token_endpoint, form, headers)
        body = _json_object(response)
        if response.status_code != 200:
            # RFC 6749 §5.2: `error` is a code such as invalid_client; never echo anything else.
            code = str(body.get("error", "")) if body else ""
            refused = response.status_code in (400, 401, 403)  # RFC 6749 §5.2 answers: bad credentials
            job = errors.UNAUTHORIZED if refused else errors.SERVICE_INCOMPATIBLE
            raise errors.TargetError(
                f"token endpoint answered {response.status_code}" + (f" ({code[:60]})" if code else ""),
                status=response.status_code, error_code=job, job_level=True, detail=code[:60])
        token = body.get("access_token") if body else None
        if not isinstance(token, str) or not token or any(c in token for c in "\r\n"):
            raise errors.TargetError("token endpoint answered without a usable access_token",
                                     status=response.status_code, error_code=errors.SERVICE_INCOMPATIBLE,
                                     job_level=True)
        seconds = _lifetime(body.get("expires_in") if body else None)
        self._header = f"Bearer {token}"
        self._expires_at = self._clock() + seconds - min(_EXPIRY_MARGIN_SECONDS, seconds / 10)
        # Keep the previous token too: a request that carried it may still be failing somewhere.
        self.secrets = (self._client_secret, *self.secrets[1:][-1:], token)
        self.tokens_fetched += 1


def _lifetime(expires_in: Any) -> float:
    """Seconds a token lives: ``expires_in`` as a number or (as some servers send it) a numeric string."""
    if isinstance(expires_in, str) and expires_in.strip().isdigit():
        expires_in = int(expires_in)
    if isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool) and expires_in > 0:
        return float(expires_in)
    return _DEFAULT_LIFETIME_SECONDS


def _json_object(response: httpx2.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
