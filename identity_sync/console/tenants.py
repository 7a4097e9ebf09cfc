"""The console's tenant pages and actions (docs/console.md, *Tenants*): the tenants list and
``tenant create``, a tenant's page (Tenant URL, credentials, Entra trust, retention and legal
hold, recent activity and rejected requests), its users and groups with search, a user's or
group's detail with its audit history, and its tombstones.

Credentials: creating, rotating and revoking OAuth clients and static tokens. A new secret or
token is in the answer to the POST that made it, and nowhere else: never in a redirect, a cookie,
the session or a later page (the database holds only its digest). Tenant admins may do this for
their own tenant (the customer's IT admin replaces what Entra holds without a ticket); retention
and legal hold are the operator's decisions (admins only). Every action is an audit event of the
tenant, by ``console:<operator>``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import anyio.to_thread
import structlog
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from identity_sync.auth.tokens import PROVISIONING
from identity_sync.console.auth import Session
from identity_sync.console.tenant_data import KINDS, TenantData
from identity_sync.errors import ScimError
from identity_sync.service.clients import parse_scopes
from identity_sync.service.operators import Operator
from identity_sync.service.tenants import MAX_RETENTION_DAYS, TenantError

if TYPE_CHECKING:  # routes.py imports this module
    from identity_sync.console.routes import Console

log = structlog.get_logger("identity_sync.console")
T = TypeVar("T")
#: The scopes a client may be given in the console's form (the CLI's ``--scope`` values).
SCOPE_CHOICES = {"scim": "scim (read and write: what Entra needs)", "scim:read": "scim:read (read only)"}


class TenantPages:
    def __init__(self, console: Console) -> None:
        self.c = console
        self.data = TenantData(console.db, console.settings)

    # -- helpers -----------------------------------------------------------------------------------

    def tenant_url(self, request: Request, name: str) -> str:
        base = self.c.settings.public_url or f"{request.url.scheme}://{request.url.netloc}"
        return f"{base.rstrip('/')}/scim/v2/{name}"

    def href(self, request: Request, name: str, rest: str = "") -> str:
        return f"{request.scope.get('root_path', '')}/tenants/{quote(name, safe='')}{rest}"

    async def run(self, work: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(work)

    def render(self, request: Request, template: str, context: dict[str, Any], session: Session,
               operator: Operator, status: int = 200) -> Response:
        return self.c.render(request, template, context, status, session, operator)

    def problem(self, request: Request, session: Session, operator: Operator, name: str, message: str,
                status: int = 400) -> Response:
        """An action the services refused (a bad value, nothing live to revoke): said plainly;
        nothing was changed."""
        return self.render(request, "error.html", {"title": "Not done", "message": message,
                                                   "back": self.href(request, name)}, session, operator, status)

    async def tenant_or_404(self, request: Request, session: Session, operator: Operator,
                            work: Callable[[], T]) -> T | Response:
        try:
            return await self.run(work)
        except TenantError:
            return self.c.not_found(request, session, operator)
        except ScimError as exc:
            if exc.status == 404:
                return self.c.not_found(request, session, operator)
            raise

    async def audit(self, operator: Operator, name: str, action: str, resource_type: str, resource_id: str,
                    attributes: list[str] | None = None) -> None:
        tenant = await self.run(lambda: self.data.tenant(name))
        await self.c.audit(f"console:{operator.name}", action, resource_type, resource_id, attributes,
                           tenant_id=tenant["id"])
        log.info("console.tenant_action", operator=operator.name, tenant=name, action=action, type=resource_type,
                 id=resource_id)

    # -- the tenants list and tenant create ------------------------------------------------------

    async def tenants(self, request: Request, session: Session, operator: Operator) -> Response:
        rows = await self.run(self.data.list)
        return self.render(request, "tenants.html", {"tenants": rows, "error": None, "name": ""}, session, operator)

    async def create_tenant(self, request: Request, session: Session, operator: Operator) -> Response:
        name = request.state.form.get("name", "").strip()
        try:
            issued = await self.run(lambda: self.data.tenants.create_tenant(name))
        except TenantError as exc:
            rows = await self.run(self.data.list)
            return self.render(request, "tenants.html", {"tenants": rows, "error": str(exc), "name": name[:63]},
                               session, operator, 400)
        tenant = await self.run(lambda: self.data.tenant(name))
        await self.audit(operator, name, "create", "Tenant", tenant["id"], ["name"])
        await self.audit(operator, name, "create", "Token", issued.credential_id)
        return self.secret(request, session, operator, name, "token", issued.token, issued.credential_id,
                           issued.expires_at, created_tenant=True)

    # -- a tenant's pages ------------------------------------------------------------------------

    async def tenant(self, request: Request, session: Session, operator: Operator) -> Response:
        name = request.path_params["name"]
        found = await self.tenant_or_404(request, session, operator, lambda: self.data.page(name))
        if isinstance(found, Response):
            return found
        return self.render(request, "tenant.html", {
            **found, "tenant_url": self.tenant_url(request, name), "scope_choices": SCOPE_CHOICES,
            "may_manage": operator.is_admin or operator.is_tenant_admin, "may_decide": operator.is_admin,
            "max_retention": MAX_RETENTION_DAYS}, session, operator)

    async def resources(self, request: Request, session: Session, operator: Operator) -> Response:
        name, kind = request.path_params["name"], request.path_params["kind"]
        if kind not in KINDS:
            return self.c.not_found(request, session, operator)
        query = request.query_params.get("q", "")
        try:
            page = int(request.query_params.get("page", "1"))
        except ValueError:
            page = 1
        found = await self.tenant_or_404(request, session, operator,
                                         lambda: self.data.search(name, kind, query, min(max(page, 1), 100_000)))
        if isinstance(found, Response):
            return found
        return self.render(request, "tenant_resources.html", {"tenant_name": name, "listing": found},
                           session, operator)

    async def resource(self, request: Request, session: Session, operator: Operator) -> Response:
        name, kind, resource_id = (request.path_params[k] for k in ("name", "kind", "id"))
        if kind not in KINDS:
            return self.c.not_found(request, session, operator)
        found = await self.tenant_or_404(request, session, operator,
                                         lambda: self.data.resource(name, kind, resource_id))
        if isinstance(found, Response):
            return found
        return self.render(request, "tenant_resource.html", {"tenant_name": name, "resource": found},
                           session, operator)

    async def tombstones(self, request: Request, session: Session, operator: Operator) -> Response:
        name = request.path_params["name"]
        found = await self.tenant_or_404(request, session, operator, lambda: self.data.deleted(name))
        if isinstance(found, Response):
            return found
        return self.render(request, "tenant_tombstones.html", found, session, operator)

    # -- credentials -------------------------------------------------------------------------------

    def secret(self, request: Request, session: Session, operator: Operator, name: str, kind: str, secret: str,
               credential_id: str, expires_at: str | None, *, client_id: str | None = None,
               created_tenant: bool = False) -> Response:
        """The one page that ever shows this secret (the answer to the POST; never cached)."""
        return self.render(request, "tenant_secret.html", {
            "tenant_name": name, "tenant_url": self.tenant_url(request, name), "kind": kind, "secret": secret,
            "credential_id": credential_id, "expires_at": expires_at, "client_id": client_id,
            "created_tenant": created_tenant, "back": self.href(request, name)}, session, operator)

    async def create_client(self, request: Request, session: Session, operator: Operator) -> Response:
        name, form = request.path_params["name"], request.state.form
        try:
            scopes = parse_scopes(form.get("scope")) if form.get("scope") in SCOPE_CHOICES else PROVISIONING
            days = _days(form.get("secret_days"))
            issued = await self.run(lambda: self.data.clients.create_client(name, scopes, days))
        except (TenantError, ValueError) as exc:
            return await self._refused(request, session, operator, name, exc)
        await self.audit(operator, name, "create", "OAuthClient", issued.client_id, ["secret", "scope"])
        return self.secret(request, session, operator, name, "client", issued.client_secret, issued.secret_id,
                           issued.secret_expires_at, client_id=issued.client_id)

    async def rotate_client(self, request: Request, session: Session, operator: Operator) -> Response:
        name, client_id = request.path_params["name"], request.path_params["client_id"]
        try:
            days = _days(request.state.form.get("secret_days"))
            issued = await self.run(lambda: self.data.clients.rotate_secret(name, client_id, days))
        except (TenantError, ValueError) as exc:
            return await self._refused(request, session, operator, name, exc)
        await self.audit(operator, name, "rotate", "OAuthClient", client_id, ["secret"])
        return self.secret(request, session, operator, name, "client", issued.client_secret, issued.secret_id,
                           issued.secret_expires_at, client_id=client_id)

    async def revoke_client(self, request: Request, session: Session, operator: Operator) -> Response:
        name, client_id = request.path_params["name"], request.path_params["client_id"]
        secret_id = request.state.form.get("secret_id") or None
        try:
            await self.run(lambda: self.data.clients.revoke(name, client_id, secret_id))
        except TenantError as exc:
            return await self._refused(request, session, operator, name, exc)
        await self.audit(operator, name, "revoke", "OAuthClient", client_id, ["secret"] if secret_id else [])
        return RedirectResponse(self.href(request, name, "#credentials"), 303)

    async def create_token(self, request: Request, session: Session, operator: Operator) -> Response:
        name = request.path_params["name"]
        try:
            days = _days(request.state.form.get("expires_in_days"))
            issued = await self.run(lambda: self.data.tenants.create_token(name, days))
        except (TenantError, ValueError) as exc:
            return await self._refused(request, session, operator, name, exc)
        await self.audit(operator, name, "create", "Token", issued.credential_id)
        return self.secret(request, session, operator, name, "token", issued.token, issued.credential_id,
                           issued.expires_at)

    async def rotate_token(self, request: Request, session: Session, operator: Operator) -> Response:
        name, token_id = request.path_params["name"], request.path_params["token_id"]
        try:
            days = _days(request.state.form.get("expires_in_days"))
            issued = await self.run(lambda: self.data.tenants.rotate_token(name, token_id, days))
        except (TenantError, ValueError) as exc:
            return await self._refused(request, session, operator, name, exc)
        await self.audit(operator, name, "rotate", "Token", token_id, [issued.credential_id])
        return self.secret(request, session, operator, name, "token", issued.token, issued.credential_id,
                           issued.expires_at)

    async def revoke_token(self, request: Request, session: Session, operator: Operator) -> Response:
        name, token_id = request.path_params["name"], request.path_params["token_id"]
        try:
            await self.run(lambda: self.data.tenants.revoke_token(name, token_id))
        except TenantError as exc:
            return await self._refused(request, session, operator, name, exc)
        await self.audit(operator, name, "revoke", "Token", token_id)
        return RedirectResponse(self.href(request, name, "#credentials"), 303)

    # -- retention and legal hold (admins only) ----------------------------------------------------

    async def retention(self, request: Request, session: Session, operator: Operator) -> Response:
        name = request.path_params["name"]
        try:
            days = int(request.state.form.get("days", "").strip())
            await self.run(lambda: self.data.tenants.set_retention(name, days, actor=f"console:{operator.name}"))
        except ValueError:
            return await self._refused(request, session, operator, name,
                                       ValueError("The retention period is a whole number of days (0: forever)."))
        except TenantError as exc:
            return await self._refused(request, session, operator, name, exc)
        log.info("console.tenant_action", operator=operator.name, tenant=name, action="retention", days=days)
        return RedirectResponse(self.href(request, name, "#retention"), 303)

    async def hold(self, request: Request, session: Session, operator: Operator) -> Response:
        name = request.path_params["name"]
        on = request.state.form.get("on") == "1"
        try:
            await self.run(lambda: self.data.tenants.set_legal_hold(name, on, actor=f"console:{operator.name}"))
        except TenantError as exc:
            return await self._refused(request, session, operator, name, exc)
        log.info("console.tenant_action", operator=operator.name, tenant=name, action="hold" if on else "release")
        return RedirectResponse(self.href(request, name, "#retention"), 303)

    async def _refused(self, request: Request, session: Session, operator: Operator, name: str,
                       exc: Exception) -> Response:
        # An unknown tenant is a 404 like any page that is not there; any other refusal says why.
        try:
            await self.run(lambda: self.data.tenant(name))
        except TenantError:
            return self.c.not_found(request, session, operator)
        return self.problem(request, session, operator, name, str(exc))


def _days(text: str | None) -> int | None:
    """An optional whole number of days from a form field (empty: the service's default)."""
    if text is None or not text.strip():
        return None
    try:
        days = int(text.strip())
    except ValueError:
        raise ValueError("The number of days must be a whole number.") from None
    if not 1 <= days <= MAX_RETENTION_DAYS:  # a century; more would overflow the expiry date
        raise ValueError(f"The number of days must be a whole number from 1 to {MAX_RETENTION_DAYS}.")
    return days


def routes(console: Console) -> list[BaseRoute]:
    """The tenant pages' routes, for ``console_app``. Each tenant page opts in to tenant admins of
    that tenant (``tenant_admin="own"``/``"see"``); the tenants list and ``tenant create`` do not."""
    p, c = TenantPages(console), console
    own = "/tenants/{name}"
    return [
        Route("/tenants", c.page(p.tenants), methods=["GET"]),
        Route("/tenants", c.action(p.create_tenant), methods=["POST"]),
        Route(own, c.page(p.tenant, tenant_admin="own"), methods=["GET"]),
        Route(f"{own}/tombstones", c.page(p.tombstones, tenant_admin="own"), methods=["GET"]),
        Route(f"{own}/clients", c.action(p.create_client, tenant_admin="own"), methods=["POST"]),
        Route(f"{own}/clients/{{client_id}}/rotate", c.action(p.rotate_client, tenant_admin="own"), methods=["POST"]),
        Route(f"{own}/clients/{{client_id}}/revoke", c.action(p.revoke_client, tenant_admin="own"), methods=["POST"]),
        Route(f"{own}/tokens", c.action(p.create_token, tenant_admin="own"), methods=["POST"]),
        Route(f"{own}/tokens/{{token_id}}/rotate", c.action(p.rotate_token, tenant_admin="own"), methods=["POST"]),
        Route(f"{own}/tokens/{{token_id}}/revoke", c.action(p.revoke_token, tenant_admin="own"), methods=["POST"]),
        Route(f"{own}/retention", c.action(p.retention, tenant_admin="see"), methods=["POST"]),
        Route(f"{own}/hold", c.action(p.hold, tenant_admin="see"), methods=["POST"]),
        Route(f"{own}/{{kind}}", c.page(p.resources, tenant_admin="own"), methods=["GET"]),
        Route(f"{own}/{{kind}}/{{id}}", c.page(p.resource, tenant_admin="own"), methods=["GET"]),
    ]
