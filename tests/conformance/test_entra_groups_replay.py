"""Replays of the Group requests Microsoft Entra ID's provisioning service sends (docs §1.5, §2),
in both PATCH dialects — the default one (capitalised ops, ``Remove members`` with a value list,
``{"$ref":null,"value":…}`` members) and ``aadOptscim062020`` (lowercase ops,
``remove members[value eq "id"]``) — through the real HTTP app.

Each test names its case in "Test cases an Entra emulator must replay" of
docs/entra-scim-requests.md. Every write is checked with follow-up reads: Entra's own
(``excludedAttributes=members``, ``displayName eq``, the historic membership check) and a full
GET of the group, because Entra diff-compares what it reads back."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from identity_sync.storage import memberships as membership_store
from tests.conformance import (
    CORE,
    LIST_RESPONSE,
    SCIM_JSON,
    assert_scim_error,
    entra_filter,
    fetch,
    patch_body,
)
from tests.conftest import ScimClient

GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ADSCIM_GROUP = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"


def entra_group(display_name: str, **extra: Any) -> dict[str, Any]:
    """The create body of docs §1.5: core + ADSCIM schema URNs, externalId, meta, no members."""
    body: dict[str, Any] = {
        "schemas": [GROUP, ADSCIM_GROUP],
        "externalId": str(uuid.uuid5(uuid.NAMESPACE_URL, display_name)),
        "displayName": display_name,
        "meta": {"resourceType": "Group"},
    }
    body.update(extra)
    return body


def create_group(scim: ScimClient, display_name: str, **extra: Any) -> dict[str, Any]:
    response = scim.post("/Groups", entra_group(display_name, **extra))
    assert response.status_code == 201, response.text
    return response.json()


def create_user(scim: ScimClient, user_name: str) -> str:
    body = {"schemas": [CORE], "userName": user_name, "externalId": f"ext-{user_name}", "active": True}
    response = scim.post("/Users", body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def entra_members(*member_ids: str) -> list[dict[str, Any]]:
    """Members as Entra writes them: ``{"$ref": null, "value": id}``."""
    return [{"$ref": None, "value": member_id} for member_id in member_ids]


def patch_group(scim: ScimClient, group_id: str, *operations: dict[str, Any], query: str = "") -> Any:
    """PATCH /Groups/{id}, which Entra expects to answer 204 with no body (never the member list)."""
    response = scim.patch(f"/Groups/{group_id}{query}", patch_body(*operations))
    assert response.status_code == 204, response.text
    assert response.content == b""
    return response


def group(scim: ScimClient, group_id: str, query: str = "") -> dict[str, Any]:
    response = scim.get(f"/Groups/{group_id}{query}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(SCIM_JSON)
    return response.json()


def member_ids(scim: ScimClient, group_id: str) -> set[str]:
    """The members a full GET /Groups/{id} shows (and each must be shown once)."""
    members = group(scim, group_id).get("members", [])
    values = [member["value"] for member in members]
    assert len(values) == len(set(values)), members
    return set(values)


def groups_query(scim: ScimClient, raw_query: str) -> dict[str, Any]:
    response = scim.get(f"/Groups?{raw_query}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(SCIM_JSON)
    body = response.json()
    assert body["schemas"] == [LIST_RESPONSE]
    return body


def group_ids(scim: ScimClient, expression: str, extra: str = "&excludedAttributes=members") -> list[str]:
    return [resource["id"] for resource in groups_query(scim, entra_filter(expression) + extra)["Resources"]]


def is_member(scim: ScimClient, group_id: str, user_id: str) -> bool:
    """Entra's historic membership check (case 45): 0 or 1 result holding only ``id``."""
    body = groups_query(scim, entra_filter(f'id eq "{group_id}" and members eq "{user_id}"') + "&attributes=id")
    assert body["totalResults"] in (0, 1)
    if body["Resources"]:
        assert body["Resources"] == [{"schemas": [GROUP], "id": group_id}]
    return bool(body["Resources"])


# -- probe, create, uniqueness -----------------------------------------------------------------


def test_group_probe_for_a_random_name_is_an_empty_list(scim: ScimClient) -> None:
    """Case 3: `GET /Groups?excludedAttributes=members&filter=displayName eq "<guid>"`."""
    create_group(scim, "Existing")
    body = groups_query(scim, "excludedAttributes=members&" + entra_filter(f'displayName eq "{uuid.uuid4()}"'))
    assert body["totalResults"] == 0 and body["Resources"] == []
    assert body["startIndex"] == 1 and body["itemsPerPage"] == 0


def test_group_create_tolerates_the_adscim_schema_and_has_no_members(scim: ScimClient) -> None:
    """Case 34 (and 50, Group schema): core + ADSCIM URNs, externalId, meta → 201, `members: []`,
    externalId and meta as for users; the ADSCIM URN is not echoed."""
    response = scim.post("/Groups", entra_group("Sales", externalId="8aa1a5c0-0000-4000-8000-000000000001"))
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith(SCIM_JSON)
    created = response.json()
    assert created["id"] and created["displayName"] == "Sales"
    assert created["externalId"] == "8aa1a5c0-0000-4000-8000-000000000001"
    assert created.get("members", []) == []
    assert created["schemas"] == [GROUP]
    meta = created["meta"]
    assert meta["resourceType"] == "Group"
    assert meta["location"].endswith(f"/Groups/{created['id']}")
    assert response.headers["location"] == meta["location"]
    assert meta["created"] == meta["lastModified"] and meta["version"]
    assert response.headers["etag"] == meta["version"]
    assert group(scim, created["id"], "?excludedAttributes=members") == {
        key: value for key, value in created.items() if key != "members"}
    assert group_ids(scim, 'externalId eq "8aa1a5c0-0000-4000-8000-000000000001"') == [created["id"]]


def test_duplicate_group_name_in_other_letter_case_is_a_409_uniqueness(scim: ScimClient) -> None:
    """Case 35: Entra requires displayName unique per tenant, compared case-insensitively."""
    first = create_group(scim, "Engineering")
    assert_scim_error(scim.post("/Groups", entra_group("ENGINEERING")), 409, "uniqueness")
    assert_scim_error(scim.post("/Groups", entra_group("engineering", members=[])), 409, "uniqueness")
    assert group_ids(scim, 'displayName eq "engineering"') == [first["id"]]
    assert groups_query(scim, "startIndex=1&count=100")["totalResults"] == 1


def test_same_group_name_in_two_tenants_is_allowed(scim: ScimClient, other_scim: ScimClient) -> None:
    """Uniqueness is per tenant: another tenant may have a group of the same name."""
    mine = create_group(scim, "Everyone")
    response = other_scim.post("/Groups", entra_group("everyone"))
    assert response.status_code == 201, response.text
    assert group_ids(scim, 'displayName eq "EVERYONE"') == [mine["id"]]
    assert_scim_error(scim.get(f"/Groups/{response.json()['id']}"), 404)


# -- reads without members ------------------------------------------------------------------------


def test_get_with_excluded_members_has_no_members_key_even_when_the_group_has_members(scim: ScimClient) -> None:
    """Case 36: `GET /Groups/{id}?excludedAttributes=members` → 200, no `members` key."""
    users = [create_user(scim, f"m{i}@contoso.com") for i in range(3)]
    created = create_group(scim, "Populated")
    patch_group(scim, created["id"], {"op": "Add", "path": "members", "value": entra_members(*users)})
    got = group(scim, created["id"], "?excludedAttributes=members")
    assert "members" not in got
    assert got["displayName"] == "Populated" and got["id"] == created["id"]
    assert member_ids(scim, created["id"]) == set(users)


def test_query_by_lowercase_name_finds_one_group_without_members(scim: ScimClient) -> None:
    """Case 37: `GET /Groups?excludedAttributes=members&filter=displayName eq "<lowercase>"`."""
    user = create_user(scim, "m@contoso.com")
    created = create_group(scim, "Finance Team")
    create_group(scim, "Finance")
    patch_group(scim, created["id"], {"op": "Add", "path": "members", "value": entra_members(user)})
    body = groups_query(scim, "excludedAttributes=members&" + entra_filter('displayName eq "finance team"'))
    assert body["totalResults"] == 1
    assert [resource["id"] for resource in body["Resources"]] == [created["id"]]
    assert "members" not in body["Resources"][0]
    assert body["Resources"][0]["displayName"] == "Finance Team"


def test_entra_traffic_never_loads_a_member_list(scim: ScimClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cases 36–41 with `excludedAttributes=members`: probe, get, query, rename, add and remove
    in both dialects never read the whole member list (O(members named), whatever the size)."""
    users = [create_user(scim, f"lazy{i}@contoso.com") for i in range(3)]
    created = create_group(scim, "Lazy")

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the member list was loaded")

    for name in ("members_of", "member_page"):
        if hasattr(membership_store, name):
            monkeypatch.setattr(membership_store, name, forbidden)
    gid = created["id"]
    patch_group(scim, gid, {"op": "Add", "path": "members", "value": entra_members(*users)})
    patch_group(scim, gid, {"op": "Replace", "path": "displayName", "value": "Lazy 2"})
    patch_group(scim, gid, {"op": "Remove", "path": "members", "value": [{"$ref": None, "value": users[0]}]})
    patch_group(scim, gid, {"op": "remove", "path": f'members[value eq "{users[1]}"]'})
    assert "members" not in group(scim, gid, "?excludedAttributes=members")
    assert group_ids(scim, 'displayName eq "lazy 2"') == [gid]
    assert is_member(scim, gid, users[2]) and not is_member(scim, gid, users[0])
    monkeypatch.undo()
    assert member_ids(scim, gid) == {users[2]}


# -- rename -------------------------------------------------------------------------------------


@pytest.mark.parametrize("operation", [
    pytest.param({"op": "Replace", "path": "displayName", "value": "Renamed"}, id="legacy"),
    pytest.param({"op": "replace", "value": {"displayName": "Renamed"}}, id="flagged-pathless"),
])
def test_group_rename_answers_204_and_the_new_name_is_queryable(scim: ScimClient, operation: dict[str, Any]) -> None:
    """Case 38: PATCH `Replace displayName` → 204; new name found, old name not; members kept."""
    user = create_user(scim, "stays@contoso.com")
    created = create_group(scim, "Original")
    patch_group(scim, created["id"], {"op": "Add", "path": "members", "value": entra_members(user)})
    patch_group(scim, created["id"], operation)
    assert group_ids(scim, 'displayName eq "renamed"') == [created["id"]]
    assert group_ids(scim, 'displayName eq "Original"') == []
    assert member_ids(scim, created["id"]) == {user}
    assert fetch(scim, user)["groups"][0]["display"] == "Renamed"


def test_group_rename_onto_an_existing_name_is_409_and_changes_nothing(scim: ScimClient) -> None:
    """Case 35 via PATCH: renaming onto another group's name (any case) is a 409 uniqueness."""
    create_group(scim, "Taken")
    created = create_group(scim, "Free")
    before = group(scim, created["id"])
    response = scim.patch(f"/Groups/{created['id']}",
                          patch_body({"op": "Replace", "path": "displayName", "value": "TAKEN"}))
    assert_scim_error(response, 409, "uniqueness")
    assert group(scim, created["id"]) == before


# -- membership: add, remove (both dialects), remove all ----------------------------------------


def test_add_several_members_in_one_patch_is_idempotent(scim: ScimClient) -> None:
    """Case 39: `Add members [{"$ref":null,"value":u1},{"$ref":null,"value":u2}]` → 204;
    repeating it → 204, no duplicates; an overlapping add adds only the new member."""
    u1, u2, u3 = (create_user(scim, f"u{i}@contoso.com") for i in (1, 2, 3))
    created = create_group(scim, "Adders")
    add = {"op": "Add", "path": "members", "value": entra_members(u1, u2)}
    patch_group(scim, created["id"], add)
    assert member_ids(scim, created["id"]) == {u1, u2}
    patch_group(scim, created["id"], add)
    assert member_ids(scim, created["id"]) == {u1, u2}
    patch_group(scim, created["id"], {"op": "add", "path": "members", "value": entra_members(u2, u3)})
    full = group(scim, created["id"])
    assert sorted(m["value"] for m in full["members"]) == sorted([u1, u2, u3])
    for member in full["members"]:
        assert member["type"] == "User"
        assert member["$ref"].endswith(f"/Users/{member['value']}")
    assert all(is_member(scim, created["id"], user) for user in (u1, u2, u3))


def test_legacy_remove_with_a_value_list_removes_only_those_members(scim: ScimClient) -> None:
    """Case 40 (and §1.5's "classic Entra incident"): `Remove path:"members"` with a value list
    removes exactly those ids — never all members."""
    u1, u2, u3 = (create_user(scim, f"u{i}@contoso.com") for i in (1, 2, 3))
    created = create_group(scim, "Legacy")
    patch_group(scim, created["id"], {"op": "Add", "path": "members", "value": entra_members(u1, u2, u3)})
    patch_group(scim, created["id"], {"op": "Remove", "path": "members", "value": [{"value": u1}]})
    assert member_ids(scim, created["id"]) == {u2, u3}
    patch_group(scim, created["id"], {"op": "Remove", "path": "members", "value": [{"$ref": None, "value": u3}]})
    assert member_ids(scim, created["id"]) == {u2}
    assert not is_member(scim, created["id"], u1) and is_member(scim, created["id"], u2)


def test_legacy_remove_of_several_members_and_of_non_members(scim: ScimClient) -> None:
    """Case 40: several ids in one Remove; an id that is not (or no longer) a member is ignored;
    an empty value list removes nobody."""
    u1, u2, u3, outsider = (create_user(scim, f"u{i}@contoso.com") for i in (1, 2, 3, 4))
    created = create_group(scim, "Several")
    patch_group(scim, created["id"], {"op": "Add", "path": "members", "value": entra_members(u1, u2, u3)})
    patch_group(scim, created["id"], {"op": "Remove", "path": "members",
                                      "value": entra_members(u1, u2, outsider, str(uuid.uuid4()))})
    assert member_ids(scim, created["id"]) == {u3}
    patch_group(scim, created["id"], {"op": "Remove", "path": "members", "value": []})
    assert member_ids(scim, created["id"]) == {u3}


def test_flagged_remove_with_a_value_filter_removes_only_that_member(scim: ScimClient) -> None:
    """Case 41: `{"op":"remove","path":"members[value eq \\"u2\\"]"}` (no value) → only u2 gone."""
    u1, u2, u3 = (create_user(scim, f"u{i}@contoso.com") for i in (1, 2, 3))
    created = create_group(scim, "Flagged")
    patch_group(scim, created["id"], {"op": "add", "path": "members", "value": entra_members(u1, u2, u3)})
    patch_group(scim, created["id"], {"op": "remove", "path": f'members[value eq "{u2}"]'})
    assert member_ids(scim, created["id"]) == {u1, u3}
    patch_group(scim, created["id"], {"op": "remove", "path": f'members[value eq "{uuid.uuid4()}"]'})
    assert member_ids(scim, created["id"]) == {u1, u3}


@pytest.mark.parametrize("weird_id", ["it's-me", 'say "hi"', "back\\slash", "R&D"])
def test_flagged_remove_and_member_filters_with_quotes_in_the_id(scim: ScimClient, weird_id: str) -> None:
    """Case 41/54: ids containing `'`, an escaped `"` or `\\` in a member filter are taken
    literally: they match no member, remove nobody, and never raise a 500."""
    user = create_user(scim, "quoted@contoso.com")
    created = create_group(scim, 'R&D "Core"')
    patch_group(scim, created["id"], {"op": "Add", "path": "members", "value": entra_members(user)})
    escaped = weird_id.replace("\\", "\\\\").replace('"', '\\"')
    patch_group(scim, created["id"], {"op": "remove", "path": f'members[value eq "{escaped}"]'})
    assert member_ids(scim, created["id"]) == {user}
    assert group_ids(scim, f'members[value eq "{escaped}"]') == []
    assert group_ids(scim, f'members.value eq "{escaped}"') == []
    assert group_ids(scim, f'members[value eq "{user}"]') == [created["id"]]


def test_bare_remove_of_members_empties_the_group(scim: ScimClient) -> None:
    """Case 42: `{"op":"remove","path":"members"}` with no value → all members removed; the
    users themselves are untouched."""
    u1, u2 = create_user(scim, "u1@contoso.com"), create_user(scim, "u2@contoso.com")
    created = create_group(scim, "Emptied")
    patch_group(scim, created["id"], {"op": "Add", "path": "members", "value": entra_members(u1, u2)})
    patch_group(scim, created["id"], {"op": "Remove", "path": "members"})
    assert member_ids(scim, created["id"]) == set()
    assert fetch(scim, u1)["userName"] == "u1@contoso.com"
    assert "groups" not in fetch(scim, u2)


def test_both_dialects_in_sequence_on_one_group(scim: ScimClient) -> None:
    """Case 48 for groups: a flagged cycle and a legacy on-demand run alternate on one group."""
    users = [create_user(scim, f"d{i}@contoso.com") for i in range(5)]
    created = create_group(scim, "Dialects")
    patch_group(scim, created["id"], {"op": "Add", "path": "members", "value": entra_members(*users[:3])})
    patch_group(scim, created["id"], {"op": "remove", "path": f'members[value eq "{users[0]}"]'},
                {"op": "add", "path": "members", "value": entra_members(users[3])})
    patch_group(scim, created["id"], {"op": "Remove", "path": "members", "value": [{"value": users[1]}]},
                {"op": "Add", "path": "members", "value": entra_members(users[4])})
    assert member_ids(scim, created["id"]) == {users[2], users[3], users[4]}


def test_patch_with_attributes_answers_200_with_the_resource(scim: ScimClient) -> None:
    """Group PATCH answers 204 unless the client asks for the resource with `?attributes=…`."""
    user = create_user(scim, "asked@contoso.com")
    created = create_group(scim, "Asked")
    response = scim.patch(f"/Groups/{created['id']}?attributes=displayName",
                          patch_body({"op": "Add", "path": "members", "value": entra_members(user)}))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == created["id"] and body["displayName"] == "Asked"
    assert "members" not in body
    response = scim.patch(f"/Groups/{created['id']}?attributes=members",
                          patch_body({"op": "Replace", "path": "displayName", "value": "Asked 2"}))
    assert response.status_code == 200, response.text
    assert [m["value"] for m in response.json()["members"]] == [user]


# -- membership checks ------------------------------------------------------------------------


def test_historic_and_current_membership_checks(scim: ScimClient) -> None:
    """Case 45: `id eq "g" and members eq "u"` with `attributes=id`, `members.value eq "u"`,
    `members[value eq "u"]` → the group when u is a member, nothing otherwise."""
    member, outsider = create_user(scim, "in@contoso.com"), create_user(scim, "out@contoso.com")
    created = create_group(scim, "Checked")
    other = create_group(scim, "Other")
    patch_group(scim, created["id"], {"op": "Add", "path": "members", "value": entra_members(member)})
    assert is_member(scim, created["id"], member)
    assert not is_member(scim, created["id"], outsider)
    assert not is_member(scim, other["id"], member)
    for expression in (f'members.value eq "{member}"', f'members[value eq "{member}"]', f'members eq "{member}"'):
        assert group_ids(scim, expression) == [created["id"]], expression
    assert group_ids(scim, f'members[value eq "{outsider}"]') == []
    body = groups_query(scim, entra_filter(f'id eq "{created["id"]}" and members.value eq "{member}"')
                        + "&attributes=id")
    assert body["Resources"] == [{"schemas": [GROUP], "id": created["id"]}]


# -- integrity -----------------------------------------------------------------------------------


def test_adding_a_member_of_another_tenant_is_400_and_changes_nothing(scim: ScimClient,
                                                                     other_scim: ScimClient) -> None:
    """Members must exist in the same tenant: a cross-tenant id (alone or among valid ones, in
    an op after a rename) is 400 invalidValue and the whole PATCH changes nothing."""
    mine = create_user(scim, "mine@contoso.com")
    kept = create_user(scim, "kept@contoso.com")
    theirs = create_user(other_scim, "theirs@fabrikam.com")
    created = create_group(scim, "Guarded")
    patch_group(scim, created["id"], {"op": "Add", "path": "members", "value": entra_members(kept)})
    before = group(scim, created["id"])
    for operations in (
        [{"op": "Add", "path": "members", "value": entra_members(theirs)}],
        [{"op": "Add", "path": "members", "value": entra_members(mine, theirs)}],
        [{"op": "Replace", "path": "displayName", "value": "Hijacked"},
         {"op": "Remove", "path": "members", "value": [{"value": kept}]},
         {"op": "Add", "path": "members", "value": entra_members(mine, theirs)}],
        [{"op": "Add", "path": "members", "value": entra_members(str(uuid.uuid4()))}],
    ):
        response = scim.patch(f"/Groups/{created['id']}", patch_body(*operations))
        assert_scim_error(response, 400, "invalidValue")
        assert group(scim, created["id"]) == before
    assert not is_member(scim, created["id"], mine)
    assert group_ids(scim, f'members.value eq "{theirs}"') == []


def test_a_deleted_user_leaves_every_group_view(scim: ScimClient) -> None:
    """Case 33 (memberships part): deleting a user removes it from its groups' members, from
    member filters, and it cannot be added back by its old id."""
    leaver, stayer = create_user(scim, "leaver@contoso.com"), create_user(scim, "stayer@contoso.com")
    g1, g2 = create_group(scim, "One"), create_group(scim, "Two")
    for created in (g1, g2):
        patch_group(scim, created["id"], {"op": "Add", "path": "members", "value": entra_members(leaver, stayer)})
    assert scim.delete(f"/Users/{leaver}").status_code == 204
    for created in (g1, g2):
        assert member_ids(scim, created["id"]) == {stayer}
        assert not is_member(scim, created["id"], leaver)
    assert group_ids(scim, f'members.value eq "{leaver}"') == []
    response = scim.patch(f"/Groups/{g1['id']}", patch_body(
        {"op": "Add", "path": "members", "value": entra_members(leaver)}))
    assert_scim_error(response, 400, "invalidValue")


def test_disabled_user_keeps_its_memberships(scim: ScimClient) -> None:
    """Case 28: `Replace active "False"` then `"True"`/`true` → memberships preserved throughout."""
    user = create_user(scim, "sleeper@contoso.com")
    created = create_group(scim, "Kept")
    patch_group(scim, created["id"], {"op": "Add", "path": "members", "value": entra_members(user)})
    for op, value in (("Replace", "False"), ("Replace", "True"), ("replace", False), ("replace", True)):
        response = scim.patch(f"/Users/{user}", patch_body({"op": op, "path": "active", "value": value}))
        assert response.status_code in (200, 204), response.text
        assert member_ids(scim, created["id"]) == {user}
        assert [g["value"] for g in fetch(scim, user)["groups"]] == [created["id"]]


def test_group_delete_answers_204_and_leaves_users_untouched(scim: ScimClient) -> None:
    """Case 46: `DELETE /Groups/{id}` → 204; GET/PATCH/DELETE → 404; name filter → 0; members
    remain users, without that group in `groups`; the name can be reused."""
    u1, u2 = create_user(scim, "u1@contoso.com"), create_user(scim, "u2@contoso.com")
    doomed, kept = create_group(scim, "Doomed"), create_group(scim, "Kept")
    patch_group(scim, doomed["id"], {"op": "Add", "path": "members", "value": entra_members(u1, u2)})
    patch_group(scim, kept["id"], {"op": "Add", "path": "members", "value": entra_members(u1)})
    user_before = fetch(scim, u2)
    response = scim.delete(f"/Groups/{doomed['id']}")
    assert response.status_code == 204 and response.content == b""
    assert_scim_error(scim.get(f"/Groups/{doomed['id']}"), 404)
    assert_scim_error(scim.get(f"/Groups/{doomed['id']}?excludedAttributes=members"), 404)
    assert_scim_error(scim.patch(f"/Groups/{doomed['id']}", patch_body(
        {"op": "Add", "path": "members", "value": entra_members(u1)})), 404)
    assert_scim_error(scim.delete(f"/Groups/{doomed['id']}"), 404)
    assert group_ids(scim, 'displayName eq "doomed"') == []
    assert group_ids(scim, f'members.value eq "{u1}"') == [kept["id"]]
    assert [g["value"] for g in fetch(scim, u1)["groups"]] == [kept["id"]]
    after = fetch(scim, u2)
    assert "groups" not in after
    assert {k: v for k, v in after.items() if k != "groups"} == {
        k: v for k, v in user_before.items() if k != "groups"}
    again = create_group(scim, "DOOMED")
    assert again["id"] != doomed["id"] and member_ids(scim, again["id"]) == set()


# -- special characters, versions --------------------------------------------------------------


def test_special_characters_in_group_names(scim: ScimClient) -> None:
    """Case 54 (groups part): group `R&D "Core"` → create, filter (escaped quotes, any case),
    rename, membership add and removal all work; `groups.display` carries the name verbatim."""
    user = create_user(scim, "o'brien@x.com")
    created = create_group(scim, 'R&D "Core"')
    assert created["displayName"] == 'R&D "Core"'
    assert group_ids(scim, 'displayName eq "r&d \\"core\\""') == [created["id"]]
    assert groups_query(scim, "excludedAttributes=members&filter=displayName+eq+%22R%26D+%5C%22Core%5C%22%22"
                        )["totalResults"] == 1
    patch_group(scim, created["id"], {"op": "Add", "path": "members", "value": entra_members(user)})
    assert fetch(scim, user)["groups"][0]["display"] == 'R&D "Core"'
    patch_group(scim, created["id"], {"op": "remove", "path": f'members[value eq "{user}"]'})
    assert member_ids(scim, created["id"]) == set()
    patch_group(scim, created["id"], {"op": "Replace", "path": "displayName", "value": "O'Brien's <team> & co"})
    assert group_ids(scim, "displayName eq \"o'brien's <team> & co\"") == [created["id"]]
    assert_scim_error(scim.post("/Groups", entra_group("O'BRIEN'S <TEAM> & CO")), 409, "uniqueness")


def test_every_effective_membership_change_bumps_version_and_last_modified(scim: ScimClient) -> None:
    """Group `meta.version` and `lastModified` change on every membership change (Entra and
    If-Match clients rely on them); an idempotent re-add or a no-op remove changes neither."""
    u1, u2 = create_user(scim, "u1@contoso.com"), create_user(scim, "u2@contoso.com")
    created = create_group(scim, "Versioned")
    gid = created["id"]
    seen = [group(scim, gid, "?excludedAttributes=members")["meta"]]
    for operation in (
        {"op": "Add", "path": "members", "value": entra_members(u1, u2)},
        {"op": "Remove", "path": "members", "value": [{"value": u1}]},
        {"op": "remove", "path": f'members[value eq "{u2}"]'},
        {"op": "add", "path": "members", "value": entra_members(u1)},
        {"op": "Remove", "path": "members"},
    ):
        response = patch_group(scim, gid, operation)
        meta = group(scim, gid, "?excludedAttributes=members")["meta"]
        assert response.headers["etag"] == meta["version"]
        assert meta["version"] != seen[-1]["version"], operation
        assert meta["lastModified"] > seen[-1]["lastModified"], operation
        seen.append(meta)
    patch_group(scim, gid, {"op": "Add", "path": "members", "value": entra_members(u1)})
    stable = group(scim, gid, "?excludedAttributes=members")["meta"]
    assert stable["version"] != seen[-1]["version"]
    for no_op in ({"op": "Add", "path": "members", "value": entra_members(u1)},
                  {"op": "Remove", "path": "members", "value": [{"value": u2}]},
                  {"op": "remove", "path": f'members[value eq "{u2}"]'}):
        patch_group(scim, gid, no_op)
        assert group(scim, gid, "?excludedAttributes=members")["meta"] == stable, no_op


def test_unknown_group_id_is_a_scim_404(scim: ScimClient) -> None:
    """Case 13 for groups: GET, PATCH, DELETE of an unknown id → 404 SCIM error."""
    missing = str(uuid.uuid4())
    assert_scim_error(scim.get(f"/Groups/{missing}?excludedAttributes=members"), 404)
    assert_scim_error(scim.patch(f"/Groups/{missing}", patch_body(
        {"op": "Replace", "path": "displayName", "value": "x"})), 404)
    assert_scim_error(scim.delete(f"/Groups/{missing}"), 404)


def test_group_schema_is_discoverable(scim: ScimClient) -> None:
    """Case 50 (Group part): `/Schemas` lists the core Group schema with displayName and
    members (value, $ref, type); `/ResourceTypes` lists Group at `/Groups`."""
    response = scim.get("/Schemas")
    assert response.status_code == 200, response.text
    schemas = {schema["id"]: schema for schema in response.json()["Resources"]}
    attributes = {attribute["name"]: attribute for attribute in schemas[GROUP]["attributes"]}
    assert {"displayName", "members"} <= set(attributes)
    assert {"value", "$ref", "type"} <= {sub["name"] for sub in attributes["members"]["subAttributes"]}
    assert attributes["members"]["multiValued"] is True
    response = scim.get("/ResourceTypes")
    assert response.status_code == 200, response.text
    by_name = {resource["name"]: resource for resource in response.json()["Resources"]}
    assert by_name["Group"]["endpoint"] == "/Groups" and by_name["Group"]["schema"] == GROUP


def test_a_cached_group_is_not_served_stale_after_a_member_is_deleted(scim: ScimClient) -> None:
    """Case 33 + ETags: after a member user's DELETE, `If-None-Match` with the old ETag is not a
    304 — the group changed (new version, the member gone)."""
    leaver, stayer = create_user(scim, "leaver@contoso.com"), create_user(scim, "stayer@contoso.com")
    created = create_group(scim, "Cached")
    patch_group(scim, created["id"], {"op": "Add", "path": "members", "value": entra_members(leaver, stayer)})
    cached = scim.get(f"/Groups/{created['id']}")
    assert cached.status_code == 200
    assert scim.get(f"/Groups/{created['id']}", headers={"If-None-Match": cached.headers["etag"]}).status_code == 304
    assert scim.delete(f"/Users/{leaver}").status_code == 204
    fresh = scim.get(f"/Groups/{created['id']}", headers={"If-None-Match": cached.headers["etag"]})
    assert fresh.status_code == 200, fresh.text
    assert fresh.headers["etag"] != cached.headers["etag"]
    assert [m["value"] for m in fresh.json()["members"]] == [stayer]
