"""Reading the audit trail (storage/audit.py) for the operator: ``identity-sync audit list``."""

from __future__ import annotations

from typing import Any

from identity_sync.service.tenants import tenant_named
from identity_sync.storage import audit
from identity_sync.storage import tenants as tenant_store
from identity_sync.storage.db import Database


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
        return [{
            "seq": row["id"], "at": row["at"], "tenant": names.get(row["tenant_id"]), "actor": row["actor"],
            "action": row["action"], "type": row["resource_type"], "id": row["resource_id"], "version": row["version"],
            "attributes": row["attributes"],
        } for row in rows]

    def recent(self, tenant_name: str, limit: int, resource_id: str | None = None) -> list[dict[str, Any]]:
        """A tenant's newest ``limit`` events (or one resource's), newest first: the console's
        "recent activity" and a user's or group's history."""
        with self.db.read() as conn:
            tenant_id = tenant_named(conn, tenant_name)["id"]
            rows = audit.latest(conn, tenant_id=tenant_id, resource_id=resource_id, limit=limit)
        return [{"seq": row["id"], "at": row["at"], "tenant": tenant_name, "actor": row["actor"],
                 "action": row["action"], "type": row["resource_type"], "id": row["resource_id"],
                 "version": row["version"], "attributes": row["attributes"]} for row in rows]
