"""``rejected_requests``: each tenant's recent SCIM requests answered 4xx (service/rejections.py)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from identity_sync.storage.tables import rejected_requests, tenants

t = rejected_requests.c


def insert(conn: Connection, row: dict[str, Any], tenant_name: str) -> str | None:
    """Record one rejection of the tenant called ``tenant_name``, in one statement (nothing when
    no tenant has that name: a typo'd or probing URL fills no table). Returns the tenant's id."""
    columns = [c for c in row if c != "tenant_id"]
    query = sa.select(tenants.c.id, *(sa.literal(row[c], rejected_requests.c[c].type) for c in columns)) \
        .where(tenants.c.name == tenant_name)
    done = conn.execute(sa.insert(rejected_requests).from_select(["tenant_id", *columns], query))
    if not done.rowcount:
        return None
    found = conn.execute(sa.select(tenants.c.id).where(tenants.c.name == tenant_name)).scalar()
    return str(found) if found is not None else None


def prune(conn: Connection, tenant_id: str, keep: int) -> int:
    """Keep the tenant's ``keep`` newest rows (ids are UUIDv7: newer sorts later)."""
    cutoff = conn.execute(sa.select(t.id).where(t.tenant_id == tenant_id).order_by(t.id.desc())
                          .offset(keep - 1).limit(1)).scalar()
    if cutoff is None:
        return 0
    return conn.execute(sa.delete(rejected_requests).where(t.tenant_id == tenant_id, t.id < cutoff)).rowcount or 0


def latest(conn: Connection, tenant_id: str, limit: int) -> list[dict[str, Any]]:
    query = sa.select(rejected_requests).where(t.tenant_id == tenant_id).order_by(t.id.desc()).limit(limit)
    return [dict(row._mapping) for row in conn.execute(query)]
