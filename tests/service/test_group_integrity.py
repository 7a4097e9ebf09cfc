"""Membership integrity (issue #3), through the service layer: members exist in the same tenant;
a group never contains itself; groups may contain groups; a user's read-only ``groups`` lists
its direct groups; disabling a user keeps its memberships; deleting a user or a group removes
its memberships from every SCIM view while its tombstone keeps what they were; deleting a group
leaves its users untouched. Catalog cases 28, 33, 46 of docs/entra-scim-requests.md."""

from __future__ import annotations

from typing import Any

import pytest

from identity_sync.auth.tokens import Principal
from identity_sync.errors import BadRequest, NotFound
from identity_sync.scim.registry import GROUP, USER
from identity_sync.service.resources import ResourceService
from identity_sync.service.tenants import TenantService
from identity_sync.service.tombstones import TombstoneService
from identity_sync.storage.db import Database
from identity_sync.storage.resources import StoredResource

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@pytest.fixture
def globex(tenants: TenantService) -> Principal:
    issued = tenants.create_tenant("globex")
    return tenants.authenticate(f"Bearer {issued.token}", "globex")


def ops(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": list(operations)}


def add(*member_ids: str) -> dict[str, Any]:
    return ops({"op": "add", "path": "members", "value": [{"value": m} for m in member_ids]})


def user(service: ResourceService, principal: Principal, name: str) -> str:
    return service.create(principal, USER, {"userName": name, "active": True}).id


def group(service: ResourceService, principal: Principal, name: str) -> str:
    return service.create(principal, GROUP, {"displayName": name}).id


def members(service: ResourceService, principal: Principal, group_id: str) -> dict[str, str]:
    """``{member id: type}`` as a full read of the group shows them."""
    stored = service.get(principal, GROUP, group_id)
    loaded = service.related(principal, GROUP, [stored], with_members=True, with_groups=False)[0]
    return {m["value"]: m["type"] for m in (loaded.related or {}).get("members", [])}


def groups_of(service: ResourceService, principal: Principal, user_id: str) -> list[dict[str, Any]]:
    """A user's read-only ``groups`` attribute, as a read of the user loads it."""
    stored = service.get(principal, USER, user_id)
    loaded = service.related(principal, USER, [stored], with_members=False, with_groups=True)[0]
    return list((loaded.related or {}).get("groups", []))


def found(service: ResourceService, principal: Principal, rt: Any, filter_text: str) -> list[str]:
    return [r.id for r in service.query(principal, rt, filter_text, 1, 100)[1]]


def snapshot(service: ResourceService, principal: Principal, group_id: str) -> tuple[StoredResource, dict[str, str]]:
    return service.get(principal, GROUP, group_id), members(service, principal, group_id)


def tombstone(db: Database, resource_id: str) -> dict[str, Any]:
    [row] = [row for row in TombstoneService(db).list("acme", None) if row["id"] == resource_id]
    return row


# -- members must exist in the same tenant -----------------------------------------------------


@pytest.mark.parametrize("shape", ["add", "add-among-valid", "replace", "put", "after-rename-and-remove"])
def test_a_member_from_another_tenant_is_refused_and_nothing_changes(
        service: ResourceService, acme: Principal, globex: Principal, shape: str) -> None:
    """Each way of naming a member (PATCH add, replace, PUT, and an add after other operations
    in the same PATCH) with another tenant's user → 400 invalidValue, group unchanged."""
    kept, mine = user(service, acme, "kept@acme.com"), user(service, acme, "mine@acme.com")
    stranger = user(service, globex, "stranger@globex.com")
    gid = group(service, acme, "Guarded")
    service.patch(acme, GROUP, gid, add(kept), None)
    before = snapshot(service, acme, gid)
    attempt = {
        "add": lambda: service.patch(acme, GROUP, gid, add(stranger), None),
        "add-among-valid": lambda: service.patch(acme, GROUP, gid, add(mine, stranger), None),
        "replace": lambda: service.patch(acme, GROUP, gid, ops(
            {"op": "replace", "path": "members", "value": [{"value": mine}, {"value": stranger}]}), None),
        "put": lambda: service.replace(acme, GROUP, gid, {"displayName": "Renamed", "members": [
            {"value": mine}, {"value": stranger}]}, None),
        "after-rename-and-remove": lambda: service.patch(acme, GROUP, gid, ops(
            {"op": "replace", "path": "displayName", "value": "Renamed"},
            {"op": "remove", "path": f'members[value eq "{kept}"]'},
            {"op": "add", "path": "members", "value": [{"value": mine}, {"value": stranger}]}), None),
    }[shape]
    with pytest.raises(BadRequest) as raised:
        attempt()
    assert raised.value.status == 400 and raised.value.scim_type == "invalidValue"
    assert snapshot(service, acme, gid) == before
    assert groups_of(service, acme, mine) == []


def test_a_group_of_another_tenant_cannot_be_a_member(service: ResourceService, acme: Principal,
                                                      globex: Principal) -> None:
    """Nested groups are checked like users: another tenant's group id is not a member."""
    theirs = group(service, globex, "Theirs")
    mine = group(service, acme, "Mine")
    with pytest.raises(BadRequest):
        service.patch(acme, GROUP, mine, add(theirs), None)
    assert members(service, acme, mine) == {}
    assert members(service, globex, theirs) == {}


def test_unknown_and_deleted_ids_are_refused_as_members(service: ResourceService, acme: Principal) -> None:
    """An id that never existed, or a deleted user's id, is 400 invalidValue; nothing changes."""
    gone = user(service, acme, "gone@acme.com")
    service.delete(acme, USER, gone, None)
    gid = group(service, acme, "Strict")
    before = snapshot(service, acme, gid)
    for member_id in ("01a00000-0000-7000-8000-000000000000", gone):
        with pytest.raises(BadRequest):
            service.patch(acme, GROUP, gid, add(member_id), None)
    with pytest.raises(BadRequest):
        service.create(acme, GROUP, {"displayName": "Born broken", "members": [{"value": gone}]})
    assert snapshot(service, acme, gid) == before
    assert found(service, acme, GROUP, 'displayName eq "Born broken"') == []


@pytest.mark.parametrize("value", [[{"display": "Ada"}], [{"value": ""}], [{"value": None}], [{"$ref": None}]],
                         ids=["display-only", "empty", "null", "ref-only"])
@pytest.mark.parametrize("op", ["add", "remove", "replace"])
def test_a_member_entry_without_a_value_is_refused(service: ResourceService, acme: Principal, op: str,
                                                   value: list[dict[str, Any]]) -> None:
    """A member object without a usable `value` is a 400 invalidValue, never a silent no-op
    (for remove: never a "remove all" either); nothing changes."""
    ada = user(service, acme, "ada@acme.com")
    gid = group(service, acme, "Values")
    service.patch(acme, GROUP, gid, add(ada), None)
    before = snapshot(service, acme, gid)
    with pytest.raises(BadRequest) as raised:
        service.patch(acme, GROUP, gid, ops({"op": op, "path": "members", "value": value}), None)
    assert raised.value.scim_type == "invalidValue"
    with pytest.raises(BadRequest):
        service.create(acme, GROUP, {"displayName": "Born vague", "members": value})
    assert snapshot(service, acme, gid) == before


# -- nested groups and self-membership ---------------------------------------------------------


def test_groups_may_have_groups_as_members(service: ResourceService, acme: Principal) -> None:
    """A group member has type Group; member filters find the parent; the member group's own
    members are not flattened into the parent; the user's `groups` lists direct groups only."""
    ada = user(service, acme, "ada@acme.com")
    child, parent = group(service, acme, "Child"), group(service, acme, "Parent")
    service.patch(acme, GROUP, child, add(ada), None)
    service.patch(acme, GROUP, parent, add(child), None)
    assert members(service, acme, parent) == {child: "Group"}
    assert members(service, acme, child) == {ada: "User"}
    assert found(service, acme, GROUP, f'members[value eq "{child}"]') == [parent]
    assert found(service, acme, GROUP, f'members.value eq "{ada}"') == [child]
    assert [g["value"] for g in groups_of(service, acme, ada)] == [child]


@pytest.mark.parametrize("shape", ["add", "add-among-others", "replace", "put"])
def test_a_group_cannot_be_a_member_of_itself(service: ResourceService, acme: Principal, shape: str) -> None:
    """Self-membership is refused (400 invalidValue) in every shape; nothing changes."""
    ada = user(service, acme, "ada@acme.com")
    gid = group(service, acme, "Narcissus")
    service.patch(acme, GROUP, gid, add(ada), None)
    before = snapshot(service, acme, gid)
    attempt = {
        "add": lambda: service.patch(acme, GROUP, gid, add(gid), None),
        "add-among-others": lambda: service.patch(acme, GROUP, gid, add(ada, gid), None),
        "replace": lambda: service.patch(acme, GROUP, gid, ops(
            {"op": "replace", "path": "members", "value": [{"value": gid}]}), None),
        "put": lambda: service.replace(acme, GROUP, gid, {"displayName": "Narcissus", "members": [
            {"value": ada}, {"value": gid}]}, None),
    }[shape]
    with pytest.raises(BadRequest) as raised:
        attempt()
    assert raised.value.scim_type == "invalidValue"
    assert snapshot(service, acme, gid) == before


def test_deleting_a_member_group_removes_it_from_its_parent(service: ResourceService, acme: Principal,
                                                            db: Database) -> None:
    """A deleted child group leaves its parent's members; both tombstone sides are recorded."""
    ada = user(service, acme, "ada@acme.com")
    child, parent = group(service, acme, "Child"), group(service, acme, "Parent")
    service.patch(acme, GROUP, child, add(ada), None)
    service.patch(acme, GROUP, parent, add(child, ada), None)
    service.delete(acme, GROUP, child, None)
    assert members(service, acme, parent) == {ada: "User"}
    assert [g["value"] for g in groups_of(service, acme, ada)] == [parent]
    former = tombstone(db, child)["memberships"]
    assert sorted((m.get("group", ""), m.get("member", ""), m.get("type", "")) for m in former) == sorted(
        [(parent, "", ""), ("", ada, "User")])


# -- a user's `groups` -----------------------------------------------------------------------


def test_user_groups_lists_its_direct_groups_with_current_names(service: ResourceService, acme: Principal) -> None:
    """`groups` holds `{value, display}` for each direct group, follows renames and removals,
    and is empty for a user in no group; it is never written through the user."""
    ada, bob = user(service, acme, "ada@acme.com"), user(service, acme, "bob@acme.com")
    sales, ops_group = group(service, acme, "Sales"), group(service, acme, 'R&D "Core"')
    service.patch(acme, GROUP, sales, add(ada, bob), None)
    service.patch(acme, GROUP, ops_group, add(ada), None)
    assert sorted((g["value"], g["display"]) for g in groups_of(service, acme, ada)) == sorted(
        [(sales, "Sales"), (ops_group, 'R&D "Core"')])
    service.patch(acme, GROUP, sales, ops({"op": "replace", "path": "displayName", "value": "Sales EMEA"}), None)
    service.patch(acme, GROUP, ops_group, ops({"op": "remove", "path": f'members[value eq "{ada}"]'}), None)
    assert [(g["value"], g["display"]) for g in groups_of(service, acme, ada)] == [(sales, "Sales EMEA")]
    service.patch(acme, GROUP, sales, ops({"op": "remove", "path": "members", "value": [{"value": bob}]}), None)
    assert groups_of(service, acme, bob) == []
    assert found(service, acme, USER, f'groups.value eq "{sales}"') == [ada]


def test_user_groups_cannot_be_written_through_the_user(service: ResourceService, acme: Principal) -> None:
    """`groups` is read-only on the user: a PATCH of it is `400 mutability`, with a path or
    without, and never creates a membership."""
    ada = user(service, acme, "ada@acme.com")
    sales = group(service, acme, "Sales")
    for operation in ({"op": "add", "path": "groups", "value": [{"value": sales}]},
                      {"op": "replace", "value": {"groups": [{"value": sales}]}}):
        with pytest.raises(BadRequest) as refused:
            service.patch(acme, USER, ada, ops(operation), None)
        assert refused.value.scim_type == "mutability"
    assert members(service, acme, sales) == {}
    assert groups_of(service, acme, ada) == []


# -- disable, delete, tombstones ---------------------------------------------------------------


@pytest.mark.parametrize("disable", [
    pytest.param({"op": "Replace", "path": "active", "value": "False"}, id="entra-legacy"),
    pytest.param({"op": "replace", "path": "active", "value": False}, id="entra-flagged"),
    pytest.param({"op": "replace", "value": {"active": False}}, id="okta-pathless"),
])
def test_disabling_a_user_keeps_its_memberships(service: ResourceService, acme: Principal,
                                                disable: dict[str, Any]) -> None:
    """Case 28: disable (each dialect) and re-enable leave every membership in place, and the
    group's version does not move."""
    ada = user(service, acme, "ada@acme.com")
    sales = group(service, acme, "Sales")
    service.patch(acme, GROUP, sales, add(ada), None)
    version = service.get(acme, GROUP, sales).version
    service.patch(acme, USER, ada, ops(disable), None)
    assert service.get(acme, USER, ada).doc["active"] is False
    assert members(service, acme, sales) == {ada: "User"}
    assert [g["value"] for g in groups_of(service, acme, ada)] == [sales]
    service.patch(acme, USER, ada, ops({"op": "replace", "path": "active", "value": True}), None)
    assert members(service, acme, sales) == {ada: "User"}
    assert service.get(acme, GROUP, sales).version == version


def test_deleting_a_user_removes_its_memberships_and_the_tombstone_keeps_them(
        service: ResourceService, acme: Principal, db: Database) -> None:
    """Case 33: after DELETE the user is in no group's members and no member filter matches it,
    each group got a new version; the tombstone lists the groups it was in."""
    ada, bob = user(service, acme, "ada@acme.com"), user(service, acme, "bob@acme.com")
    g1, g2, g3 = (group(service, acme, name) for name in ("One", "Two", "Three"))
    service.patch(acme, GROUP, g1, add(ada, bob), None)
    service.patch(acme, GROUP, g2, add(ada), None)
    service.patch(acme, GROUP, g3, add(bob), None)
    service.delete(acme, USER, ada, None)
    assert members(service, acme, g1) == {bob: "User"}
    assert members(service, acme, g2) == {}
    assert found(service, acme, GROUP, f'members.value eq "{ada}"') == []
    assert found(service, acme, GROUP, f'members[value eq "{bob}"]') == [g1, g3] or sorted(
        found(service, acme, GROUP, f'members[value eq "{bob}"]')) == sorted([g1, g3])
    with pytest.raises(NotFound):
        service.get(acme, USER, ada)
    row = tombstone(db, ada)
    assert row["type"] == "User" and row["name"] == "ada@acme.com"
    assert sorted(m["group"] for m in row["memberships"]) == sorted([g1, g2])
    assert all(m["ended_at"] == row["deleted_at"] for m in row["memberships"])
    again = user(service, acme, "ada@acme.com")
    assert groups_of(service, acme, again) == []


def test_deleting_a_group_leaves_its_users_untouched_and_the_tombstone_keeps_its_members(
        service: ResourceService, acme: Principal, db: Database) -> None:
    """Case 46: users of a deleted group keep their documents and versions and their other
    groups; their `groups` no longer lists it; the group's tombstone lists its former members."""
    ada, bob = user(service, acme, "ada@acme.com"), user(service, acme, "bob@acme.com")
    doomed, kept = group(service, acme, "Doomed"), group(service, acme, "Kept")
    service.patch(acme, GROUP, doomed, add(ada, bob), None)
    service.patch(acme, GROUP, kept, add(ada), None)
    users_before = {u: service.get(acme, USER, u) for u in (ada, bob)}
    service.delete(acme, GROUP, doomed, None)
    for u, before in users_before.items():
        assert service.get(acme, USER, u) == before
    assert [g["value"] for g in groups_of(service, acme, ada)] == [kept]
    assert groups_of(service, acme, bob) == []
    assert members(service, acme, kept) == {ada: "User"}
    assert found(service, acme, GROUP, 'displayName eq "doomed"') == []
    with pytest.raises(NotFound):
        service.patch(acme, GROUP, doomed, add(ada), None)
    row = tombstone(db, doomed)
    assert row["type"] == "Group" and row["name"] == "Doomed"
    assert sorted((m["member"], m["type"]) for m in row["memberships"]) == sorted([(ada, "User"), (bob, "User")])
    assert tombstone(db, doomed)["memberships"] and group(service, acme, "doomed")


def test_a_membership_ended_before_deletion_is_not_in_the_tombstone(service: ResourceService, acme: Principal,
                                                                    db: Database) -> None:
    """The tombstone keeps the memberships the user had when deleted, not earlier ones."""
    ada = user(service, acme, "ada@acme.com")
    left, stayed = group(service, acme, "Left"), group(service, acme, "Stayed")
    service.patch(acme, GROUP, left, add(ada), None)
    service.patch(acme, GROUP, stayed, add(ada), None)
    service.patch(acme, GROUP, left, ops({"op": "remove", "path": f'members[value eq "{ada}"]'}), None)
    service.delete(acme, USER, ada, None)
    assert [m["group"] for m in tombstone(db, ada)["memberships"]] == [stayed]


def test_tombstones_of_another_tenant_are_not_listed(service: ResourceService, acme: Principal,
                                                     globex: Principal, db: Database) -> None:
    """Listing one tenant's tombstones shows only its own deletions and memberships."""
    ada, eve = user(service, acme, "ada@acme.com"), user(service, globex, "eve@globex.com")
    mine, theirs = group(service, acme, "Mine"), group(service, globex, "Theirs")
    service.patch(acme, GROUP, mine, add(ada), None)
    service.patch(globex, GROUP, theirs, add(eve), None)
    service.delete(acme, USER, ada, None)
    service.delete(globex, USER, eve, None)
    listed = TombstoneService(db).list("acme", None)
    assert [row["id"] for row in listed] == [ada]
    assert listed[0]["memberships"] == [{"group": mine, "ended_at": listed[0]["deleted_at"]}]


def test_purging_tombstones_forgets_their_former_memberships(service: ResourceService, acme: Principal,
                                                             db: Database) -> None:
    """`tombstones purge` destroys the tombstone and what it kept; live memberships stay."""
    ada, bob = user(service, acme, "ada@acme.com"), user(service, acme, "bob@acme.com")
    sales = group(service, acme, "Sales")
    service.patch(acme, GROUP, sales, add(ada, bob), None)
    service.delete(acme, USER, ada, None)
    tombstones = TombstoneService(db)
    assert tombstones.purge("acme", "9999-12-31T00:00:00Z") == 1
    assert tombstones.list("acme", None) == []
    assert members(service, acme, sales) == {bob: "User"}


def test_deleting_a_member_gives_each_of_its_groups_a_new_version(service: ResourceService, acme: Principal) -> None:
    """A member's deletion is a membership change of every group it was in (user or nested
    group): their `meta.version` and `lastModified` move; other groups' do not."""
    ada = user(service, acme, "ada@acme.com")
    child, parent, other = group(service, acme, "Child"), group(service, acme, "Parent"), group(service, acme, "Other")
    service.patch(acme, GROUP, child, add(ada), None)
    service.patch(acme, GROUP, parent, add(ada, child), None)
    before = {g: service.get(acme, GROUP, g) for g in (child, parent, other)}
    service.delete(acme, USER, ada, None)
    for g in (child, parent):
        after = service.get(acme, GROUP, g)
        assert after.version == before[g].version + 1
        assert after.last_modified > before[g].last_modified
    assert service.get(acme, GROUP, other) == before[other]
    service.delete(acme, GROUP, child, None)
    assert service.get(acme, GROUP, parent).version == before[parent].version + 2
