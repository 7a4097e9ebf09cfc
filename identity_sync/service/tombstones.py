"""Tombstones: what a SCIM DELETE leaves behind. Only the operator can list or purge them."""

from __future__ import annotations

from typing import Any

import structlog

from identity_sync.clock import now_text
from identity_sync.service.tenants import tenant_named
from identity_sync.storage import audit, memberships
from identity_sync.storage import resources as store
from identity_sync.storage import tenants as tenant_store
from identity_sync.storage.db import Database

log = structlog.get_logger("identity_sync.tombstones")


class TombstoneService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def list(self, tenant_name: str | None, deleted_before: str | None) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            tenant_id = self._tenant_id(conn, tenant_name)
            names = {t["id"]: t["name"] for t in tenant_store.list_tenants(conn)}
            rows = store.tombstones(conn, tenant_id, deleted_before)
            former = memberships.former_of(conn, [row["id"] for row in rows])
        return [{
            "tenant": names.get(row["tenant_id"]),
            "type": row["resource_type"],
            "id": row["id"],
            "name": row["doc"].get("userName") or row["doc"].get("displayName"),
            "deleted_at": row["deleted_at"],
            "memberships": former.get(row["id"], []),
        } for row in rows]

    def purge(self, tenant_name: str | None, deleted_before: str) -> int:
        with self.db.write() as conn:
            tenant_id = self._tenant_id(conn, tenant_name)
            doomed = store.tombstones(conn, tenant_id, deleted_before)
            ids = [row["id"] for row in doomed]
            memberships.forget(conn, ids)
            purged = store.purge(conn, ids)
            now = now_text()
            for row in doomed:  # the trail outlives the tombstone: what was purged, when, by whom
                audit.record(conn, tenant_id=row["tenant_id"], at=now, actor=audit.OPERATOR, action="purge",
                             resource_type=row["resource_type"], resource_id=row["id"], version=None)
        log.info("tombstones.purged", tenant=tenant_name, count=purged, deleted_before=deleted_before)
        return purged

    def _tenant_id(self, conn: Any, name: str | None) -> str | None:
        return None if name is None else tenant_named(conn, name)["id"]
