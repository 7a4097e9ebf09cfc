"""Tombstones: what a SCIM DELETE leaves behind. Only the operator can list or purge them, or set
a tenant's retention period after which the service's retention job purges them; a legal hold
stops both."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from identity_sync.clock import format_timestamp, now_text
from identity_sync.service.tenants import TenantError, tenant_named
from identity_sync.storage import audit, memberships
from identity_sync.storage import resources as store
from identity_sync.storage import tenants as tenant_store
from identity_sync.storage.db import Database

log = structlog.get_logger("identity_sync.tombstones")

#: Tombstones destroyed per transaction by the retention job.
PURGE_BATCH = 2_000


class TombstoneService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def list(self, tenant_name: str | None, deleted_before: str | None) -> list[dict[str, Any]]:
        """Tombstones of one tenant or of all, oldest first. Read tenant by tenant: every
        statement names its tenant (docs/deployment.md, Citus)."""
        with self.db.read() as conn:
            names = {t["id"]: t["name"] for t in tenant_store.list_tenants(conn)}
            tenant_ids = list(names) if tenant_name is None else [tenant_named(conn, tenant_name)["id"]]
            rows, former = [], {}
            for tenant_id in tenant_ids:
                found = store.tombstones(conn, tenant_id, deleted_before)
                rows += found
                former.update(memberships.former_of(conn, tenant_id, [row["id"] for row in found]))
        rows.sort(key=lambda row: row["deleted_at"])
        return [{
            "tenant": names.get(row["tenant_id"]),
            "type": row["resource_type"],
            "id": row["id"],
            "name": row["doc"].get("userName") or row["doc"].get("displayName"),
            "deleted_at": row["deleted_at"],
            "memberships": former.get(row["id"], []),
        } for row in rows]

    def purge(self, tenant_name: str | None, deleted_before: str) -> int:
        """The operator's purge (``tombstones purge --yes``): tombstones deleted before
        ``deleted_before``, of one tenant or of all. A tenant under legal hold is refused when
        named and skipped otherwise."""
        with self.db.write() as conn:
            tenants = tenant_store.list_tenants(conn, lock=True)  # the holds stay as read until commit
            held = {t["id"] for t in tenants if t["legal_hold"]}
            tenant_id = None
            if tenant_name is not None:
                tenant_id = next((t["id"] for t in tenants if t["name"] == tenant_name), None)
                if tenant_id is None:
                    raise TenantError(f"No tenant named '{tenant_name}'.")
                if tenant_id in held:
                    raise TenantError(f"Tenant '{tenant_name}' is under legal hold: nothing of it can be purged.")
            purged = 0
            for tenant in tenants:
                if tenant["id"] in held or tenant_id not in (None, tenant["id"]):
                    continue
                doomed = store.tombstones(conn, tenant["id"], deleted_before)
                purged += _destroy(conn, tenant["id"], [row["id"] for row in doomed], audit.OPERATOR)
        log.info("tombstones.purged", tenant=tenant_name, count=purged, deleted_before=deleted_before,
                 held_tenants_skipped=len(held))
        return purged

    def purge_expired(self, now: datetime | None = None) -> dict[str, int]:
        """The retention job: for each tenant with a retention period and not under legal hold,
        destroy the tombstones deleted longer ago than that period. ``{tenant name: purged}``.
        Each tenant is purged apart, in transactions of at most :data:`PURGE_BATCH` tombstones: a
        failure is logged and leaves the other tenants' purges alone, and no transaction holds
        the database for long."""
        now = now or datetime.now(UTC)
        with self.db.read() as conn:
            tenants = [t for t in tenant_store.list_tenants(conn) if t["retention_days"] is not None]
        purged: dict[str, int] = {}
        for tenant in tenants:
            try:
                count = self._purge_expired_of(tenant["id"], now)
            except Exception:  # one tenant's failure must not stop the others' retention
                log.exception("tombstones.retention_failed", tenant=tenant["name"])
                continue
            if count:
                purged[tenant["name"]] = count
        if purged:
            log.info("tombstones.retention_purged", purged=purged)
        return purged

    def _purge_expired_of(self, tenant_id: str, now: datetime) -> int:
        total = 0
        while True:
            with self.db.write() as conn:
                tenant = tenant_store.tenant_by_id(conn, tenant_id, lock=True)
                if tenant is None or tenant["legal_hold"] or tenant["retention_days"] is None:
                    return total
                cutoff = format_timestamp(now - timedelta(days=tenant["retention_days"]))
                ids = store.tombstone_ids(conn, tenant_id, cutoff, PURGE_BATCH)
                total += _destroy(conn, tenant_id, ids, audit.RETENTION)
            if len(ids) < PURGE_BATCH:
                return total



def _destroy(conn: Any, tenant_id: str, ids: list[str], actor: str) -> int:
    """Destroy these tombstones of a tenant and their former memberships, with one audit event for
    each one this call destroyed (the trail outlives the tombstone: what was purged, when, by whom)."""
    memberships.forget(conn, tenant_id, ids)
    now = now_text()
    destroyed = store.purge(conn, tenant_id, ids)
    audit.record(conn, *(audit.Event(row["tenant_id"], now, actor, "purge", row["resource_type"], row["id"], None)
                         for row in destroyed))
    return len(destroyed)
