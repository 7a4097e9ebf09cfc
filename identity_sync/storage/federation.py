"""Rows of federated credentials (workload identity federation) of OAuth clients."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from identity_sync.storage.tables import oauth_client_secrets, oauth_clients, oauth_federated_credentials, tenants


def insert_federated(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(oauth_federated_credentials.insert().values(**values))


def federated_for_client(conn: Connection, tenant_id: str, client_id: str) -> dict[str, Any] | None:
    """The tenant's client's federated credential with the client's, credential's and tenant's state (token
    endpoint only: plain SQLAlchemy Core)."""
    f, c, s, t = oauth_federated_credentials, oauth_clients, oauth_client_secrets, tenants
    row = conn.execute(
        sa.select(f, c.c.tenant_id, c.c.scopes, c.c.revoked_at.label("client_revoked_at"),
                  s.c.expires_at, s.c.revoked_at, t.c.name.label("tenant_name"),
                  t.c.status.label("tenant_status"))
        .select_from(f.join(c, sa.and_(c.c.tenant_id == f.c.tenant_id, c.c.id == f.c.client_id))
                     .join(s, sa.and_(s.c.tenant_id == f.c.tenant_id, s.c.id == f.c.id))
                     .join(t, t.c.id == c.c.tenant_id))
        .where(f.c.tenant_id == tenant_id, c.c.tenant_id == tenant_id, s.c.tenant_id == tenant_id,
               f.c.client_id == client_id)
    ).first()
    return dict(row._mapping) if row else None


def federated_of_tenant(conn: Connection, tenant_id: str) -> dict[str, dict[str, Any]]:
    """Federated credentials of a tenant's clients, by client id (for listings; no keys)."""
    f, c = oauth_federated_credentials, oauth_clients
    rows = conn.execute(
        sa.select(f.c.id, f.c.client_id, f.c.issuer, f.c.subject, f.c.audience, f.c.entra_tenant_id,
                  f.c.jwks_url, f.c.created_at)
        .select_from(f.join(c, sa.and_(c.c.tenant_id == f.c.tenant_id, c.c.id == f.c.client_id)))
        .where(f.c.tenant_id == tenant_id, c.c.tenant_id == tenant_id)
    ).all()
    return {r.client_id: dict(r._mapping) for r in rows}
