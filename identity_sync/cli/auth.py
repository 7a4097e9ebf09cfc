"""``identity-sync client|keys|entra``: OAuth clients, token-signing keys, and trust in
Entra-issued tokens. Registered on the main command by ``cli/__init__.py``; like it, a public interface
(extend, don't change). Secrets are printed once and stored only as digests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from identity_sync.auth.oauth import SigningKeyError
from identity_sync.cli._common import (
    ConfirmUrlFlag,
    JsonFlag,
    TenantOption,
    fail,
    open_database,
    reported,
    require_public_url,
    tenant_url,
)
from identity_sync.config import Settings
from identity_sync.service.clients import ClientService, FederatedClient, IssuedClient, parse_scopes

client_app = typer.Typer(help="OAuth 2.0 clients (client credentials grant) of a tenant.", no_args_is_help=True)
keys_app = typer.Typer(help="The keys that sign access tokens (rotation without downtime).", no_args_is_help=True)
entra_app = typer.Typer(help="Trust tokens issued by the customer's Microsoft Entra tenant.", no_args_is_help=True)

SecretDays = Annotated[int | None, typer.Option(help="Days until the new secret expires (1-1095; default 365).")]


def register(app: typer.Typer) -> None:
    app.add_typer(client_app, name="client")
    app.add_typer(keys_app, name="keys")
    app.add_typer(entra_app, name="entra")


def _service() -> tuple[Settings, ClientService]:
    settings, db = open_database()
    return settings, ClientService(db, settings)


def _print_client(settings: Settings, issued: IssuedClient, as_json: bool) -> None:
    url = tenant_url(settings, issued.tenant)
    values = {
        "tenant": issued.tenant, "tenant_url": url, "token_endpoint": f"{url}/oauth/token",
        "client_id": issued.client_id, "client_secret": issued.client_secret, "secret_id": issued.secret_id,
        "secret_expires_at": issued.secret_expires_at, "scope": " ".join(sorted(issued.scopes)),
        "expires_in": settings.oauth_token_lifetime_seconds,
    }
    if as_json:
        typer.echo(json.dumps(values))
        return
    typer.echo("In Entra: Provisioning → Admin credentials → Authentication method: OAuth2 Client Credentials Grant")
    typer.echo(f"Tenant URL:        {values['tenant_url']}")
    typer.echo(f"Token endpoint:    {values['token_endpoint']}")
    typer.echo(f"Client identifier: {values['client_id']}")
    typer.echo(f"Client secret:     {values['client_secret']}")
    typer.echo(f"Secret id:         {values['secret_id']} (expires {values['secret_expires_at']})")
    typer.echo(f"Scopes:            {values['scope']}")
    typer.echo("The secret is shown only this once; paste it into Entra now. Header, Body and Both all work.")


def _print_federated(settings: Settings, issued: FederatedClient, as_json: bool) -> None:
    url = tenant_url(settings, issued.tenant)
    values = {
        "tenant": issued.tenant, "tenant_url": url, "token_endpoint": f"{url}/oauth/token",
        "client_id": issued.client_id, "credential_id": issued.credential_id, "federated": True,
        "issuer": issued.issuer, "subject": issued.subject, "audience": issued.audience,
        "entra_tenant_id": issued.entra_tenant_id, "jwks_url": issued.jwks_url,
        "scope": " ".join(sorted(issued.scopes)), "expires_in": settings.oauth_token_lifetime_seconds,
    }
    if as_json:
        typer.echo(json.dumps(values))
        return
    typer.echo("In Entra: Provisioning → Admin credentials → Authentication method: Workload identity federation")
    typer.echo(f"Tenant URL:        {values['tenant_url']}")
    typer.echo(f"Token endpoint:    {values['token_endpoint']}")
    typer.echo(f"Client identifier: {values['client_id']}")
    typer.echo(f"Trusted issuer:    {values['issuer']}")
    typer.echo(f"Subject:           {values['subject']}")
    typer.echo(f"Audience:          {values['audience']}")
    typer.echo(f"Credential id:     {values['credential_id']} (revoke with --secret)")
    typer.echo(f"Scopes:            {values['scope']}")
    typer.echo("No secret: Entra authenticates with an assertion it signs (RFC 7523).")


@client_app.command("create")
def client_create(
    tenant: TenantOption,
    as_json: JsonFlag = False,
    scope: Annotated[str, typer.Option(help="Space-separated: scim (= scim:read scim:write), scim:read, "
                                            "scim:write, admin.")] = "scim",
    secret_days: SecretDays = None,
    federated: Annotated[bool, typer.Option(
        "--federated", help="Workload identity federation: no secret; Entra sends a signed assertion.")] = False,
    issuer: Annotated[str | None, typer.Option(help="--federated: https://login.microsoftonline.com/"
                                                    "<tenant id>/v2.0")] = None,
    subject: Annotated[str | None, typer.Option(help="--federated: the workload identity's object id.")] = None,
    audience: Annotated[str | None, typer.Option(help="--federated: api://<app id>/.default (or the app id).")] = None,
    jwks_file: Annotated[Path | None, typer.Option(help="--federated: a JWKS file with Entra's keys.")] = None,
    jwks_url: Annotated[str | None, typer.Option(help="--federated: https URL of Entra's JWKS.")] = None,
    confirm_url: ConfirmUrlFlag = False,
) -> None:
    """Create an OAuth client with its first secret (shown once), or a federated one (no secret)."""
    settings, service = _service()
    require_public_url(settings, confirm_url)
    federation = (issuer, subject, audience, jwks_file, jwks_url)
    if not federated:
        if any(v is not None for v in federation):
            fail("--issuer, --subject, --audience, --jwks-file and --jwks-url need --federated.")
        with reported(ValueError):
            issued = service.create_client(tenant, parse_scopes(scope), secret_days)
        _print_client(settings, issued, as_json)
        return
    if issuer is None or subject is None or audience is None or secret_days is not None:
        fail("--federated needs --issuer, --subject and --audience (and takes no --secret-days).")
    assert issuer is not None and subject is not None and audience is not None
    with reported(OSError, ValueError):
        jwks = json.loads(jwks_file.read_text()) if jwks_file else None
        fed = service.create_federated_client(tenant, issuer=issuer, subject=subject, audience=audience,
                                              jwks=jwks, jwks_url=jwks_url, scopes=parse_scopes(scope))
    _print_federated(settings, fed, as_json)


@client_app.command("rotate")
def client_rotate(client_id: str, tenant: TenantOption, as_json: JsonFlag = False,
                  secret_days: SecretDays = None, confirm_url: ConfirmUrlFlag = False) -> None:
    """Add a second live secret (shown once); revoke the old one after Entra has the new one."""
    settings, service = _service()
    require_public_url(settings, confirm_url)
    with reported():
        issued = service.rotate_secret(tenant, client_id, secret_days)
    _print_client(settings, issued, as_json)


@client_app.command("list")
def client_list(tenant: TenantOption, as_json: JsonFlag = False) -> None:
    """List clients and their secrets (ids and dates only: secrets are never stored)."""
    _, service = _service()
    with reported():
        clients = service.list_clients(tenant)
    if as_json:
        typer.echo(json.dumps({"clients": [
            {"client_id": c["id"], "scope": c["scopes"], "created_at": c["created_at"], "revoked_at": c["revoked_at"],
             "secrets": [{"secret_id": s["id"], **{k: s[k] for k in s if k != "id"}} for s in c["secrets"]],
             **({"federated": c["federated"]} if c["federated"] else {})}
            for c in clients]}))
        return
    if not clients:
        typer.echo("No clients.")
    for c in clients:
        typer.echo(f"{c['id']}  scope={c['scopes']}  created={c['created_at']}"
                   + (f"  REVOKED {c['revoked_at']}" if c["revoked_at"] else ""))
        if c["federated"]:
            f = c["federated"]
            typer.echo(f"    federated {f['id']}  issuer {f['issuer']}  subject {f['subject']}  "
                       f"audience {f['audience']}")
            continue
        for s in c["secrets"]:
            state = f"revoked {s['revoked_at']}" if s["revoked_at"] else f"expires {s['expires_at']}"
            used = s["last_used_at"] or "-"
            typer.echo(f"    secret {s['id']}  created {s['created_at']}  {state}  last used {used}")


@client_app.command("revoke")
def client_revoke(
    client_id: str,
    tenant: TenantOption,
    secret: Annotated[str | None, typer.Option("--secret", help="Revoke only this secret id.")] = None,
) -> None:
    """Revoke a client (or one secret): its access tokens stop working at once."""
    _, service = _service()
    with reported():
        service.revoke(tenant, client_id, secret)
    typer.echo(f"Secret {secret} of client {client_id} revoked." if secret else f"Client {client_id} revoked.")


@keys_app.command("list")
def keys_list(as_json: JsonFlag = False) -> None:
    """List signing key ids (newest signs; all verify). With a passphrase set, keys still in clear
    are marked: replace them with ``keys rotate``, then ``keys prune``."""
    _, service = _service()
    with reported(SigningKeyError, OSError):
        kids = service.keys.kids()
    clear = service.keys.unencrypted
    if as_json:
        typer.echo(json.dumps({"keys": kids, "unencrypted": sorted(clear)}))
        return
    typer.echo("\n".join(f"{kid} (unencrypted)" if kid in clear else kid for kid in kids) or "No keys yet.")


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Add a new signing key; tokens signed by older keys stay valid until they expire."""
    _, service = _service()
    with reported(SigningKeyError, OSError):
        kid = service.keys.rotate()
    typer.echo(f"New signing key {kid}.")


@keys_app.command("prune")
def keys_prune() -> None:
    """Remove old keys that no unexpired token can need (older than the token lifetime)."""
    settings, service = _service()
    with reported(SigningKeyError, OSError):
        removed = service.keys.prune(settings.oauth_token_lifetime_seconds + settings.jwt_leeway_seconds)
    typer.echo(f"Removed {len(removed)} key(s)." + (f" ({', '.join(removed)})" if removed else ""))


@entra_app.command("set")
def entra_set(
    tenant: TenantOption,
    entra_tenant_id: Annotated[str, typer.Option(help="The customer's Entra directory (tenant) id.")],
    jwks_file: Annotated[Path | None, typer.Option(help="A JWKS file with Entra's signing keys.")] = None,
    jwks_url: Annotated[str | None, typer.Option(help="https URL of Entra's JWKS.")] = None,
    audience: Annotated[str | None, typer.Option(help="Expected 'aud' (default: the non-gallery app "
                                                      "template id 8adf8e6e-…).")] = None,
) -> None:
    """Accept tokens issued by this Entra tenant (Entra's blank Secret Token mode)."""
    _, service = _service()
    with reported(OSError, ValueError):
        jwks = json.loads(jwks_file.read_text()) if jwks_file else None
        service.set_entra_trust(tenant, entra_tenant_id, audience, jwks, jwks_url)
    typer.echo(f"Tenant '{tenant}' accepts tokens issued by https://sts.windows.net/{entra_tenant_id}/.")


@entra_app.command("show")
def entra_show(tenant: TenantOption) -> None:
    """Show the tenant's Entra trust."""
    _, service = _service()
    with reported():
        trust = service.get_entra_trust(tenant)
    typer.echo(json.dumps({k: v for k, v in (trust or {}).items() if k != "tenant_id"}))


@entra_app.command("clear")
def entra_clear(tenant: TenantOption) -> None:
    """Stop accepting Entra-issued tokens for the tenant."""
    _, service = _service()
    with reported():
        removed = service.clear_entra_trust(tenant)
    typer.echo("Entra trust removed." if removed else "No Entra trust was set.")
