"""End to end, CSV → our own service (a real ``identity-sync serve``, SQLite and PostgreSQL):
the lifecycle of issue 10 — an initial cycle of users, groups, nested memberships and managers;
then attribute changes, a rename, disable by ``accountEnabled``, soft delete, unassignment,
membership adds and removes; a cycle with no source change that sends no write; a hard delete;
a scoping-filter change. After each cycle the target, read back over SCIM, is what the mapping says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from identity_sync.config import Settings
from identity_sync.engine.client import documents
from identity_sync.engine.jobs import Credentials
from identity_sync.engine.mapping.model import ENTERPRISE, GLOBAL_RELAY, default_mapping_document
from identity_sync.engine.service import EngineService
from identity_sync.storage.db import Database
from tests.engine.conftest import unique
from tests.engine.directory import group, user, write_directory
from tests.engine.readback import Readback
from tests.engine.targets import Target

WRITES = ("POST", "PATCH", "PUT", "DELETE")


class Directory:
    """The source export of one test, with names unique on the shared target."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.prefix = unique("lc")
        self.users: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self.assignments: list[str] = []

    def upn(self, anchor: str) -> str:
        return f"{self.prefix}-{anchor}@example.com"

    def add_user(self, anchor: str, **attributes: Any) -> None:
        self.users[anchor] = user(anchor, userPrincipalName=self.upn(anchor), **attributes)

    def add_group(self, anchor: str, members: list[str]) -> None:
        self.groups[anchor] = group(anchor, members, displayName=f"{self.prefix} {anchor}")

    def write(self) -> None:
        write_directory(self.path, self.users.values(), self.groups.values(), self.assignments)


def _engine(db: Database, settings: Settings, target: Target, source: Path, mapping: dict[str, Any] | None = None,
            dialect: str = "entra") -> EngineService:
    engine = EngineService(db, settings)
    engine.jobs.create("lifecycle", source=f"csv:{source}", target_url=target.base_url,
                       credentials=Credentials(token=target.token), mapping=mapping, dialect=dialect)
    return engine


def _seed(directory: Directory) -> None:
    d = directory
    d.add_user("boss", givenName="Ada", surname="Lovelace", department="Sales", jobTitle="CEO",
               mail=f"{d.prefix}-boss@mail.example.com", employeeId="E1", proxyAddresses=["SMTP:boss@x.example",
                                                                                           "smtp:ada@x.example"],
               extensionAttribute3="ea3", businessPhones=["+1 555 0100"], city="London")
    d.add_user("u2", givenName="Grace", surname="Hopper", department="Sales", manager="boss", employeeId="E2")
    d.add_user("u3", givenName="Alan", surname="Turing", department="R&D", manager="boss")
    d.add_user("u4", department="Sales", manager="u2")
    d.add_user("u5", department="R&D")
    d.add_user("u6", department="Sales")
    d.add_user("never", department="Sales", accountEnabled=False)  # disabled users are never provisioned
    d.add_user("outside", department="Sales")  # not assigned: out of scope
    d.add_group("team", ["boss", "u2", "sub"])
    d.add_group("sub", ["u3", "u4"])
    d.assignments = ["team", "sub", "u5", "u6", "never"]
    d.write()


def _check_user(d: Directory, users: dict[str, dict[str, Any]], anchor: str, *, active: bool = True) -> None:
    resource = users[d.upn(anchor).lower()]
    source = d.users[anchor]
    assert resource["active"] is active
    assert resource["displayName"] == source["displayName"]
    assert resource["externalId"] if "mailNickname" in source else "externalId" not in resource
    if "givenName" in source:
        assert documents.extract(resource, "name.givenName") == source["givenName"]
        assert documents.extract(resource, "name.formatted") == f"{source['givenName']} {source['surname']}"
    assert documents.extract(resource, f"{ENTERPRISE}:department") == source.get("department")
    assert documents.extract(resource, f"{ENTERPRISE}:employeeNumber") == source.get("employeeId")
    manager = source.get("manager")
    if manager is None:
        assert documents.extract(resource, f"{ENTERPRISE}:manager") is None
    else:
        assert documents.extract(resource, f"{ENTERPRISE}:manager") == users[d.upn(manager).lower()]["id"]


def test_the_whole_lifecycle(db: Database, settings: Settings, our_target: Target, readback: Readback,
                             tmp_path: Path) -> None:
    run_lifecycle(db, settings, our_target, readback, tmp_path, dialect="entra")


def test_the_whole_lifecycle_in_the_legacy_dialect(db: Database, settings: Settings, our_target: Target,
                                                   readback: Readback, tmp_path: Path) -> None:
    run_lifecycle(db, settings, our_target, readback, tmp_path, dialect="entra-legacy")


def run_lifecycle(db: Database, settings: Settings, target: Target, readback: Readback, tmp_path: Path, *,
                  dialect: str) -> None:
    """The scenario, against any target (tests/engine/test_lifecycle_scim2.py runs it on scim2-server)."""
    d = Directory(tmp_path / "export")
    _seed(d)
    engine = _engine(db, settings, target, d.path, dialect=dialect)

    # 1. Initial cycle: users, groups with nested members, managers.
    first = engine.run("lifecycle")
    assert (first.kind, first.counts["created"], first.counts["failed"]) == ("initial", 8, 0)  # 6 users, 2 groups
    users = readback.users(d.prefix)
    assert set(users) == {d.upn(a).lower() for a in ("boss", "u2", "u3", "u4", "u5", "u6")}
    for anchor in ("boss", "u2", "u3", "u4", "u5", "u6"):
        _check_user(d, users, anchor)
    boss = users[d.upn("boss").lower()]
    assert documents.extract(boss, 'emails[type eq "work"].value') == f"{d.prefix}-boss@mail.example.com"
    assert documents.extract(boss, f"{GLOBAL_RELAY}:proxyAddresses") == ["SMTP:boss@x.example", "smtp:ada@x.example"]
    assert documents.extract(boss, f"{GLOBAL_RELAY}:extensionAttribute3") == "ea3"
    assert documents.extract(boss, 'phoneNumbers[type eq "work"].value') == "+1 555 0100"
    assert documents.extract(boss, 'addresses[type eq "work"].locality') == "London"
    groups = readback.groups(d.prefix)
    team, sub = groups[f"{d.prefix} team"], groups[f"{d.prefix} sub"]
    ids = {a: users[d.upn(a).lower()]["id"] for a in ("boss", "u2", "u3", "u4", "u5", "u6")}
    assert readback.member_ids(team["id"]) == {ids["boss"], ids["u2"], sub["id"]}
    assert readback.member_ids(sub["id"]) == {ids["u3"], ids["u4"]}

    # 2. Changes: attributes, a rename, disable, soft delete, unassignment, memberships.
    d.users["u2"]["displayName"] = "Grace B. Hopper"
    d.users["u3"]["userPrincipalName"] = d.upn("u3-renamed")
    d.users["u4"]["accountEnabled"] = False
    d.users["u5"]["deletedDateTime"] = "2026-12-01T00:00:00Z"
    d.assignments.remove("u6")
    d.groups["team"]["members"] = ["u2", "sub", "u5"]  # boss leaves; u5 is soft-deleted, so not a member
    d.groups["sub"]["members"] = ["u3", "u4", "boss"]  # boss joins; u4 is disabled, so leaves
    d.write()
    second = engine.run("lifecycle")
    assert second.kind == "incremental"
    assert (second.counts["created"], second.counts["disabled"], second.counts["failed"]) == (0, 3, 0)
    users = readback.users(d.prefix)
    assert users[d.upn("u3-renamed").lower()]["id"] == ids["u3"]  # a rename is an update, not delete + create
    assert d.upn("u3").lower() not in users
    assert users[d.upn("u2").lower()]["displayName"] == "Grace B. Hopper"
    for anchor in ("u4", "u5", "u6"):
        assert users[d.upn(anchor).lower()]["active"] is False
    assert users[d.upn("boss").lower()]["active"] is True
    assert readback.member_ids(team["id"]) == {ids["u2"], sub["id"]}
    assert readback.member_ids(sub["id"]) == {ids["u3"], ids["boss"]}

    # 3. No source change: no write at all.
    third = engine.run("lifecycle")
    assert not any(third.requests.get(method, 0) for method in WRITES), third.requests
    assert sum(third.counts[k] for k in ("created", "updated", "disabled", "deleted", "failed")) == 0

    # 4. Hard delete: gone from the export → DELETE, and out of its groups.
    del d.users["u2"]
    d.users["u4"]["manager"] = "boss"  # the export names no manager that is not in it
    d.groups["team"]["members"] = ["sub"]
    d.write()
    fourth = engine.run("lifecycle")
    assert fourth.counts["deleted"] == 1
    assert readback.user(ids["u2"]) is None
    assert readback.member_ids(team["id"]) == {sub["id"]}

    # 5. A scoping filter: only Sales stays in scope; the next cycle is an initial one.
    mapping = default_mapping_document()
    mapping = {**mapping, "users": {**mapping["users"], "scoping": [
        {"title": "Sales only", "clauses": [{"attribute": "department", "operator": "EQUALS", "value": "Sales"}]}]}}
    engine.jobs.update("lifecycle", mapping=mapping)
    fifth = engine.run("lifecycle")
    assert fifth.kind == "initial"
    users = readback.users(d.prefix)
    assert users[d.upn("boss").lower()]["active"] is True  # Sales
    assert users[d.upn("u3-renamed").lower()]["active"] is False  # R&D: disabled
    assert readback.member_ids(sub["id"]) == {ids["boss"]}

    # The provisioning logs have one event per object per cycle, with steps and modified properties.
    from identity_sync.engine.logs import query_events

    job = engine.jobs.get("lifecycle")
    renamed = query_events(db, job.id, cycle=second.cycle_id, object_id="u3")
    assert [e["provisioningAction"] for e in renamed] == ["update"]
    assert {"displayName": "userName", "oldValue": d.upn("u3"), "newValue": d.upn("u3-renamed")} in \
        renamed[0]["modifiedProperties"]
    created = query_events(db, job.id, cycle=first.cycle_id, action="create")
    assert len(created) == 8
    assert {s["provisioningStepType"] for s in created[0]["provisioningSteps"]} >= {"import", "scoping", "matching",
                                                                                    "export"}


def test_an_interrupted_cycle_converges_without_duplicates(db: Database, settings: Settings, our_target: Target,
                                                           readback: Readback, tmp_path: Path) -> None:
    """Links are lost (as if the process died after the target answered): the next cycle finds
    the objects by matching and creates nothing twice."""
    d = Directory(tmp_path / "export")
    _seed(d)
    engine = _engine(db, settings, our_target, d.path)
    engine.run("lifecycle")
    before = readback.users(d.prefix)
    engine.jobs.restart("lifecycle", frozenset({"connector-data-store"}))
    again = engine.run("lifecycle")
    assert again.counts["created"] == 0 and again.counts["failed"] == 0
    after = readback.users(d.prefix)
    assert {k: v["id"] for k, v in after.items()} == {k: v["id"] for k, v in before.items()}


def test_a_crash_right_after_the_target_answered_converges_without_duplicates(
        db: Database, settings: Settings, our_target: Target, readback: Readback, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The process dies after the fourth create was answered, before its batch's links are written:
    the next run matches what was created and creates only what is missing."""
    from identity_sync.engine.export import Target as Exporter

    d = Directory(tmp_path / "export")
    _seed(d)
    engine = _engine(db, settings, our_target, d.path)
    original = Exporter.create
    calls = {"n": 0}

    async def dying_create(self: Exporter, resource_type: str, values: dict[str, Any]) -> str:
        target_id = await original(self, resource_type, values)
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # as if the process were killed here
        return target_id

    monkeypatch.setattr(Exporter, "create", dying_create)
    with pytest.raises(KeyboardInterrupt):
        engine.run("lifecycle")
    monkeypatch.setattr(Exporter, "create", original)
    assert len(readback.users(d.prefix)) >= 4
    job = engine.jobs.get("lifecycle")
    assert job.watermark is None and engine.jobs.cycles(job)[0]["state"] == "failed"

    again = engine.run("lifecycle")
    assert again.kind == "initial" and again.counts["failed"] == 0
    users = readback.users(d.prefix)
    assert set(users) == {d.upn(a).lower() for a in ("boss", "u2", "u3", "u4", "u5", "u6")}
    for anchor in ("boss", "u2", "u3", "u4", "u5", "u6"):
        _check_user(d, users, anchor)
    assert len(readback.groups(d.prefix)) == 2


@pytest.mark.parametrize("where", ["ours", "scim2-server"])
def test_an_initial_cycle_lists_the_target_once_instead_of_querying_every_new_object(
        where: str, db: Database, settings: Settings, request: pytest.FixtureRequest, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A value absent from a complete listing is created without a query of its own; a value present
    is still matched by the query, so an object already in the target is linked, not created again."""
    import identity_sync.engine.cycle as cycle_module

    monkeypatch.setattr(cycle_module, "INDEX_THRESHOLD", 1)
    target: Target = request.getfixturevalue("our_target" if where == "ours" else "scim2_target")
    reader = Readback(target)
    d = Directory(tmp_path / "export")
    _seed(d)
    existing = reader.http.post(f"{reader.base}/Users", json={
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": d.upn("u5").upper(),
        "active": True}, headers={"Content-Type": "application/scim+json"})
    assert existing.status_code == 201, existing.text
    engine = _engine(db, settings, target, d.path, dialect="entra" if where == "ours" else "rfc")

    first = engine.run("lifecycle")

    assert first.counts["created"] == 7 and first.counts["failed"] == 0  # 5 users + 2 groups; u5 was there
    users = reader.users(d.prefix)
    assert users[d.upn("u5").lower()]["id"] == existing.json()["id"]
    assert len(users) == 6
    # Two Test Connection probes, one listing page per type, one query for u5 (present) — and the
    # groups' reads: far fewer than one query per object.
    assert first.requests["GET"] <= 2 + 2 + 1 + 2, first.requests
    reader.close()


def test_a_running_cycle_shows_its_progress_to_other_readers(
        db: Database, settings: Settings, our_target: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cycle's row carries its phase and numbers while it runs (`job show`, the console)."""
    import identity_sync.engine.cycle as cycle_module
    from identity_sync.engine.progress import Progress

    monkeypatch.setattr(cycle_module, "PROGRESS_EVERY_SECONDS", 0.0)
    d = Directory(tmp_path / "export")
    _seed(d)
    engine = _engine(db, settings, our_target, d.path)
    job = engine.jobs.get("lifecycle")
    seen: list[dict[str, Any]] = []

    def look(progress: Progress) -> None:
        running = [c for c in engine.jobs.cycles(job) if c["state"] == "running"]
        if running and "progress" in running[0]:
            seen.append(running[0]["progress"])

    engine.run("lifecycle", progress=Progress(listener=look))
    assert {p["phase"] for p in seen} >= {"users", "groups"}
    assert all(0 <= p["done"] <= p["total"] for p in seen)
    assert engine.jobs.cycles(job)[0]["state"] == "completed"
