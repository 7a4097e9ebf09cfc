"""``identity-sync tenant|token``: tenants and their bearer tokens. Registered on the main command by
``cli/__init__.py``; like the rest of the CLI, a public interface (extend, don't change)."""

from __future__ import annotations

from typing import Annotated

import typer

from identity_sync.cli._common import (
    ConfirmUrlFlag,
    JsonFlag,
    TenantOption,
    open_database,
    print_issued,
    print_rows,
    reported,
    require_public_url,
    tenant_url,
)
from identity_sync.service.tenants import TenantService

tenant_app = typer.Typer(help="Create, list and disable tenants.", no_args_is_help=True)
token_app = typer.Typer(help="Issue, list and revoke a tenant's bearer tokens.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(tenant_app, name="tenant")
    app.add_typer(token_app, name="token")


@tenant_app.command("create")
def tenant_create(name: str, as_json: JsonFlag = False, confirm_url: ConfirmUrlFlag = False) -> None:
    """Create a tenant and its first bearer token."""
    settings, db = open_database()
    require_public_url(settings, confirm_url)
    with reported():
        issued = TenantService(db).create_tenant(name)
    print_issued(settings, issued, as_json)


@tenant_app.command("list")
def tenant_list(as_json: JsonFlag = False, confirm_url: ConfirmUrlFlag = False) -> None:
    """List tenants with their Tenant URLs."""
    settings, db = open_database()
    require_public_url(settings, confirm_url)
    rows = [{"tenant": t["name"], "status": t["status"], "created_at": t["created_at"],
             "tenant_url": tenant_url(settings, t["name"]), "retention_days": t["retention_days"],
             "legal_hold": bool(t["legal_hold"])} for t in TenantService(db).list_tenants()]
    if not as_json:  # the table says what the values mean
        rows = [{**r, "retention_days": r["retention_days"] or "forever", "legal_hold": "on" if r["legal_hold"]
                 else "off"} for r in rows]
    print_rows(rows, as_json, "tenants", ("tenant", "status", "created_at", "tenant_url", "retention_days",
                                           "legal_hold"))


@tenant_app.command("disable")
def tenant_disable(name: str) -> None:
    """Disable a tenant: its credentials stop working at once; its data is kept."""
    _set_tenant_status(name, "disabled")


@tenant_app.command("enable")
def tenant_enable(name: str) -> None:
    """Re-enable a disabled tenant."""
    _set_tenant_status(name, "active")


@tenant_app.command("retention")
def tenant_retention(
    name: str,
    days: Annotated[int, typer.Option(help="Purge the tenant's tombstones this many days after their "
                                                 "DELETE (the service's hourly job); 0 keeps them forever.")],
) -> None:
    """Set how long a tenant's tombstones are kept (default: forever)."""
    _, db = open_database()
    with reported():
        TenantService(db).set_retention(name, days)
    typer.echo(f"Tenant '{name}': tombstones kept " + (f"{days} day(s)." if days else "forever."))


@tenant_app.command("hold")
def tenant_hold(
    name: str,
    on: Annotated[bool, typer.Option("--on/--off", help="Place or lift the legal hold.")],
) -> None:
    """Legal hold: while on, nothing of the tenant is purged, by the retention job or by hand."""
    _, db = open_database()
    with reported():
        TenantService(db).set_legal_hold(name, on)
    typer.echo(f"Tenant '{name}': legal hold {'on' if on else 'off'}.")


def _set_tenant_status(name: str, status: str) -> None:
    _, db = open_database()
    with reported():
        TenantService(db).set_status(name, status)
    typer.echo(f"Tenant '{name}' {'enabled' if status == 'active' else 'disabled'}.")


@token_app.command("create")
def token_create(
    tenant: TenantOption,
    as_json: JsonFlag = False,
    expires_in_days: Annotated[int | None, typer.Option(help="Expire the token after this many days.")] = None,
    confirm_url: ConfirmUrlFlag = False,
) -> None:
    """Issue a new bearer token (shown once). Old tokens keep working until revoked."""
    settings, db = open_database()
    require_public_url(settings, confirm_url)
    with reported():
        issued = TenantService(db).create_token(tenant, expires_in_days)
    print_issued(settings, issued, as_json)


@token_app.command("list")
def token_list(tenant: TenantOption, as_json: JsonFlag = False) -> None:
    """List a tenant's tokens (ids and dates only: tokens are never stored)."""
    _, db = open_database()
    with reported():
        rows = TenantService(db).list_tokens(tenant)
    rows = [{"token_id": r["id"], "created_at": r["created_at"], "expires_at": r["expires_at"],
             "last_used_at": r["last_used_at"], "revoked_at": r["revoked_at"]} for r in rows]
    print_rows(rows, as_json, "tokens", ("token_id", "created_at", "expires_at", "last_used_at", "revoked_at"))


@token_app.command("revoke")
def token_revoke(token_id: str, tenant: TenantOption) -> None:
    """Revoke a token by its id; requests with it fail from now on."""
    _, db = open_database()
    with reported():
        TenantService(db).revoke_token(tenant, token_id)
    typer.echo(f"Token {token_id} revoked.")


