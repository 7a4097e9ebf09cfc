"""The connector data store stays true to the target: one target object is linked to one source
object at most; a re-hire takes over the object of someone who left instead of losing it; a link
to an object deleted in the target is dropped and the object made again, memberships included;
create-only values flow into creates only; a removed manager is removed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from identity_sync.config import Settings
from identity_sync.engine.client import documents
from identity_sync.engine.jobs import Credentials
from identity_sync.engine.mapping.model import ENTERPRISE, default_mapping_document
from identity_sync.engine.service import EngineService
from identity_sync.engine.state import ConnectorStore
from identity_sync.storage.db import Database
from tests.engine.conftest import unique
from tests.engine.directory import group, user, write_directory
from tests.engine.readback import Readback
from tests.engine.targets import Target

MANAGER = f"{ENTERPRISE}:manager"


class Export:
    def __init__(self, path: Path) -> None:
        self.path, self.prefix = path, unique("ln")
        self.users: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, dict[str, Any]] = {}

    def upn(self, name: str) -> str:
        return f"{self.prefix}-{name}@example.com"

    def write(self) -> None:
        write_directory(self.path, self.users.values(), self.groups.values(),
                        assignments=[*self.users, *self.groups])


def _engine(db: Database, settings: Settings, target: Target, export: Export,
            mapping: dict[str, Any] | None = None) -> EngineService:
    engine = EngineService(db, settings)
    engine.jobs.create("job", source=f"csv:{export.path}", target_url=target.base_url,
                       credentials=Credentials(token=target.token), mapping=mapping)
    return engine


def test_a_rehire_under_a_new_id_takes_over_the_object_of_who_left(
        db: Database, settings: Settings, our_target: Target, readback: Readback, tmp_path: Path) -> None:
    e = Export(tmp_path / "export")
    e.users["old"] = user("old", userPrincipalName=e.upn("ada"))
    e.users["other"] = user("other", userPrincipalName=e.upn("other"))
    e.groups["g-old"] = group("g-old", ["old", "other"], displayName=f"{e.prefix} team")
    e.write()
    engine = _engine(db, settings, our_target, e)
    engine.run("job")
    before = readback.users(e.prefix)[e.upn("ada")]
    team = readback.groups(e.prefix)[f"{e.prefix} team"]

    del e.users["old"]
    e.users["new"] = user("new", userPrincipalName=e.upn("ada"), displayName="Ada, re-hired")
    e.groups = {"g-new": group("g-new", ["new", "other"], displayName=f"{e.prefix} team")}
    e.write()
    second = engine.run("job")

    assert second.counts["deleted"] == 0 and second.counts["failed"] == 0
    after = readback.users(e.prefix)[e.upn("ada")]
    assert after["id"] == before["id"] and after["displayName"] == "Ada, re-hired"
    assert readback.groups(e.prefix)[f"{e.prefix} team"]["id"] == team["id"]
    assert readback.member_ids(team["id"]) == {after["id"], readback.users(e.prefix)[e.upn("other")]["id"]}
    third = engine.run("job")
    assert third.counts["failed"] == 0 and not any(third.requests.get(m) for m in ("POST", "PATCH", "DELETE"))


def test_two_source_objects_never_share_one_target_object(
        db: Database, settings: Settings, our_target: Target, readback: Readback, tmp_path: Path) -> None:
    e = Export(tmp_path / "export")
    e.users["u1"] = user("u1", userPrincipalName=e.upn("one"))
    e.write()
    engine = _engine(db, settings, our_target, e)
    engine.run("job")
    e.users["u2"] = user("u2", userPrincipalName=e.upn("one").upper())  # the same userName, differently cased
    e.write()
    second = engine.run("job")
    assert second.counts["failed"] == 1
    links = ConnectorStore(db, engine.jobs.get("job").id).index("user")
    assert set(links) == {"u1"}
    from identity_sync.engine.logs import query_events

    [failure] = query_events(db, engine.jobs.get("job").id, cycle=second.cycle_id, status="failure")
    assert failure["provisioningStatusInfo"]["errorInformation"]["errorCode"] == "DuplicateSourceEntries"
    del e.users["u1"]  # u1 leaves: now u2 may have the object, and nothing is deleted
    e.write()
    third = engine.run("job")
    assert (third.counts["failed"], third.counts["deleted"]) == (0, 0)
    assert len(readback.users(e.prefix)) == 1


def test_objects_deleted_in_the_target_are_made_again_with_their_memberships(
        db: Database, settings: Settings, our_target: Target, readback: Readback, tmp_path: Path) -> None:
    e = Export(tmp_path / "export")
    e.users["u1"] = user("u1", userPrincipalName=e.upn("u1"))
    e.users["u2"] = user("u2", userPrincipalName=e.upn("u2"))
    e.groups["g"] = group("g", ["u1", "u2"], displayName=f"{e.prefix} g")
    e.write()
    engine = _engine(db, settings, our_target, e)
    engine.run("job")
    users = readback.users(e.prefix)
    old_group = readback.groups(e.prefix)[f"{e.prefix} g"]["id"]
    readback.http.delete(f"{readback.base}/Users/{users[e.upn('u1')]['id']}").raise_for_status()
    readback.http.delete(f"{readback.base}/Groups/{old_group}").raise_for_status()

    e.users["u1"]["displayName"] = "changed, so that the incremental cycle PATCHes a user that is gone"
    e.write()
    second = engine.run("job")  # incremental: the PATCH answers 404 → made again in the same cycle
    assert second.counts["created"] == 1
    third = engine.run("job")  # the group's membership PATCH answered 404 → its link was dropped
    assert third.counts["created"] == 1 and third.counts["failed"] == 0
    users = readback.users(e.prefix)
    new_group = readback.groups(e.prefix)[f"{e.prefix} g"]["id"]
    assert new_group != old_group
    assert readback.member_ids(new_group) == {users[e.upn("u1")]["id"], users[e.upn("u2")]["id"]}
    fourth = engine.run("job")
    assert not any(fourth.requests.get(m) for m in ("POST", "PATCH", "DELETE"))


def test_create_only_values_and_defaults_flow_into_creates_not_into_matched_objects(
        db: Database, settings: Settings, our_target: Target, readback: Readback, tmp_path: Path) -> None:
    e = Export(tmp_path / "export")
    e.users["u1"] = user("u1", userPrincipalName=e.upn("matched"))
    e.users["u2"] = user("u2", userPrincipalName=e.upn("created"))
    e.write()
    existing = readback.http.post(f"{readback.base}/Users", json={
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": e.upn("matched"),
        "title": "Engineer"}, headers={"Content-Type": "application/scim+json"})
    existing.raise_for_status()
    mapping = default_mapping_document()
    mapping = {**mapping, "users": {**mapping["users"], "mappings": [
        m for m in mapping["users"]["mappings"] if m["target"] not in ("title", "nickName")] + [
        {"target": "title", "constant": "New hire", "flow": "create"},
        {"target": "nickName", "source": "nickName", "default": "newbie"}]}}
    engine = _engine(db, settings, our_target, e, mapping)
    first = engine.run("job")
    assert first.counts["created"] == 1 and first.counts["failed"] == 0
    users = readback.users(e.prefix)
    assert users[e.upn("matched")]["title"] == "Engineer" and "nickName" not in users[e.upn("matched")]
    assert users[e.upn("created")]["title"] == "New hire" and users[e.upn("created")]["nickName"] == "newbie"
    second = engine.run("job")
    assert not any(second.requests.get(m) for m in ("POST", "PATCH", "DELETE"))


def test_a_removed_manager_is_removed(db: Database, settings: Settings, our_target: Target, readback: Readback,
                                      tmp_path: Path) -> None:
    e = Export(tmp_path / "export")
    e.users["boss"] = user("boss", userPrincipalName=e.upn("boss"))
    e.users["u1"] = user("u1", userPrincipalName=e.upn("u1"), manager="boss")
    e.write()
    engine = _engine(db, settings, our_target, e)
    engine.run("job")
    users = readback.users(e.prefix)
    assert documents.extract(users[e.upn("u1")], MANAGER) == users[e.upn("boss")]["id"]
    e.users["u1"]["manager"] = None
    e.write()
    second = engine.run("job")
    assert second.counts["updated"] == 1
    assert documents.extract(readback.users(e.prefix)[e.upn("u1")], MANAGER) is None
