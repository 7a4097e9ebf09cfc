"""The ASGI application: routing, authentication, and the mapping of every failure to a SCIM
error body. Handlers are thin: parse the request, call one service method (in a worker thread,
authentication included, so each request costs one thread hop — or, for a read on a SQLite file,
first on the event loop: ``Handlers.call``), render the result."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hmac
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import anyio.to_thread
import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from identity_sync import nonblocking
from identity_sync.auth import scopes, tokens
from identity_sync.auth.authenticator import Authenticator
from identity_sync.auth.federation import JwksSource
from identity_sync.auth.tokens import Principal
from identity_sync.config import Settings
from identity_sync.errors import NotFound, ScimError, ServiceUnavailable, Unauthorized
from identity_sync.observability import context, readiness
from identity_sync.observability.metrics import Metrics, route_template
from identity_sync.scim.registry import GROUP, ResourceType
from identity_sync.service.clients import ClientService
from identity_sync.service.rejections import RejectionService
from identity_sync.service.resources import ResourceService, etag
from identity_sync.service.tenants import TenantService
from identity_sync.service.tombstones import TombstoneService
from identity_sync.storage.db import Database
from identity_sync.storage.errors import DatabaseUnavailable
from identity_sync.storage.resources import StoredResource
from identity_sync.web import bulk, discovery, jobs, limits, oauth_routes, offload, search, streaming
from identity_sync.web.body import parse_json, read_body
from identity_sync.web.render import Projection, location, render
from identity_sync.web.responses import ScimResponse, error_response

log = structlog.get_logger("identity_sync.web")
T = TypeVar("T")
PREFIX = "/scim/v2/{tenant}"
#: The methods whose service calls only read (``Handlers.call`` tries them on the event loop).
_READS = frozenset({"GET", "HEAD"})
#: Canonical spelling of each endpoint segment; clients may use any letter case.
_ENDPOINTS = {name.lower(): name for name in (
    "Users", "Groups", "Schemas", "ResourceTypes", "ServiceProviderConfig", "Bulk", "Me", ".search")}


class Handlers:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.metrics = Metrics(db)
        self.tenants = TenantService(db)
        self.resources = ResourceService(db, settings)
        # Credentials of every kind (static, OAuth access token, Entra-issued), scopes and the
        # per-tenant rate limit: see docs/security.md.
        # One JWKS cache for Entra bearer tokens and Entra's client assertions (auth/jwks.py).
        jwks = JwksSource()
        self.clients = ClientService(db, settings, jwks=jwks)
        self.auth = Authenticator(db, settings, self.clients.keys, jwks)
        self.limiter = limits.scim_limiter(settings, db)
        self.concurrency = limits.ConcurrencyLimit(settings.tenant_max_concurrent_requests)
        self.cpu = limits.CpuBudget(settings.tenant_cpu_seconds_per_second, settings.tenant_cpu_burst_seconds)
        self.lanes = limits.Lanes(settings.tenant_lanes, settings.costly_request_pause_seconds)
        #: How long a read may run on the event loop before it gives up for a worker thread
        #: (0: never tried there; nor on a database where reads wait: storage/db.py).
        self.read_attempt_seconds = settings.read_on_event_loop_seconds if db.reads_without_waiting else 0.0
        #: The threads every service call runs in: as many as anyio's default pool had (40); the
        #: per-tenant cap (limits.ConcurrencyLimit) keeps one tenant from holding them all. Shut
        #: down when the app stops (create_app's lifespan), made anew if it starts again.
        self.pool = self._new_pool()
        self._pool_closed = False
        self._base_urls = _BaseUrls()

    @staticmethod
    def _new_pool() -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=40, thread_name_prefix="idsync-request")

    def open_pool(self) -> None:
        """At start-up: a pool again if a previous shutdown closed it (an app started twice)."""
        if self._pool_closed:
            self.pool, self._pool_closed = self._new_pool(), False

    def close_pool(self) -> None:
        """At shutdown: wait for the service calls still running (the server stopped sending new
        ones), then end the threads, rather than leave them to the interpreter's exit."""
        self._pool_closed = True
        self.pool.shutdown(wait=True, cancel_futures=True)

    # -- helpers -------------------------------------------------------------------------------

    def tenant_url(self, request: Request) -> str:
        base = self.settings.public_url or self._base_urls.of(request)
        return f"{base.rstrip('/')}/scim/v2/{request.path_params['tenant']}"

    async def call(self, request: Request, action: Callable[[Principal], T]) -> T:
        """Authenticate, check the scope, the tenant's rate limit, concurrent requests and CPU
        budget, then run ``action`` in one of the tenant's lanes (its CPU time charged to the
        tenant) — all in one worker thread; a read first tried on the event loop itself."""
        header = request.headers.get("authorization")
        tenant = request.path_params["tenant"]
        # The scope's path, not request.url's: that URL is built and parsed anew per request.
        scope = scopes.required_scope(request.method, request.scope["path"])
        admitted: list[Principal] = []  # once admitted, not again: a second run is no new request

        def work() -> T:
            if not admitted:
                principal = self.auth.authenticate(header, tenant)
                context.authenticated(principal.tenant_name, principal.credential_id)
                scopes.require(principal, scope)
                limits.check(self.limiter, principal.tenant_id)
                admitted.append(principal)
            principal = admitted[0]
            with self.concurrency.slot(principal.tenant_id), self.cpu.charged(principal.tenant_id), \
                    self.lanes.lane(principal.tenant_id):
                return action(principal)

        if self.read_attempt_seconds > 0 and request.method in _READS:
            # A read is tried on the event loop, without the thread hop (nonblocking.py says what
            # that saves); whatever would wait there, or a read past its deadline, gives up and
            # runs again in a worker thread. Only reads: running again repeats nothing.
            try:
                with nonblocking.attempt(self.read_attempt_seconds):
                    return work()
            except nonblocking.WouldBlock:
                pass
        # The service call in the pool's thread with this request's context (its request id and
        # facts, read by the log lines and the access log): asyncio's executor hop, not anyio's
        # run_sync, whose capacity limiter and cancel scope cost 8 % of a lookup. A request is
        # never cancelled half-way in a thread either way.
        context_run = contextvars.copy_context().run
        return await asyncio.get_running_loop().run_in_executor(self.pool, context_run, work)

    async def body(self, request: Request) -> _Body:
        raw = await read_body(request, max_bytes=self.settings.max_body_bytes)
        return _Body(raw, request.headers.get("content-type"), self.settings.json_max_depth)

    def projection(self, request: Request, rt: ResourceType) -> Projection:
        return Projection(rt, request.query_params.get("attributes"), request.query_params.get("excludedAttributes"),
                          max_names=self.settings.attribute_list_max_names)

    def with_related(self, principal: Principal, rt: ResourceType, page: list[StoredResource],
                     projection: Projection) -> list[StoredResource]:
        return self.resources.related(principal, rt, page, projection.returns("members"),
                                      projection.returns("groups"))

    async def one(self, request: Request, rt: ResourceType,
                  action: Callable[[Principal], StoredResource]) -> StoredResource:
        """Run a service call returning one resource, and load what the response will show."""
        projection = self.projection(request, rt)
        return await self.call(request, lambda p: self.with_related(p, rt, [action(p)], projection)[0])

    def resource_response(self, request: Request, rt: ResourceType, stored: StoredResource,
                          status: int = 200) -> ScimResponse:
        tenant_url = self.tenant_url(request)
        projection = self.projection(request, rt)
        headers = {"ETag": etag(stored.version)}
        if status == 201:
            headers["Location"] = location(tenant_url, rt, stored.id)
        return ScimResponse(render(rt, stored, tenant_url, projection), status_code=status, headers=headers)

    # -- resources -----------------------------------------------------------------------------

    async def list_resources(self, request: Request, rt: ResourceType) -> Response:
        return await search.list_resources(self, request, rt)

    async def search(self, request: Request, rt: ResourceType | None = None) -> Response:
        return await search.search(self, request, rt)

    async def bulk(self, request: Request) -> Response:
        return await bulk.bulk(self, request)

    async def me(self, request: Request) -> Response:
        # RFC 7644 §3.11: /Me is the resource of the authenticated subject, and ours is always a
        # provisioning client, never a User or Group: so there is no such resource (404, not 501,
        # so that no route of the API answers 5xx to a client's mistake).
        await self.call(request, lambda p: None)
        raise NotFound("/Me: the authenticated subject is a provisioning client, not a User of this tenant.")

    async def create(self, request: Request, rt: ResourceType) -> Response:
        body = await self.body(request)
        stored = await self.one(request, rt, lambda p: self.resources.create(p, rt, body.parsed()))
        return self.resource_response(request, rt, stored, 201)

    async def get(self, request: Request, rt: ResourceType) -> Response:
        resource_id = request.path_params["id"]
        projection = self.projection(request, rt)
        if rt is GROUP and streaming.can_stream(projection):
            principal, stored = await self.call(request, lambda p: (p, self.resources.get(p, rt, resource_id)))
        else:
            stored = await self.one(request, rt, lambda p: self.resources.get(p, rt, resource_id))
        if_none_match = request.headers.get("if-none-match")
        if if_none_match and etag(stored.version) in [v.strip() for v in if_none_match.split(",")]:
            return Response(status_code=304, headers={"ETag": etag(stored.version)})
        if rt is GROUP and streaming.can_stream(projection):
            return streaming.group_response(self.resources, principal, stored, self.tenant_url(request), projection)
        return self.resource_response(request, rt, stored)

    async def replace(self, request: Request, rt: ResourceType) -> Response:
        body = await self.body(request)
        resource_id, if_match = request.path_params["id"], request.headers.get("if-match")

        def action(p: Principal) -> StoredResource:
            return self.resources.replace(p, rt, resource_id, body.parsed(), if_match)

        return self.resource_response(request, rt, await self.one(request, rt, action))

    async def patch(self, request: Request, rt: ResourceType) -> Response:
        body = await self.body(request)
        resource_id, if_match = request.path_params["id"], request.headers.get("if-match")

        def action(p: Principal) -> StoredResource:
            return self.resources.patch(p, rt, resource_id, body.parsed(), if_match)

        if rt is GROUP and "attributes" not in request.query_params:
            # Entra streams one membership PATCH after another: answer 204, never the member list.
            stored = await self.call(request, action)
            return Response(status_code=204, headers={"ETag": etag(stored.version)})
        return self.resource_response(request, rt, await self.one(request, rt, action))

    async def delete(self, request: Request, rt: ResourceType) -> Response:
        resource_id, if_match = request.path_params["id"], request.headers.get("if-match")
        await self.call(request, lambda p: self.resources.delete(p, rt, resource_id, if_match))
        return Response(status_code=204)

    # -- discovery -----------------------------------------------------------------------------

    async def service_provider_config(self, request: Request) -> Response:
        await self.call(request, lambda p: None)
        return ScimResponse(discovery.service_provider_config(self.settings, self.tenant_url(request)))

    async def resource_types(self, request: Request) -> Response:
        await self.call(request, lambda p: None)
        name = request.path_params.get("name")
        url = self.tenant_url(request)
        return ScimResponse(discovery.resource_type(url, name) if name else discovery.resource_types(url))

    async def schemas(self, request: Request) -> Response:
        await self.call(request, lambda p: None)
        urn = request.path_params.get("urn")
        url = self.tenant_url(request)
        return ScimResponse(discovery.schema(url, urn) if urn else discovery.schemas(url))


class _Body:
    """A request body read but not yet parsed: handlers parse it inside the service call, after
    authentication, so that an unauthenticated caller gets 401 whatever its body contains."""

    def __init__(self, raw: bytes, content_type: str | None, max_depth: int) -> None:
        self.raw, self.content_type, self.max_depth = raw, content_type, max_depth

    def parsed(self) -> Any:
        return parse_json(self.raw, self.content_type, max_depth=self.max_depth)


def _routes(h: Handlers) -> list[Route]:
    def dispatch(rt: ResourceType, methods: dict[str, Callable[..., Any]]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            # Starlette routes HEAD wherever GET is allowed: it is answered as the GET (the server
            # sends no body), not as an unknown method.
            return await methods["GET" if request.method == "HEAD" else request.method](request, rt)
        return endpoint

    routes = []
    for rt in discovery.SERVED:
        base = f"{PREFIX}/{rt.endpoint}"
        # One Route per path (not per method) so that a 405 lists every allowed method in `Allow`.
        collection = {"GET": h.list_resources, "POST": h.create}
        item = {"GET": h.get, "PUT": h.replace, "PATCH": h.patch, "DELETE": h.delete}
        routes.append(Route(base, dispatch(rt, collection), methods=list(collection)))
        routes.append(Route(base + "/.search", dispatch(rt, {"POST": h.search}), methods=["POST"]))
        routes.append(Route(base + "/{id}", dispatch(rt, item), methods=list(item)))
    routes += [
        Route(f"{PREFIX}/.search", h.search, methods=["POST"]),
        Route(f"{PREFIX}/Bulk", h.bulk, methods=["POST"]),
        Route(f"{PREFIX}/Me", h.me, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Route(f"{PREFIX}/ServiceProviderConfig", h.service_provider_config, methods=["GET"]),
        Route(f"{PREFIX}/ResourceTypes", h.resource_types, methods=["GET"]),
        Route(f"{PREFIX}/ResourceTypes/{{name}}", h.resource_types, methods=["GET"]),
        Route(f"{PREFIX}/Schemas", h.schemas, methods=["GET"]),
        Route(f"{PREFIX}/Schemas/{{urn}}", h.schemas, methods=["GET"]),
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/readyz", _readyz(h), methods=["GET"]),
    ]
    if h.settings.metrics_enabled:
        routes.append(Route("/metrics", _metrics(h), methods=["GET"]))
    routes += oauth_routes.routes(h.settings, h.clients, PREFIX)
    return routes


async def _healthz(request: Request) -> Response:
    return ScimResponse({"status": "ok"})


def _readyz(h: Handlers) -> Callable[[Request], Any]:
    async def readyz(request: Request) -> Response:
        checks = await anyio.to_thread.run_sync(readiness.check, h.db, h.clients.keys)
        ready = all(value == readiness.OK for value in checks.values())
        return ScimResponse(checks, status_code=200 if ready else 503)

    return readyz


def _metrics(h: Handlers) -> Callable[[Request], Any]:
    from prometheus_client import CONTENT_TYPE_LATEST

    async def metrics(request: Request) -> Response:
        token_file = h.settings.metrics_token_file
        if token_file is not None:
            try:
                expected = token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                log.warning("metrics.token_file_unreadable", error=exc.strerror)
                raise ServiceUnavailable() from None
            presented = tokens.bearer_from_header(request.headers.get("authorization")) or ""
            # Never an empty token: an empty file locks /metrics rather than opening it.
            if not expected or not hmac.compare_digest(presented.encode(), expected.encode()):
                raise Unauthorized("The metrics token is missing or wrong.", reason="metrics_token")
        body = await anyio.to_thread.run_sync(h.metrics.exposition)  # the engine's metrics read the database
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return metrics


async def _scim_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ScimError)
    if exc.status in (401, 403):
        # Why, at INFO, for the operator: the client only ever sees the same answer. Never the
        # credential itself; its id (not a secret: `token list` shows it) when it is known.
        reason = getattr(exc, "reason", "unknown")
        credential_id = getattr(exc, "credential_id", None)
        context.auth_failed(reason, credential_id)
        facts = context.current()
        log.info("auth.refused", status=exc.status, reason=reason, tenant=request.path_params.get("tenant"),
                 credential_id=credential_id or (facts.credential_id if facts else None))
    if exc.status == 429:
        context.limited(getattr(exc, "limit_name", "rate"))
    if exc.status != 401 and exc.status != 404:
        # The detail of a bad filter quotes the filter, which may carry personal data: not logged.
        detail = None if exc.scim_type == "invalidFilter" else exc.detail
        log.info("request.rejected", path=request.url.path, status=exc.status, scim_type=exc.scim_type,
                 detail=detail)
    _remember_rejection(request, exc)
    return error_response(exc)


def _remember_rejection(request: Request, exc: ScimError) -> None:
    """A tenant's 4xx, kept for its console page (service/rejections.py: queued, written by a
    background thread, bounded, throttled)."""
    tenant = request.path_params.get("tenant")
    rejections: RejectionService | None = getattr(request.app.state, "rejections", None)
    if tenant is None or rejections is None or not 400 <= exc.status < 500:
        return
    facts = context.current()
    reason = facts.auth_failure if facts and exc.status in (401, 403) and facts.auth_failure else None
    if exc.status == 429:
        reason = f"limit:{facts.limited_by}" if facts and facts.limited_by else None
    reason = reason or exc.scim_type
    client = request.client.host if request.client else None
    rejections.submit(tenant, exc.status, reason, request.method, route_template(request.scope), client,
                      facts.credential_id if facts else None, facts.request_id if facts else None)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = {404: "No such endpoint.", 405: "Method not allowed on this endpoint."}.get(exc.status_code, "Error.")
    return error_response(ScimError(detail, status=exc.status_code, headers=dict(exc.headers or {})))


async def _database_error(request: Request, exc: Exception) -> Response:
    """The database down, restarting, out of connections or locked past the busy timeout
    (storage translates each into DatabaseUnavailable): 503, and when to retry."""
    assert isinstance(exc, DatabaseUnavailable)
    cause = exc.__cause__
    log.warning("database.unavailable", path=request.url.path,
                error=type(cause).__name__ if cause is not None else type(exc).__name__)
    return error_response(ServiceUnavailable(retry_after=exc.retry_after))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("request.failed", path=request.url.path)
    return error_response(ScimError("Internal server error.", status=500))


class _BaseUrls:
    """``str(request.base_url)`` remembered per scheme, ``Host`` header, server address and root
    path (Starlette builds and validates a URL object for it on every call: 4 % of a lookup's
    CPU time). Bounded: any client may send any ``Host``; past the bound it starts over."""

    LIMIT = 256

    def __init__(self) -> None:
        self._known: dict[tuple[Any, ...], str] = {}

    def of(self, request: Request) -> str:
        scope = request.scope
        host = next((value for name, value in scope["headers"] if name == b"host"), None)
        server = scope.get("server")  # a tuple from uvicorn, a list from some servers
        key = (scope.get("scheme"), host, tuple(server) if server else None,
               scope.get("app_root_path", scope.get("root_path")))
        base = self._known.get(key)
        if base is None:
            base = str(request.base_url)
            if len(self._known) >= self.LIMIT:
                self._known = {}
            self._known[key] = base
        return base


class NormalizePath:
    """Trailing and doubled slashes are ignored and endpoint names matched case-insensitively
    (``/users/``, ``//Users``, ``/Users``); ``?aadOptscim062020`` and other unknown parameters are ignored by
    the handlers.

    Also the access log and the request metrics (docs/observability.md): each request gets an id
    (the caller's ``X-Request-Id`` if it is a sane token, else a new one), bound to every log line
    written while it is served and sent back in ``X-Request-Id``; one ``http.request`` line per
    request says who called (address, tenant, credential id), what (method, path without the query
    string — filters carry personal data), the answer and its duration — never headers (they carry
    credentials). It wraps the whole app, error handlers included (:class:`_Service`), so that
    a 500 has its id and its line too."""

    def __init__(self, app: ASGIApp, metrics: Metrics | None = None, for_parent: bool = False) -> None:
        self.app = app
        self.metrics = metrics
        #: In the child serving costly requests (web/offload.py): what it learned of the request goes
        #: back to the parent in a header, which logs the request's line and counts it; not here.
        self.for_parent = for_parent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((value for name, value in scope["headers"] if name == b"x-request-id"), None)
        facts = context.RequestFacts(context.request_id(incoming.decode("latin-1") if incoming else None))
        token = context.begin(facts)
        try:
            with structlog.contextvars.bound_contextvars(request_id=facts.request_id):
                await self._observed(scope, receive, send, facts)
        finally:
            context.end(token)

    async def _observed(self, scope: Scope, receive: Receive, send: Send, facts: context.RequestFacts) -> None:
        status = 500
        started = time.perf_counter()
        header = (b"x-request-id", facts.request_id.encode())
        counted = False

        def count() -> None:
            nonlocal counted
            if self.metrics is not None and not counted and not self.for_parent:
                counted = True
                self.metrics.record(tenant=facts.tenant, route=route_template(scope), method=scope["method"],
                                    status=status, seconds=time.perf_counter() - started,
                                    auth_failure=facts.auth_failure, limited_by=facts.limited_by)

        async def send_wrapper(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                extra = [header, offload.facts_header(facts, scope)] if self.for_parent else [header]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                # Counted before the last byte leaves: a client that got its answer and then scrapes
                # /metrics (of any worker) finds its request counted.
                count()
            await send(message)

        # Empty segments are dropped too: a Tenant URL pasted with a trailing slash, joined
        # naively by a client, gives `/scim/v2/acme//Users`.
        parts = ["", *(segment for segment in scope["path"].split("/") if segment)]
        if len(parts) > 4 and parts[1] == "scim" and parts[2].lower() == "v2":
            parts[2] = "v2"
            parts[4] = _ENDPOINTS.get(parts[4].lower(), parts[4])
        scope = {**scope, "path": "/".join(parts) or "/"}
        try:
            if "\x00" in scope["path"]:  # a NUL in an id would reach the database as a parameter it cannot hold
                await error_response(NotFound("No such resource."))(scope, receive, send_wrapper)
            else:
                await self.app(scope, receive, send_wrapper)
        finally:
            count()  # a request that ended without a complete response (an error, a client gone)
            if not self.for_parent:
                seconds = time.perf_counter() - started
                client = scope.get("client")
                log.info("http.request", method=scope["method"], path=scope["path"], route=route_template(scope),
                         status=status, ms=round(seconds * 1000, 2), client=client[0] if client else None,
                         tenant=facts.tenant or (scope.get("path_params") or {}).get("tenant"),
                         credential_id=facts.credential_id, auth_failure=facts.auth_failure,
                         limited_by=facts.limited_by)


class _Service(Starlette):
    """The app with :class:`NormalizePath` outside Starlette's own error middleware: a middleware
    added with ``add_middleware`` runs inside it, and would see neither the 500 it sends nor log
    that request's line with its id."""

    def build_middleware_stack(self) -> ASGIApp:
        app = super().build_middleware_stack()
        if self.state.served_for_parent:
            return offload.ServedForParent(NormalizePath(app, self.state.metrics, for_parent=True))
        if self.state.costly_process is not None:
            app = offload.OffloadCostly(app, self.state.costly_process, self.state.settings.max_body_bytes)
            self.state.offload = app
        return NormalizePath(app, self.state.metrics)


def create_app(settings: Settings | None = None, db: Database | None = None, *,
               served_for_parent: bool = False) -> Starlette:
    """The service. ``served_for_parent``: the app of the child serving another process's costly
    requests (web/offload.py)."""
    settings = settings or Settings()
    # The child's writes wait while the serving process's wait (storage/write_turn.py).
    db = db or Database(settings.resolved_database_url(), writes_yield=served_for_parent)
    handlers = Handlers(settings, db)
    # Costly requests in a process of their own (web/offload.py). Every database Database opens
    # (PostgreSQL, a SQLite file) can be opened by the child too.
    costly_process = None
    if settings.costly_requests_process and not served_for_parent:
        from identity_sync.web.offload_process import CostlyProcess

        costly_process = CostlyProcess(settings)
    rejections = RejectionService(db)
    # The child serving costly requests runs no job of its own: the retention job is its parent's,
    # and its requests are counted by its parent (NormalizePath), so it has no history to flush.
    retention = jobs.lifespan(TombstoneService(db), 0 if served_for_parent else settings.retention_interval_seconds,
                              None if served_for_parent else handlers.metrics.history)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        handlers.open_pool()
        if costly_process is not None:
            await costly_process.start()
        try:
            async with retention(app):
                try:
                    yield
                finally:  # the records still queued are written before the app (and its database) goes
                    await anyio.to_thread.run_sync(rejections.flush)
                    await anyio.to_thread.run_sync(handlers.auth.uses.flush)
        finally:
            if costly_process is not None:
                await costly_process.stop()
            # Not on the event loop: the calls still running may take a moment to end.
            await anyio.to_thread.run_sync(handlers.close_pool)

    app = _Service(
        routes=_routes(handlers),
        lifespan=lifespan,
        exception_handlers={
            ScimError: _scim_error,
            HTTPException: _http_error,
            DatabaseUnavailable: _database_error,
            Exception: _unexpected,
        },
    )
    if settings.console_enabled:  # the web console at /admin (docs/console.md)
        from identity_sync.console import console_routes

        app.router.routes.extend(console_routes(settings, db))
    app.state.settings = settings
    app.state.db = db
    app.state.concurrency = handlers.concurrency  # what each tenant has in progress (operators, tests)
    app.state.handlers = handlers  # the request handlers and their thread pool (tests)
    app.state.metrics = handlers.metrics
    app.state.rejections = rejections
    app.state.served_for_parent = served_for_parent
    app.state.costly_process = costly_process  # the child serving costly requests (tests)
    app.state.offload = None  # its middleware, once the stack is built (tests)
    return app
