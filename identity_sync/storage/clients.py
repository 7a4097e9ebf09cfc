"""Rows of OAuth clients, their secrets, and per-tenant Entra trust (secrets are generated and
hashed in ``auth/``; only digests arrive here)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from identity_sync.storage import sqltext
from identity_sync.storage.db import auth_changed
from identity_sync.storage.tables import entra_trust, oauth_client_secrets, oauth_clients, tenants


def insert_client(conn: Connection, client_id: str, tenant_id: str, scopes: str, now: str) -> None:
    conn.execute(oauth_clients.insert().values(id=client_id, tenant_id=tenant_id, scopes=scopes, created_at=now))


def insert_secret(conn: Connection, tenant_id: str, secret_id: str, client_id: str, secret_hash: str, now: str,
                  expires_at: str) -> None:
    conn.execute(oauth_client_secrets.insert().values(
        id=secret_id, tenant_id=tenant_id, client_id=client_id, secret_hash=secret_hash, created_at=now,
        expires_at=expires_at))


def get_client(conn: Connection, tenant_id: str, client_id: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(oauth_clients).where(
        oauth_clients.c.id == client_id, oauth_clients.c.tenant_id == tenant_id)).first()
    return dict(row._mapping) if row else None


def list_clients(conn: Connection, tenant_id: str) -> list[dict[str, Any]]:
    clients = [dict(r._mapping) for r in conn.execute(
        sa.select(oauth_clients).where(oauth_clients.c.tenant_id == tenant_id)
        .order_by(oauth_clients.c.created_at)).all()]
    for client in clients:
        client["secrets"] = [dict(r._mapping) for r in conn.execute(
            sa.select(oauth_client_secrets.c.id, oauth_client_secrets.c.created_at,
                      oauth_client_secrets.c.expires_at, oauth_client_secrets.c.last_used_at,
                      oauth_client_secrets.c.revoked_at)
            .where(oauth_client_secrets.c.tenant_id == tenant_id, oauth_client_secrets.c.client_id == client["id"])
            .order_by(oauth_client_secrets.c.created_at)).all()]
    return clients


def revoke_client(conn: Connection, tenant_id: str, client_id: str, now: str) -> bool:
    auth_changed(conn)  # cached verified credentials must be read again (storage/db.py)
    result = conn.execute(oauth_clients.update().where(
        oauth_clients.c.tenant_id == tenant_id, oauth_clients.c.id == client_id,
        oauth_clients.c.revoked_at.is_(None)).values(revoked_at=now))
    return result.rowcount == 1


def revoke_secret(conn: Connection, tenant_id: str, client_id: str, secret_id: str, now: str) -> bool:
    auth_changed(conn)  # cached verified credentials must be read again (storage/db.py)
    result = conn.execute(oauth_client_secrets.update().where(
        oauth_client_secrets.c.tenant_id == tenant_id, oauth_client_secrets.c.id == secret_id,
        oauth_client_secrets.c.client_id == client_id,
        oauth_client_secrets.c.revoked_at.is_(None)).values(revoked_at=now))
    return result.rowcount == 1


def touch_secret(conn: Connection, tenant_id: str, secret_id: str, now: str) -> None:
    conn.execute(oauth_client_secrets.update()
                 .where(oauth_client_secrets.c.tenant_id == tenant_id, oauth_client_secrets.c.id == secret_id)
                 .values(last_used_at=now))


def secrets_for_token(conn: Connection, tenant_id: str, client_id: str) -> list[dict[str, Any]]:
    """Every secret of the tenant's client, with the client's and tenant's state (token endpoint:
    rare, so plain SQLAlchemy Core)."""
    c, s, t = oauth_clients, oauth_client_secrets, tenants
    rows = conn.execute(
        sa.select(c.c.id.label("client_id"), c.c.tenant_id, c.c.scopes, c.c.revoked_at.label("client_revoked_at"),
                  s.c.id.label("secret_id"), s.c.secret_hash, s.c.expires_at, s.c.revoked_at,
                  t.c.name.label("tenant_name"), t.c.status.label("tenant_status"))
        .select_from(c.join(t, t.c.id == c.c.tenant_id)
                     .join(s, sa.and_(s.c.tenant_id == c.c.tenant_id, s.c.client_id == c.c.id)))
        .where(c.c.tenant_id == tenant_id, s.c.tenant_id == tenant_id, c.c.id == client_id)
    ).all()
    return [dict(r._mapping) for r in rows]


_ACCESS_TOKEN_STATE = (
    "SELECT c.tenant_id, c.scopes, c.revoked_at AS client_revoked_at, "
    "s.expires_at AS secret_expires_at, s.revoked_at AS secret_revoked_at, "
    "t.name AS tenant_name, t.status AS tenant_status "
    "FROM oauth_clients c JOIN tenants t ON t.id = c.tenant_id "
    "JOIN oauth_client_secrets s ON s.tenant_id = c.tenant_id AND s.client_id = c.id "
    "WHERE c.tenant_id = {tenant} AND s.tenant_id = {tenant} AND c.id = {client_id} AND s.id = {secret_id}"
)


def access_token_state(conn: Connection | sqltext.DriverConnection, tenant_id: str, client_id: str,
                       secret_id: str) -> dict[str, Any] | None:
    """What a presented access token's validity depends on now (every request: prepared SQL)."""
    return sqltext.run(conn, _ACCESS_TOKEN_STATE, tenant=tenant_id, client_id=client_id,
                       secret_id=secret_id).first_mapping()


# -- Entra trust ---------------------------------------------------------------------------------

_ENTRA_TRUST = (
    "SELECT t.id AS tenant_id, t.name AS tenant_name, t.status AS tenant_status, e.entra_tenant_id, "
    "e.audience, e.jwks, e.jwks_url, e.updated_at "
    "FROM tenants t JOIN entra_trust e ON e.tenant_id = t.id WHERE t.id = {tenant} AND e.tenant_id = {tenant}"
)


def entra_trust_for(conn: Connection | sqltext.DriverConnection, tenant_id: str) -> dict[str, Any] | None:
    return sqltext.run(conn, _ENTRA_TRUST, tenant=tenant_id).first_mapping()


def set_entra_trust(conn: Connection, tenant_id: str, values: dict[str, Any]) -> None:
    auth_changed(conn)  # cached verified credentials must be read again (storage/db.py)
    conn.execute(entra_trust.delete().where(entra_trust.c.tenant_id == tenant_id))
    conn.execute(entra_trust.insert().values(tenant_id=tenant_id, **values))


def get_entra_trust(conn: Connection, tenant_id: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(entra_trust).where(entra_trust.c.tenant_id == tenant_id)).first()
    return dict(row._mapping) if row else None


def clear_entra_trust(conn: Connection, tenant_id: str) -> bool:
    auth_changed(conn)  # cached verified credentials must be read again (storage/db.py)
    return conn.execute(entra_trust.delete().where(entra_trust.c.tenant_id == tenant_id)).rowcount == 1
