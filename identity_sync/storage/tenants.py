"""Tenants and their credentials (rows only; token generation and hashing live in
``auth/tokens.py``)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from identity_sync.storage import sqltext
from identity_sync.storage.db import auth_changed
from identity_sync.storage.tables import credentials, tenants


def insert_tenant(conn: Connection, tenant_id: str, name: str, now: str) -> None:
    conn.execute(tenants.insert().values(id=tenant_id, name=name, status="active", created_at=now))


_TENANT_ID = "SELECT id FROM tenants WHERE name = {name}"
#: Past this many remembered ids the memory starts over (a bound, not a cache policy: it holds
#: only names that exist, and an operator's tenants fit well below it).
_KNOWN_TENANTS = 100_000


def tenant_id_named(conn: Connection | sqltext.DriverConnection, name: str, known: dict[str, str]) -> str | None:
    """The id of the tenant called ``name`` (``None``: no such tenant), for the statements on its
    rows, which all name it (docs/deployment.md). A name never changes tenant (tenants are
    neither renamed nor deleted), so ``known`` remembers the ids found, and a request's credential
    check stays one read; the tenant's status is still read with the credential, each time."""
    tenant_id = known.get(name)
    if tenant_id is None:
        row = sqltext.run(conn, _TENANT_ID, name=name).first()
        if row is None:
            return None
        if len(known) >= _KNOWN_TENANTS:
            known.clear()
        tenant_id = known[name] = row[0]
    return tenant_id


def get_tenant(conn: Connection, name: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(tenants).where(tenants.c.name == name)).first()
    return dict(row._mapping) if row else None


def list_tenants(conn: Connection, *, lock: bool = False) -> list[dict[str, Any]]:
    """Every tenant. ``lock`` (PostgreSQL: ``FOR SHARE`` until the transaction ends): a purge reads
    the legal holds this way, so a hold placed meanwhile waits for the purge, or is seen by it."""
    query = sa.select(tenants).order_by(tenants.c.created_at)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update(read=True)
    return [dict(r._mapping) for r in conn.execute(query).all()]


def tenant_by_id(conn: Connection, tenant_id: str, *, lock: bool = False) -> dict[str, Any] | None:
    query = sa.select(tenants).where(tenants.c.id == tenant_id)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update(read=True)
    row = conn.execute(query).first()
    return dict(row._mapping) if row else None


def count_tenants(conn: Connection) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(tenants)).scalar_one()


def set_tenant_status(conn: Connection, tenant_id: str, status: str) -> None:
    auth_changed(conn)  # cached verified credentials must be read again (storage/db.py)
    conn.execute(tenants.update().where(tenants.c.id == tenant_id).values(status=status))


def set_tenant_retention(conn: Connection, tenant_id: str, *, retention_days: int | None = None,
                         legal_hold: bool | None = None) -> None:
    """Set what is given: ``retention_days`` (``None`` is not "unset" here: use 0 to keep forever,
    stored as NULL) and/or ``legal_hold``."""
    values: dict[str, Any] = {}
    if retention_days is not None:
        values["retention_days"] = retention_days or None
    if legal_hold is not None:
        values["legal_hold"] = legal_hold
    conn.execute(tenants.update().where(tenants.c.id == tenant_id).values(**values))


def insert_credential(conn: Connection, credential_id: str, tenant_id: str, kind: str, secret_hash: str, now: str,
                      expires_at: str | None) -> None:
    conn.execute(credentials.insert().values(
        id=credential_id, tenant_id=tenant_id, kind=kind, secret_hash=secret_hash, created_at=now,
        expires_at=expires_at,
    ))


_CREDENTIAL_BY_HASH = (
    "SELECT c.id, c.tenant_id, c.secret_hash, c.expires_at, c.last_used_at, c.revoked_at, "
    "t.name AS tenant_name, t.status AS tenant_status "
    "FROM credentials c JOIN tenants t ON t.id = c.tenant_id "
    "WHERE c.tenant_id = {tenant} AND c.secret_hash = {digest}"
)


def credential_by_hash(conn: Connection | sqltext.DriverConnection, tenant_id: str,
                       secret_hash: str) -> dict[str, Any] | None:
    """The tenant's credential with this digest joined with its tenant's name and status (every
    request runs this, so it is prepared SQL text: see ``sqltext.py``). A token is looked for
    among the credentials of the tenant whose URL it came to only."""
    return sqltext.run(conn, _CREDENTIAL_BY_HASH, tenant=tenant_id, digest=secret_hash).first_mapping()


def list_credentials(conn: Connection, tenant_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(credentials.c.id, credentials.c.kind, credentials.c.created_at, credentials.c.expires_at,
                  credentials.c.last_used_at, credentials.c.revoked_at)
        .where(credentials.c.tenant_id == tenant_id).order_by(credentials.c.created_at)
    ).all()
    return [dict(r._mapping) for r in rows]


def revoke_credential(conn: Connection, tenant_id: str, credential_id: str, now: str) -> bool:
    auth_changed(conn)  # cached verified credentials must be read again (storage/db.py)
    result = conn.execute(
        credentials.update()
        .where(credentials.c.id == credential_id, credentials.c.tenant_id == tenant_id,
               credentials.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return result.rowcount == 1


def touch_credential(conn: Connection, tenant_id: str, credential_id: str, now: str) -> None:
    conn.execute(credentials.update().where(credentials.c.tenant_id == tenant_id, credentials.c.id == credential_id)
                 .values(last_used_at=now))
