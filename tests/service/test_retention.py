"""Tombstone retention and legal hold (service/tombstones.py, docs/reliability.md row 12): a
tenant's tombstones are kept forever unless the operator sets a retention period; the retention
job then purges exactly those deleted longer ago than the period; a legal hold stops the job and
the operator's own purge; every purge and every change of policy is an audit event."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from identity_sync.auth.tokens import Principal
from identity_sync.clock import format_timestamp
from identity_sync.config import Settings
from identity_sync.scim.registry import USER
from identity_sync.service.audit import AuditService
from identity_sync.service.resources import ResourceService
from identity_sync.service.tenants import TenantError, TenantService
from identity_sync.service.tombstones import TombstoneService
from identity_sync.storage import resources as store
from identity_sync.storage.db import Database
from identity_sync.web.app import create_app

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def tenant(tenants: TenantService, name: str) -> Principal:
    return tenants.authenticate(f"Bearer {tenants.create_tenant(name).token}", name)


def tombstone(db: Database, service: ResourceService, principal: Principal, name: str, days_ago: float) -> str:
    """A user deleted ``days_ago`` days before NOW."""
    user = service.create(principal, USER, {"userName": name})
    service.delete(principal, USER, user.id, None)
    with db.write() as conn:
        conn.exec_driver_sql(
            "UPDATE resources SET deleted_at = " + ("%(at)s WHERE id = %(id)s" if conn.dialect.name == "postgresql"
                                                    else ":at WHERE id = :id"),
            {"at": format_timestamp(NOW - timedelta(days=days_ago)), "id": user.id})
    return user.id


def surviving(db: Database, tenant_name: str) -> set[str]:
    return {row["id"] for row in TombstoneService(db).list(tenant_name, None)}


def test_the_job_purges_what_expired_and_nothing_else(db: Database, service: ResourceService,
                                                      tenants: TenantService) -> None:
    acme, globex, initech = (tenant(tenants, n) for n in ("acme", "globex", "initech"))
    old, young = tombstone(db, service, acme, "old@x.com", 31), tombstone(db, service, acme, "young@x.com", 29)
    forever = tombstone(db, service, globex, "kept@x.com", 400)  # globex sets no retention: kept
    held = tombstone(db, service, initech, "held@x.com", 400)
    tenants.set_retention("acme", 30)
    tenants.set_retention("initech", 30)
    tenants.set_legal_hold("initech", True)

    assert TombstoneService(db).purge_expired(NOW) == {"acme": 1}
    assert (surviving(db, "acme"), surviving(db, "globex"), surviving(db, "initech")) == ({young}, {forever}, {held})
    assert TombstoneService(db).purge_expired(NOW) == {}  # nothing left to do: idempotent
    purges = [e for e in AuditService(db).list(None, None, None, 1000) if e["action"] == "purge"]
    assert [(e["id"], e["actor"], e["tenant"]) for e in purges] == [(old, "service:retention", "acme")]

    tenants.set_legal_hold("initech", False)  # the hold lifted, the period applies again
    assert TombstoneService(db).purge_expired(NOW) == {"initech": 1}
    assert TombstoneService(db).purge_expired(NOW + timedelta(days=2)) == {"acme": 1}  # young is 31 days old now


def test_a_legal_hold_stops_the_operators_purge_too(db: Database, service: ResourceService,
                                                   tenants: TenantService) -> None:
    acme, globex = tenant(tenants, "acme"), tenant(tenants, "globex")
    held = tombstone(db, service, acme, "held@x.com", 10)
    free = tombstone(db, service, globex, "free@x.com", 10)
    tenants.set_legal_hold("acme", True)
    with pytest.raises(TenantError, match="legal hold"):
        TombstoneService(db).purge("acme", format_timestamp(NOW))
    assert TombstoneService(db).purge(None, format_timestamp(NOW)) == 1  # every tenant: the held one skipped
    assert (surviving(db, "acme"), surviving(db, "globex")) == ({held}, set())
    assert [e["id"] for e in AuditService(db).list(None, None, None, 100) if e["action"] == "purge"] == [free]


def test_policy_changes_are_audited_and_validated(db: Database, tenants: TenantService) -> None:
    tenant(tenants, "acme")
    tenants.set_retention("acme", 90)
    tenants.set_legal_hold("acme", True)
    tenants.set_legal_hold("acme", False)
    tenants.set_retention("acme", 0)  # back to forever
    events = AuditService(db).list("acme", None, None, 100)
    assert {(e["type"], e["actor"]) for e in events} == {("Tenant", "operator:cli")}
    assert [(e["action"], e["attributes"]) for e in events] == [
        ("retention", ["retention_days"]), ("hold", ["legal_hold"]), ("release", ["legal_hold"]),
        ("retention", ["retention_days"])]
    listed = {t["name"]: t for t in tenants.list_tenants()}["acme"]
    assert (listed["retention_days"], bool(listed["legal_hold"])) == (None, False)
    for days in (-1, 36_501, 800_000):  # a period that would overflow dates is refused, not stored
        with pytest.raises(TenantError):
            tenants.set_retention("acme", days)
    tenants.set_retention("acme", 36_500)
    assert TombstoneService(db).purge_expired(NOW) == {}  # a century works (and purges nothing yet)
    with pytest.raises(TenantError):
        tenants.set_legal_hold("nobody", True)


def test_a_serving_app_runs_the_job(db: Database, service: ResourceService, tenants: TenantService,
                                    settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from identity_sync.web import jobs

    acme = tenant(tenants, "acme")
    doomed = tombstone(db, service, acme, "old@x.com", 1000)  # deleted long before the real now
    tenants.set_retention("acme", 30)
    monkeypatch.setattr(jobs, "FIRST_RUN_AFTER_SECONDS", 0.05)
    fast: Any = settings.model_copy(update={"retention_interval_seconds": 0.05})
    with TestClient(create_app(fast, db)):
        deadline = time.monotonic() + 10
        while doomed in surviving(db, "acme") and time.monotonic() < deadline:
            time.sleep(0.05)
    assert surviving(db, "acme") == set()


def test_one_tenants_failure_does_not_stop_the_others_retention(
        db: Database, service: ResourceService, tenants: TenantService, monkeypatch: pytest.MonkeyPatch) -> None:
    acme, globex = tenant(tenants, "acme"), tenant(tenants, "globex")
    tombstone(db, service, acme, "a@x.com", 40)
    kept = tombstone(db, service, globex, "g@x.com", 40)
    tenants.set_retention("acme", 30)
    tenants.set_retention("globex", 30)
    real = store.tombstone_ids

    def failing_for_globex(conn: Any, tenant_id: str, older_than: str, limit: int) -> list[str]:
        if tenant_id == globex.tenant_id:
            raise RuntimeError("disk on fire")
        return real(conn, tenant_id, older_than, limit)

    monkeypatch.setattr(store, "tombstone_ids", failing_for_globex)
    assert TombstoneService(db).purge_expired(NOW) == {"acme": 1}
    assert surviving(db, "globex") == {kept}


def test_the_job_purges_in_batches(db: Database, service: ResourceService, tenants: TenantService,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from identity_sync.service import tombstones

    acme = tenant(tenants, "acme")
    for i in range(7):
        tombstone(db, service, acme, f"u{i}@x.com", 40)
    tenants.set_retention("acme", 30)
    monkeypatch.setattr(tombstones, "PURGE_BATCH", 3)
    assert TombstoneService(db).purge_expired(NOW) == {"acme": 7}
    assert surviving(db, "acme") == set()


def test_a_hold_placed_while_a_purge_runs_is_never_overtaken(
        db_kind: str, db: Database, service: ResourceService, tenants: TenantService,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The purge reads the holds with a lock it keeps until it commits: the hold waits for the
    purge to finish (or the purge sees the hold). In the trail, which orders a tenant's events
    as they committed, no purge ever follows the hold."""
    import threading

    from identity_sync.service import tombstones

    acme = tenant(tenants, "acme")
    for i in range(3):
        tombstone(db, service, acme, f"u{i}@x.com", 40)
    real_forget = tombstones.memberships.forget
    purging = threading.Event()

    def slow_forget(conn: Any, tenant_id: str, ids: list[str]) -> None:
        purging.set()
        time.sleep(0.5)  # the hold is placed meanwhile
        real_forget(conn, tenant_id, ids)

    monkeypatch.setattr(tombstones.memberships, "forget", slow_forget)
    purge = threading.Thread(target=lambda: TombstoneService(db).purge(None, format_timestamp(NOW)))
    purge.start()
    assert purging.wait(10)
    tenants.set_legal_hold("acme", True)
    purge.join(10)
    actions = [e["action"] for e in AuditService(db).list("acme", None, None, 100)]
    assert "hold" in actions
    assert "purge" not in actions[actions.index("hold"):], actions


def test_a_purge_larger_than_one_statement_destroys_and_audits_every_tombstone(
        db: Database, tenants: TenantService) -> None:
    """The purge deletes in chunks of 500 ids (PostgreSQL takes at most 65,535 parameters per
    statement): 1,100 tombstones span three chunks, and each is destroyed and audited once."""
    from identity_sync.ids import new_id
    from identity_sync.storage.tables import resources

    acme = tenant(tenants, "acme")
    deleted = format_timestamp(NOW - timedelta(days=40))
    rows = [{"id": new_id(), "tenant_id": acme.tenant_id, "resource_type": "User", "name_key": f"u{i}@x.com",
             "doc": {"userName": f"u{i}@x.com"}, "version": 1, "created_at": deleted, "last_modified": deleted,
             "deleted_at": deleted} for i in range(1_100)]
    with db.write() as conn:
        conn.execute(resources.insert(), rows)
    assert TombstoneService(db).purge("acme", format_timestamp(NOW)) == 1_100
    assert surviving(db, "acme") == set()
    purges = AuditService(db).list("acme", None, None, 5_000)
    assert sorted(e["id"] for e in purges if e["action"] == "purge") == sorted(r["id"] for r in rows)
