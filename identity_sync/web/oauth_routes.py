"""HTTP endpoints of OAuth 2.0 client credentials:

* ``POST /scim/v2/{tenant}/oauth/token`` — the token endpoint of one tenant (RFC 6749 §4.4);
  answers and errors are RFC 6749 §5.1/§5.2 JSON with ``Cache-Control: no-store``;
* ``GET /.well-known/jwks.json`` (and ``/scim/v2/{tenant}/oauth/jwks``) — the public keys that
  sign access tokens, for anyone who wants to verify them.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
import orjson
import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from identity_sync.auth import oauth
from identity_sync.config import Settings
from identity_sync.errors import PayloadTooLarge
from identity_sync.observability import context
from identity_sync.service.clients import ClientService
from identity_sync.web import limits
from identity_sync.web.body import read_body

log = structlog.get_logger("identity_sync.oauth")
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json",
                    headers={**_NO_STORE, **(headers or {})})


def _error(exc: oauth.TokenRequestError) -> Response:
    headers = {"WWW-Authenticate": 'Basic realm="identity-sync"'} if exc.status == 401 else None
    return _json({"error": exc.error, "error_description": exc.description}, exc.status, headers)


def routes(settings: Settings, clients: ClientService, prefix: str) -> list[Route]:
    # Two buckets: one per caller address *and* tenant, taken before anything else (so
    # unauthenticated attempts are bounded), and the tenant's, taken only once a client has
    # authenticated — a stranger naming a tenant in the URL must not be able to spend that
    # tenant's budget and starve the real client of tokens. The caller's bucket is per tenant
    # too: callers that share an address (a NAT, a proxy not declared with
    # --forwarded-allow-ips) and flood one tenant's endpoint do not lock every other tenant out.
    limiter = limits.token_limiter(settings)
    callers = limits.token_limiter(settings)

    def slow_down(wait: float, limit: str) -> Response:
        context.limited(limit)
        return _json({"error": "slow_down", "error_description": "Too many token requests."}, 429,
                     {"Retry-After": str(limits.retry_after(wait))})

    async def token(request: Request) -> Response:
        tenant = request.path_params["tenant"]
        # The address is the TCP peer's, or what a proxy trusted by `serve --forwarded-allow-ips`
        # says it is (uvicorn's ProxyHeadersMiddleware): never a header a client set itself.
        address = request.client.host if request.client else "unknown"
        wait = callers.take(f"{tenant}\x1f{address}")
        if wait > 0:
            return slow_down(wait, "token_caller")
        try:
            raw = await read_body(request, max_bytes=settings.token_request_max_bytes)
        except PayloadTooLarge:
            return _json({"error": "invalid_request", "error_description": "The request body is too large."}, 413)
        try:
            parsed = oauth.parse_token_request(raw, request.headers.get("content-type"),
                                               request.headers.get("authorization"))
            issued = await anyio.to_thread.run_sync(clients.issue_token, tenant, parsed)
        except oauth.TokenRequestError as exc:
            log.info("oauth.token_refused", tenant=tenant, error=exc.error)
            if exc.status == 401:
                context.auth_failed("invalid_client")
            return _error(exc)
        context.authenticated(tenant, None)  # the client authenticated for this tenant
        wait = limiter.take(tenant)
        if wait > 0:
            return slow_down(wait, "token_tenant")  # the token just minted is never shown: it is as if not issued
        return _json({"access_token": issued.access_token, "token_type": "Bearer",
                      "expires_in": issued.expires_in, "scope": issued.scope})

    async def jwks(request: Request) -> Response:
        keys = await anyio.to_thread.run_sync(clients.keys.jwks)
        return Response(orjson.dumps(keys), media_type="application/json",
                        headers={"Cache-Control": "public, max-age=300"})

    return [
        Route(f"{prefix}/oauth/token", token, methods=["POST"]),
        Route(f"{prefix}/oauth/jwks", jwks, methods=["GET"]),
        Route("/.well-known/jwks.json", jwks, methods=["GET"]),
    ]
