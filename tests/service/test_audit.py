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
        ("create", "User", user.id, 1, sorted(["userName", "title", f"{ENTERPRISE}:department"])),
        ("patch", "User", user.id, patched.version, sorted(["title", f"{ENTERPRISE}:department"])),
        ("replace", "User", user.id, replaced.version, sorted(["displayName", f"{ENTERPRISE}:department"])),
        ("create", "Group", group.id, 1, ["displayName", "members"]),
        ("patch", "Group", group.id, 2, ["members"]),
        ("delete", "User", user.id, replaced.version, []),
    ]
    events = AuditService(db).list("acme", None, None, 1000)
    assert {e["actor"] for e in events} == {acme.credential_id} and {e["tenant"] for e in events} == {"acme"}


def test_deleting_a_member_is_also_an_event_of_each_group_it_leaves(
        db: Database, service: ResourceService, acme: Principal) -> None:
    user = service.create(acme, USER, {"userName": "leaver@x.com"})
    sales = service.create(acme, GROUP, {"displayName": "Sales", "members": [{"value": user.id}]})
    staff = service.create(acme, GROUP, {"displayName": "Staff", "members": [{"value": user.id}]})
    outsiders = service.create(acme, GROUP, {"displayName": "Outsiders"})
    service.delete(acme, USER, user.id, None)
    tail = trail(db)[-3:]
    assert tail[0] == ("delete", "User", user.id, 1, [])
    assert sorted(tail[1:]) == sorted([("patch", "Group", sales.id, 2, ["members"]),
                                       ("patch", "Group", staff.id, 2, ["members"])])
    assert service.get(acme, GROUP, sales.id).version == 2 and service.get(acme, GROUP, outsiders.id).version == 1


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


def _audit_cli(db_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDSYNC_")}
    env.update(IDSYNC_DATABASE_URL=db_url, IDSYNC_DATA_DIR=str(tmp_path))
    return subprocess.run([sys.executable, "-m", "identity_sync", "audit", "list", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_the_cli_exports_the_trail_with_ids_and_no_secret(db_url: str, tmp_path: Path, issued: Any,
                                                          acme: Principal, service: ResourceService) -> None:
    user = service.create(acme, USER, {"userName": "ada@x.com"})
    result = _audit_cli(db_url, tmp_path, "--tenant", "acme", "--json")
    assert result.returncode == 0, result.stderr
    events = json.loads(result.stdout)["events"]
    assert [(e["action"], e["type"], e["id"], e["actor"]) for e in events] == [
        ("create", "User", user.id, acme.credential_id)]
    assert set(events[0]) == {"seq", "at", "tenant", "actor", "action", "type", "id", "version", "attributes"}
    assert issued.token not in result.stdout  # the actor is the token's id, never the token


def test_since_takes_a_time_as_people_write_it(db_url: str, tmp_path: Path, acme: Principal,
                                              service: ResourceService) -> None:
    user = service.create(acme, USER, {"userName": "ada@x.com"})
    second = user.last_modified[:19] + "Z"  # `…T12:34:56Z`: the event is at `…T12:34:56.789012Z`
    found = json.loads(_audit_cli(db_url, tmp_path, "--since", second, "--json").stdout)["events"]
    assert [e["id"] for e in found] == [user.id]
    assert json.loads(_audit_cli(db_url, tmp_path, "--since", "2999-01-01T00:00:00+01:00", "--json").stdout) == {
        "events": []}
    refused = _audit_cli(db_url, tmp_path, "--since", "yesterday")
    assert refused.returncode == 1 and "error:" in refused.stderr and "Traceback" not in refused.stderr


def test_an_export_in_pages_misses_no_event_that_commits_late(
        db: Database, service: ResourceService, acme: Principal, monkeypatch: pytest.MonkeyPatch) -> None:
    """Event ids are taken in commit order within a tenant (storage/audit.py), so an export that
    continues after the last id it saw never skips an event whose transaction was still open."""
    import threading
    import time

    from identity_sync.storage import audit

    slow, fast = (service.create(acme, USER, {"userName": f"{n}@x.com"}) for n in ("slow", "fast"))
    real_record = audit.record

    def record_then_dawdle(conn: Any, *events: audit.Event) -> None:
        real_record(conn, *events)
        if any(event.resource_id == slow.id for event in events):
            time.sleep(0.6)  # its event is written; its transaction commits 0.6 s later

    monkeypatch.setattr(audit, "record", record_then_dawdle)
    exporter = AuditService(db)
    seen = exporter.list("acme", None, None, 1000)
    last = seen[-1]["seq"]

    def patch(user_id: str) -> None:
        service.patch(acme, USER, user_id, ops({"op": "replace", "path": "title", "value": "x"}), None)

    first = threading.Thread(target=patch, args=(slow.id,))
    second = threading.Thread(target=patch, args=(fast.id,))
    first.start()
    time.sleep(0.15)
    second.start()
    time.sleep(0.25)  # the fast patch would have committed by now, were it not held back
    exported = exporter.list("acme", None, None, 1000, after=last)
    if exported:
        last = exported[-1]["seq"]
    first.join(10)
    second.join(10)
    exported += exporter.list("acme", None, None, 1000, after=last)
    assert sorted(e["id"] for e in exported) == sorted([slow.id, fast.id])
