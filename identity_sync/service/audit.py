"""Reading the audit trail (storage/audit.py) for the operator: ``identity-sync audit list``."""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from identity_sync.service.operators import NO_TENANT
from identity_sync.service.tenants import tenant_named
from identity_sync.storage import audit
from identity_sync.storage import tenants as tenant_store
from identity_sync.storage.db import Database
from identity_sync.storage.tables import audit_events


class AuditService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def list(self, tenant_name: str | None, since: str | None, resource_id: str | None,
             limit: int, after: int | None = None) -> list[dict[str, Any]]:
        """The oldest ``limit`` events matching, oldest first; ``after`` (an event's ``seq``)
        continues an export where the previous call stopped."""
        with self.db.read() as conn:
            tenant_id = None if tenant_name is None else tenant_named(conn, tenant_name)["id"]
            names = {t["id"]: t["name"] for t in tenant_store.list_tenants(conn)}
            rows = audit.events(conn, tenant_id=tenant_id, since=since, resource_id=resource_id, limit=limit,
                                after=after)
        return [_shown(row, names) for row in rows]

    def tenant_id(self, tenant_name: str | None) -> str | None:
        """The id to filter by: ``None`` for every tenant, ``""`` for the service's own events
        (``-``, as ``audit list`` shows them), else the tenant's (TenantError if unknown)."""
        if tenant_name is None:
            return None
        if tenant_name == "-":
            return NO_TENANT
        with self.db.read() as conn:
            return str(tenant_named(conn, tenant_name)["id"])

    def newest(self, audit_filter: audit.AuditFilter, *, before: int | None = None,
               limit: int = 50) -> tuple[builtins.list[dict[str, Any]], int | None]:  # list: the method
        """One page of the console's audit trail, newest first, and the ``before`` of the next
        (older) page (``None``: this is the last)."""
        with self.db.read() as conn:
            names = {t["id"]: t["name"] for t in tenant_store.list_tenants(conn)}
            rows = audit.newest(conn, audit_filter, before=before, limit=limit + 1)
        shown = [_shown(row, names) for row in rows[:limit]]
        return shown, (shown[-1]["seq"] if len(rows) > limit else None)

    def newest_seq(self) -> int:
        """The ``seq`` of the newest event (0: none): where an export that starts now stops."""
        with self.db.read() as conn:
            return int(conn.execute(sa.select(sa.func.max(audit_events.c.id))).scalar() or 0)

    def stream(self, audit_filter: audit.AuditFilter, batch: int = 1_000,
               upto: int | None = None) -> Iterator[dict[str, Any]]:
        """Every event matching up to ``seq`` ``upto`` (default: the newest when the export
        starts), newest first, read ``batch`` at a time (each batch its own short read
        transaction): an export of millions of events holds one batch in memory, and no database
        connection between batches. Later events are left out, so that it is one consistent list."""
        with self.db.read() as conn:
            names = {t["id"]: t["name"] for t in tenant_store.list_tenants(conn)}
        before: int | None = (self.newest_seq() if upto is None else upto) + 1
        while before is not None:
            with self.db.read() as conn:
                rows = audit.newest(conn, audit_filter, before=before, limit=batch)
            yield from (_shown(row, names) for row in rows)
            before = rows[-1]["id"] if len(rows) == batch else None


    def recent(self, tenant_name: str, limit: int,
               resource_id: str | None = None) -> builtins.list[dict[str, Any]]:  # list: the method
        """A tenant's newest ``limit`` events (or one resource's), newest first: the console's
        "recent activity" and a user's or group's history."""
        with self.db.read() as conn:
            tenant_id = tenant_named(conn, tenant_name)["id"]
            rows = audit.latest(conn, tenant_id=tenant_id, resource_id=resource_id, limit=limit)
        return [_shown(row, {tenant_id: tenant_name}) for row in rows]


def _shown(row: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """An event as ``audit list --json`` prints it (the service's own events: tenant ``None``)."""
    return {"seq": row["id"], "at": row["at"], "tenant": names.get(row["tenant_id"]), "actor": row["actor"],
            "action": row["action"], "type": row["resource_type"], "id": row["resource_id"],
            "version": row["version"], "attributes": row["attributes"]}
