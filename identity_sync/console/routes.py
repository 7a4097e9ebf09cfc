"""The console's pages and actions (docs/console.md): a Starlette app mounted at ``/admin`` by
``web/app.py`` when ``console_enabled``.

Every page needs a session (else: the login page); every POST needs the session's CSRF token
(else 403); every POST but logout needs the ``admin`` role (else 403). Logins, failed logins,
logouts and job actions are audit events of no tenant (service/operators.py).

**Tenant admins** (role ``tenant-admin``, bound to one tenant) are denied by default: a page or
action answers them 404 — the same as a page that does not exist, so that they cannot learn which
other tenants exist — unless it opts in with ``tenant_admin="own"`` (the route has a ``{name}``
path parameter and it is their tenant; the action is then allowed without the admin role),
``tenant_admin="see"`` (their tenant's, but the action still needs the admin role: 403) or
``tenant_admin="allow"`` (logout). ``/admin`` itself sends them to their tenant's page. A page added
later without the option is therefore closed to them. Pages are
answered with a Content-Security-Policy that allows no inline script or style and nothing from
another origin, and are never cached.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, quote

import anyio.to_thread
import jinja2
import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from identity_sync.config import Settings
from identity_sync.console import audit, jobs, oidc, tenants
from identity_sync.console.auth import CSRF_FIELD, LoginLimiter, Session, Sessions, console_key, csrf_ok
from identity_sync.console.pages import ConsoleData
from identity_sync.engine.operations import JobOperations
from identity_sync.service.operators import NO_TENANT, Operator, OperatorError, OperatorService, record_event
from identity_sync.storage.db import Database
from identity_sync.storage.errors import DatabaseUnavailable

log = structlog.get_logger("identity_sync.console")
HERE = Path(__file__).parent
PREFIX = "/admin"
#: The largest form body read: a job's mapping document posted by the import form (the default
#: one is 8 KB, about three times that once form-encoded); a login form is well under 2 KB.
MAX_FORM_BYTES = 262_144
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")

Handler = Callable[[Request, Session, Operator], Awaitable[Response]]
#: Whether a route is open to tenant admins (see the module's docstring); "deny" by default.
TenantAdmin = Literal["deny", "own", "see", "allow"]


class Console:
    def __init__(self, settings: Settings, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.db = db
        self.clock = clock
        self.operators = OperatorService(db)
        self.data = ConsoleData(db, settings)
        self.operations = JobOperations(self.data.jobs)
        self.limiter = LoginLimiter(db)
        self._sessions: Sessions | None = None
        self.oidc: Any = None  # console/oidc.py's routes, when sign-in through a provider is configured
        self._sessions_lock = threading.Lock()
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                                 undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        env.filters["when"] = when
        self.templates = Jinja2Templates(env=env)

    @property
    def sessions(self) -> Sessions:
        # Made on the first request, not at start-up: a service whose console is never opened
        # never writes a key file.
        with self._sessions_lock:
            if self._sessions is None:
                self._sessions = Sessions(console_key(self.settings.data_dir),
                                          self.settings.console_session_idle_minutes * 60,
                                          self.settings.console_secure_cookies, self.db,
                                          clock=lambda: self.clock())
            return self._sessions

    # -- plumbing ------------------------------------------------------------------------------

    def render(self, request: Request, name: str, context: dict[str, Any], status: int = 200,
               session: Session | None = None, operator: Operator | None = None) -> Response:
        base = request.scope.get("root_path", "")
        return self.templates.TemplateResponse(request, name, {
            "base": base, "operator": operator, "csrf": session.csrf if session else "", "csrf_field": CSRF_FIELD,
            **context}, status_code=status)

    async def current(self, request: Request, touch: bool = True) -> tuple[Session | None, Operator | None]:
        """The request's session and its operator (both ``None``: not logged in); ``touch``: the
        request counts as use (restarts the idle timer)."""
        sessions, cookies = self.sessions, request.cookies

        def read() -> tuple[Session | None, Operator | None]:
            session = sessions.read(cookies)
            if session is None or session.operator_id is None:
                return session, None
            operator = self.operators.by_id(session.operator_id)
            if not sessions.valid_for(session, operator):
                return None, None
            return (sessions.touched(session) if touch else session), operator
        return await anyio.to_thread.run_sync(read)

    def page(self, handler: Handler, *, touch: bool = True,
             tenant_admin: TenantAdmin = "deny") -> Callable[[Request], Awaitable[Response]]:
        """A page for logged-in operators; the others are sent to the login page. A page view
        restarts the idle timer (``touch``); the live progress poll does not. ``tenant_admin``:
        see the module's docstring."""
        async def endpoint(request: Request) -> Response:
            session, operator = await self.current(request, touch)
            if session is None or operator is None:
                if not touch:  # a script's poll: no redirect to follow, say it plainly
                    return JSONResponse({"error": "not logged in"}, status_code=401)
                response: Response = RedirectResponse(f"{request.scope.get('root_path', '')}/login", 303)
                if request.cookies.get(self.sessions.cookie):
                    response.delete_cookie(**self.sessions.delete_options())  # expired: forget it
                return response
            denied = self.tenant_scope(request, session, operator, tenant_admin, json=not touch)
            if denied is not None:
                return denied
            return await handler(request, session, operator)
        return endpoint

    def action(self, handler: Handler, *, admin: bool = True,
               tenant_admin: TenantAdmin = "deny") -> Callable[[Request], Awaitable[Response]]:
        """A POST: logged in, the session's CSRF token in the form, and (``admin``) the admin role —
        or, where ``tenant_admin="own"``, a tenant admin of the route's tenant."""
        async def endpoint(request: Request) -> Response:
            form = await read_form(request)
            session, operator = await self.current(request)
            if session is None or operator is None:
                return self.forbidden(request, session, None, "Your session has ended: log in again.")
            denied = self.tenant_scope(request, session, operator, tenant_admin)
            if denied is not None:
                return denied
            if not csrf_ok(session, form.get(CSRF_FIELD)):
                log.warning("console.csrf_refused", path=request.url.path, operator=operator.name)
                return self.forbidden(request, session, operator, "This form is out of date (its security token "
                                      "does not match your session). Reload the page and try again.")
            if admin and not (operator.is_admin or (operator.is_tenant_admin and tenant_admin == "own")):
                return self.forbidden(request, session, operator,
                                      f"Your role ({operator.role}) may not make this change.")
            request.state.form = form
            return await handler(request, session, operator)
        return endpoint

    def tenant_scope(self, request: Request, session: Session, operator: Operator, mode: TenantAdmin,
                     json: bool = False) -> Response | None:
        """``None`` if ``operator`` may reach this route; else the answer (deny by default)."""
        if not operator.is_tenant_admin or mode == "allow":
            return None
        if mode in ("own", "see") and operator.may_see(str(request.path_params.get("name", ""))):
            return None
        root = request.scope.get("root_path", "")
        if request.method == "GET" and request.url.path.rstrip("/") == root and operator.tenant:
            return RedirectResponse(f"{root}/tenants/{quote(operator.tenant)}", 303)
        log.info("console.tenant_admin_denied", operator=operator.name, path=request.url.path)
        if json:
            return JSONResponse({"error": "not found"}, status_code=404)
        return self.not_found(request, session, operator)

    def forbidden(self, request: Request, session: Session | None, operator: Operator | None,
                  message: str) -> Response:
        return self.render(request, "error.html", {"title": "Forbidden", "message": message}, 403, session,
                           operator)

    async def audit(self, actor: str, action: str, resource_type: str, resource_id: str,
                    attributes: list[str] | None = None, tenant_id: str = NO_TENANT) -> None:
        def write() -> None:
            with self.db.write() as conn:
                record_event(conn, actor, action, resource_type, resource_id, attributes, tenant_id)
        await anyio.to_thread.run_sync(write)

    # -- login and logout -----------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        session, operator = await self.current(request)
        if operator is not None:
            return RedirectResponse(request.scope.get("root_path") or "/", 303)
        return self.login_form(request, None, 200)

    def login_form(self, request: Request, error: str | None, status: int, name: str = "",
                   headers: dict[str, str] | None = None) -> Response:
        anonymous = self.sessions.anonymous()  # a fresh CSRF token for each display of the form
        response = self.render(request, "login.html", {"error": error, "name": name,
                                                       "oidc": oidc.enabled(self.settings)}, status, anonymous)
        response.set_cookie(**self.sessions.cookie_options(anonymous))
        for key, value in (headers or {}).items():
            response.headers[key] = value
        return response

    async def login(self, request: Request) -> Response:
        form = await read_form(request)
        session = await anyio.to_thread.run_sync(self.sessions.read, request.cookies)
        if not csrf_ok(session, form.get(CSRF_FIELD)):
            return self.forbidden(request, None, None, "The login form is out of date (or cookies are off): "
                                  "reload the login page and try again.")
        name, password = str(form.get("username", "")).strip(), str(form.get("password", ""))
        client = client_of(request)
        wait = await anyio.to_thread.run_sync(self.limiter.retry_after, name, client)
        if wait:
            await self.login_failed(name, client, ["locked"])
            return self.login_form(request, "Too many failed logins: try again later.", 429, name,
                                   {"Retry-After": str(wait)})
        operator = await anyio.to_thread.run_sync(self.operators.verify, name, password) if name and password \
            else None
        if operator is None:
            await anyio.to_thread.run_sync(self.limiter.failed, name, client)
            await self.login_failed(name, client)
            return self.login_form(request, "Wrong name or password.", 401, name)
        await anyio.to_thread.run_sync(self.limiter.succeeded, name, client)
        return await self.logged_in(request, operator, "password")

    async def logged_in(self, request: Request, operator: Operator, via: str) -> Response:
        """A new session (new id, new CSRF token) for ``operator``: nothing of the anonymous one
        carries over. Audited; the browser goes to the overview."""
        client = client_of(request)
        agent = request.headers.get("user-agent", "")
        session = await anyio.to_thread.run_sync(self.sessions.open, operator, client, agent, via)
        await self.audit(f"console:{operator.name}", "login", "Operator", operator.id, None if via == "password"
                         else [via])
        log.info("console.login", operator=operator.name, client=client, via=via)
        response = RedirectResponse(request.scope.get("root_path") or "/", 303)
        response.set_cookie(**self.sessions.cookie_options(session))
        return response

    async def login_failed(self, name: str, client: str, attributes: list[str] | None = None) -> None:
        known = await anyio.to_thread.run_sync(self._operator_id, name)
        # The name goes into the trail only when it is an operator's: a typed name may be a password.
        await self.audit(f"console:{name}" if known else "console:unknown", "login-failed", "Operator", known or "",
                         attributes)
        log.info("console.login_failed", client=client, known_operator=bool(known), locked=bool(attributes))

    def _operator_id(self, name: str) -> str | None:
        try:
            return self.operators.get(name).id
        except OperatorError:
            return None

    async def logout(self, request: Request, session: Session, operator: Operator) -> Response:
        await anyio.to_thread.run_sync(self.sessions.end, session)  # a copy of the cookie dies too
        await self.audit(f"console:{operator.name}", "logout", "Operator", operator.id)
        response = RedirectResponse(f"{request.scope.get('root_path', '')}/login", 303)
        response.delete_cookie(**self.sessions.delete_options())
        return response

    # -- pages -----------------------------------------------------------------------------------

    async def overview(self, request: Request, session: Session, operator: Operator) -> Response:
        data = await anyio.to_thread.run_sync(self.data.overview)
        return self.render(request, "overview.html", data, session=session, operator=operator)

    def not_found(self, request: Request, session: Session | None = None, operator: Operator | None = None) -> Response:
        return self.render(request, "error.html", {"title": "Not found", "message": "There is no such page."}, 404,
                           session, operator)


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def when(stamp: str | None) -> str:
    """A stored timestamp (``2026-12-05T10:00:00.123456Z``) as people read it: to the second, UTC."""
    return "—" if not stamp else stamp[:19].replace("T", " ")


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body, bounded (no multipart: no file is ever posted)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413)
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(400) from None
    return {key: values[0] for key, values in fields.items()}


class SecurityHeaders:
    """The headers every console response carries; pages (not the static files) are never cached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith(f"{scope.get('root_path', '')}/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                            (b"x-frame-options", b"DENY"), (b"referrer-policy", b"same-origin")]
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def console_app(console: Console) -> Starlette:
    c = console
    routes = [
        Route("/", c.page(c.overview), methods=["GET"]),
        Route("/login", c.login_page, methods=["GET"]),
        Route("/login", c.login, methods=["POST"]),
        Route("/logout", c.action(c.logout, admin=False, tenant_admin="allow"), methods=["POST"]),
        *jobs.routes(c),
        *audit.routes(c),
        *tenants.routes(c),
        *oidc.oidc_routes(c),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return c.not_found(request)
        return c.render(request, "error.html", {"title": "Error", "message": exc.detail}, exc.status_code)

    async def database_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DatabaseUnavailable)
        cause = exc.__cause__
        log.warning("console.database_unavailable", path=request.url.path,
                    error=type(cause).__name__ if cause is not None else type(exc).__name__)
        response = c.render(request, "error.html", {"title": "Unavailable", "message": "The database cannot be "
                            "reached right now; try again in a moment."}, 503)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error, DatabaseUnavailable: database_error})
    app.state.console = console
    app.add_middleware(SecurityHeaders)
    return app


def console_routes(settings: Settings, db: Database) -> list[BaseRoute]:
    """What ``web/app.py`` mounts at ``/admin``. ``/admin`` itself is a route of its own, handed
    to the console as ``/admin/``: the service drops trailing slashes (web/app.py NormalizePath),
    so a Mount alone would redirect ``/admin`` to ``/admin/``, i.e. to itself, forever."""
    app = console_app(Console(settings, db))
    return [Route(PREFIX, _Root(app), methods=["GET", "HEAD"]), Mount(PREFIX, app=app)]


class _Root:
    """``/admin``, answered by the console as its ``/`` (an ASGI app, not a function: Starlette
    would call a function with a Request)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        root = scope.get("root_path", "") + PREFIX
        await self.app({**scope, "path": f"{root}/", "root_path": root}, receive, send)
