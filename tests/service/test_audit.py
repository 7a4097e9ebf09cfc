"""The audit trail (storage/audit.py): exactly one event per committed change — who (the
credential's id), what (action, resource, new version, the attributes touched), when — and none
for a request that changed nothing or was refused; purges are recorded too; no secret or value
is ever in it; the operator reads it per tenant, per resource, since a time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from identity_sync.auth.tokens import Principal
from identity_sync.errors import BadRequest, Conflict
from identity_sync.scim.registry import GROUP, USER
from identity_sync.service.audit import AuditService
from identity_sync.service.resources import ResourceService
from identity_sync.service.tenants import TenantError, TenantService
from identity_sync.service.tombstones import TombstoneService
from identity_sync.storage.db import Database

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


@pytest.fixture
def issued(tenants: TenantService) -> Any:
    return tenants.create_tenant("acme")


@pytest.fixture
def acme(tenants: TenantService, issued: Any) -> Principal:
    return tenants.authenticate(f"Bearer {issued.token}", "acme")


def trail(db: Database, tenant: str | None = "acme", **filters: Any) -> list[tuple[Any, ...]]:
    rows = AuditService(db).list(tenant, filters.get("since"), filters.get("resource"), 1000)
    return [(r["action"], r["type"], r["id"], r["version"], r["attributes"]) for r in rows]


def ops(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": list(operations)}


def test_every_committed_change_is_one_event(db: Database, service: ResourceService, acme: Principal) -> None:
    user = service.create(acme, USER, {"userName": "ada@x.com", "title": "Clerk", ENTERPRISE: {"department": "R"}})
    patched = service.patch(acme, USER, user.id, ops({"op": "replace", "path": "title", "value": "Archivist"},
                                                     {"op": "replace", "path": f"{ENTERPRISE}:department",
                                                      "value": "Records"}), None)
    replaced = service.replace(acme, USER, user.id, {"userName": "ada@x.com", "title": "Archivist",
                                                     "displayName": "Ada"}, None)
    group = service.create(acme, GROUP, {"displayName": "Sales", "members": [{"value": user.id}]})
    service.patch(acme, GROUP, group.id, ops({"op": "remove", "path": "members", "value": [{"value": user.id}]}), None)
    service.delete(acme, USER, user.id, None)
    assert trail(db) == [
        ("create", "User", user.id, 1, sorted(["userName", "title", ENTERPRISE])),
        ("patch", "User", user.id, patched.version, sorted(["title", f"{ENTERPRISE}:department"])),
        ("replace", "User", user.id, replaced.version, sorted(["displayName", f"{ENTERPRISE}:department"])),
        ("create", "Group", group.id, 1, ["displayName", "members"]),
        ("patch", "Group", group.id, 2, ["members"]),
        ("delete", "User", user.id, replaced.version, []),
    ]
    events = AuditService(db).list("acme", None, None, 1000)
    assert {e["actor"] for e in events} == {acme.credential_id} and {e["tenant"] for e in events} == {"acme"}


def test_requests_that_change_nothing_or_are_refused_leave_no_event(
        db: Database, service: ResourceService, acme: Principal) -> None:
    user = service.create(acme, USER, {"userName": "ada@x.com", "title": "Clerk"})
    service.create(acme, USER, {"userName": "bob@x.com"})
    before = trail(db)
    service.patch(acme, USER, user.id, ops({"op": "replace", "path": "title", "value": "Clerk"}), None)  # re-sent
    with pytest.raises(BadRequest):
        service.patch(acme, USER, user.id, ops({"op": "replace", "path": "title", "value": "X"},
                                               {"op": "replace", "path": "active", "value": "nope"}), None)
    with pytest.raises(Conflict):
        service.create(acme, USER, {"userName": "BOB@x.com"})
    with pytest.raises(BadRequest):
        service.create(acme, GROUP, {"displayName": "G", "members": [{"value": "no-such-user"}]})
    assert trail(db) == before


def test_purges_are_recorded_and_the_trail_outlives_the_tombstone(
        db: Database, service: ResourceService, acme: Principal) -> None:
    user = service.create(acme, USER, {"userName": "leaver@x.com"})
    service.delete(acme, USER, user.id, None)
    assert TombstoneService(db).purge("acme", "9999-12-31T00:00:00Z") == 1
    history = AuditService(db).list("acme", None, user.id, 1000)
    assert [(e["action"], e["actor"]) for e in history] == [
        ("create", acme.credential_id), ("delete", acme.credential_id), ("purge", "operator:cli")]


def test_the_trail_is_read_per_tenant_resource_and_time(db: Database, service: ResourceService, acme: Principal,
                                                        tenants: TenantService) -> None:
    globex = tenants.authenticate(f"Bearer {tenants.create_tenant('globex').token}", "globex")
    first = service.create(acme, USER, {"userName": "a@x.com"})
    other = service.create(globex, USER, {"userName": "a@x.com"})
    second = service.create(acme, USER, {"userName": "b@x.com"})
    assert [e[2] for e in trail(db)] == [first.id, second.id]
    assert [e[2] for e in trail(db, "globex")] == [other.id]
    assert [e[2] for e in trail(db, None)] == [first.id, other.id, second.id]
    assert [e[2] for e in trail(db, resource=second.id)] == [second.id]
    assert [e[2] for e in trail(db, since=second.last_modified)] == [second.id]
    page = AuditService(db).list(None, None, None, 2)
    rest = AuditService(db).list(None, None, None, 2, after=page[-1]["seq"])
    assert [e["id"] for e in page + rest] == [first.id, other.id, second.id]  # an export in pages
    with pytest.raises(TenantError):
        trail(db, "initech")


def test_the_cli_exports_the_trail_without_secrets(db_url: str, tmp_path: Path, issued: Any, acme: Principal,
                                                   service: ResourceService) -> None:
    service.create(acme, USER, {"userName": "ada@x.com", "password": "hunter2-very-secret"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDSYNC_")}
    env.update(IDSYNC_DATABASE_URL=db_url, IDSYNC_DATA_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "identity_sync", "audit", "list", "--tenant", "acme", "--json"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    events = json.loads(result.stdout)["events"]
    assert [(e["action"], e["type"], e["actor"]) for e in events] == [("create", "User", acme.credential_id)]
    assert set(events[0]) == {"seq", "at", "tenant", "actor", "action", "type", "id", "version", "attributes"}
    assert issued.token not in result.stdout and "hunter2" not in result.stdout and "password" not in result.stdout
