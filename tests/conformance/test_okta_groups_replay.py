"""Replays of Okta's Push Groups traffic (docs/entra-scim-requests.md §6.4): every request carries
``User-Agent: Okta SCIM Client 1.0.0``; groups are created as ``{"displayName","members":[]}``;
imported with ``GET /Groups?startIndex=1&count=100`` and read with ``GET /Groups/{id}`` (full
members); renamed with a path-less ``replace`` of ``{"id","displayName"}`` (sent with every
membership update); memberships changed by ``remove members[value eq "x"]`` + ``add members`` in
one request, or by a full ``replace members``; AIW apps PUT the whole group; unlinking deletes it.
Catalog cases 43, 44, 46 and 54, each checked with follow-up GETs."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conformance import CORE, LIST_RESPONSE, SCIM_JSON, assert_scim_error, patch_body
from tests.conftest import ScimClient

OKTA = {"User-Agent": "Okta SCIM Client 1.0.0"}
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


def okta_filter(expression: str) -> str:
    encoded = expression.replace("%", "%25").replace(" ", "%20").replace('"', "%22").replace("&", "%26")
    return f"filter={encoded}&startIndex=1&count=100"


def okta_user(scim: ScimClient, user_name: str) -> dict[str, str]:
    """An Okta-created user, returned as the ``{value, display}`` member Okta sends for it."""
    body = {"schemas": [CORE], "userName": user_name, "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "emails": [{"primary": True, "value": user_name, "type": "work"}], "displayName": user_name,
            "externalId": f"00u{uuid.uuid4().hex[:17]}", "groups": [], "password": "1mz050nq", "active": True}
    response = scim.post("/Users", body, headers=OKTA)
    assert response.status_code == 201, response.text
    return {"value": response.json()["id"], "display": user_name}


def okta_group(scim: ScimClient, display_name: str) -> dict[str, Any]:
    """Push Groups' create: `POST /Groups {"displayName","members":[]}` (no externalId)."""
    response = scim.post("/Groups", {"schemas": [GROUP], "displayName": display_name, "members": []}, headers=OKTA)
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith(SCIM_JSON)
    created = response.json()
    assert created["displayName"] == display_name and created.get("members", []) == []
    return created


def okta_patch(scim: ScimClient, group_id: str, *operations: dict[str, Any]) -> Any:
    response = scim.patch(f"/Groups/{group_id}", patch_body(*operations), headers=OKTA)
    assert response.status_code in (200, 204), response.text
    return response


def rename(group: dict[str, Any], display_name: str | None = None) -> dict[str, Any]:
    """The path-less replace Okta sends with every membership update."""
    return {"op": "replace", "value": {"id": group["id"], "displayName": display_name or group["displayName"]}}


def okta_get(scim: ScimClient, group_id: str) -> dict[str, Any]:
    """`GET /Groups/{id}` as Okta sends it: the full group, members included."""
    response = scim.get(f"/Groups/{group_id}", headers=OKTA)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(SCIM_JSON)
    body = response.json()
    assert body["id"] == group_id and body["schemas"] == [GROUP]
    return body


def members(scim: ScimClient, group_id: str) -> set[str]:
    listed = [member["value"] for member in okta_get(scim, group_id).get("members", [])]
    assert len(listed) == len(set(listed))
    return set(listed)


def okta_list(scim: ScimClient, raw_query: str = "startIndex=1&count=100") -> dict[str, Any]:
    response = scim.get(f"/Groups?{raw_query}", headers=OKTA)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["schemas"] == [LIST_RESPONSE]
    for key in ("totalResults", "startIndex", "itemsPerPage"):
        assert type(body[key]) is int
    return body


# -- create, import, read ----------------------------------------------------------------------


def test_push_group_create_and_duplicate(scim: ScimClient) -> None:
    """Push Groups create `{"displayName","members":[]}` → 201 with no members and no
    externalId; the same name in another case → 409 uniqueness."""
    created = okta_group(scim, "Okta Pushed")
    assert "externalId" not in created
    assert created["meta"]["resourceType"] == "Group"
    assert okta_get(scim, created["id"]).get("members", []) == []
    response = scim.post("/Groups", {"schemas": [GROUP], "displayName": "okta pushed", "members": []}, headers=OKTA)
    assert_scim_error(response, 409, "uniqueness")


def test_import_lists_groups_with_integer_paging_and_full_members(scim: ScimClient) -> None:
    """`GET /Groups?startIndex=1&count=100`, then the next page: stable order, integers, each
    group with its members; an empty tenant answers an empty list."""
    assert okta_list(scim)["Resources"] == []
    ada = okta_user(scim, "ada@example.com")
    groups = [okta_group(scim, f"Team {i:02d}") for i in range(5)]
    okta_patch(scim, groups[2]["id"], {"op": "add", "path": "members", "value": [ada]})
    body = okta_list(scim)
    assert body["totalResults"] == 5 and body["itemsPerPage"] == 5 and body["startIndex"] == 1
    listed = {resource["id"]: resource for resource in body["Resources"]}
    assert set(listed) == {g["id"] for g in groups}
    assert [m["value"] for m in listed[groups[2]["id"]]["members"]] == [ada["value"]]
    first, second = okta_list(scim, "startIndex=1&count=3"), okta_list(scim, "startIndex=4&count=3")
    assert first["itemsPerPage"] == 3 and second["itemsPerPage"] == 2 and second["startIndex"] == 4
    paged = [r["id"] for r in first["Resources"] + second["Resources"]]
    assert sorted(paged) == sorted(listed) and len(set(paged)) == 5


def test_existence_check_by_display_name(scim: ScimClient) -> None:
    """Okta's `displayName eq` check, `%20`-encoded, with paging parameters; special characters."""
    created = okta_group(scim, 'R&D "Core"')
    body = okta_list(scim, okta_filter('displayName eq "r&d \\"core\\""'))
    assert [r["id"] for r in body["Resources"]] == [created["id"]]
    assert okta_list(scim, okta_filter(f'displayName eq "{uuid.uuid4()}"'))["Resources"] == []


def test_get_group_returns_every_member_with_type_and_ref(scim: ScimClient) -> None:
    """`GET /Groups/{id}`: members with `value`, `type` and a `$ref` to the member."""
    people = [okta_user(scim, f"p{i}@example.com") for i in range(4)]
    created = okta_group(scim, "Readers")
    okta_patch(scim, created["id"], rename(created), {"op": "add", "path": "members", "value": people})
    got = okta_get(scim, created["id"])
    assert sorted(m["value"] for m in got["members"]) == sorted(p["value"] for p in people)
    for member in got["members"]:
        assert member["type"] == "User" and member["$ref"].endswith(f"/Users/{member['value']}")
    assert got["displayName"] == "Readers"


# -- rename and membership updates --------------------------------------------------------------


def test_pathless_rename_with_id_in_the_value(scim: ScimClient) -> None:
    """Rename `PATCH {"op":"replace","value":{"id":…,"displayName":…}}` → new name, id kept;
    re-sent unchanged it changes nothing (no new version)."""
    created = okta_group(scim, "Old Name")
    okta_patch(scim, created["id"], rename(created, "New Name"))
    got = okta_get(scim, created["id"])
    assert got["displayName"] == "New Name" and got["id"] == created["id"]
    assert [r["id"] for r in okta_list(scim, okta_filter('displayName eq "new name"'))["Resources"]] == [created["id"]]
    okta_patch(scim, created["id"], rename(created, "New Name"))
    assert okta_get(scim, created["id"])["meta"]["version"] == got["meta"]["version"]


def test_pathless_rename_with_another_id_is_refused(scim: ScimClient) -> None:
    """`id` is read-only: a path-less replace carrying a different id must not change it."""
    created = okta_group(scim, "Fixed Id")
    response = scim.patch(f"/Groups/{created['id']}", patch_body(
        {"op": "replace", "value": {"id": str(uuid.uuid4()), "displayName": "Fixed Id"}}), headers=OKTA)
    assert response.status_code in (200, 204, 400), response.text
    assert okta_get(scim, created["id"])["id"] == created["id"]


def test_remove_and_add_in_one_request_applies_both_in_order(scim: ScimClient) -> None:
    """Case 43: rename + `remove members[value eq "u1"]` + `add members [{value,display}]` in one
    PATCH → u1 gone, u3 added, u2 untouched."""
    u1, u2, u3 = (okta_user(scim, f"u{i}@example.com") for i in (1, 2, 3))
    created = okta_group(scim, "Mixed")
    okta_patch(scim, created["id"], rename(created), {"op": "add", "path": "members", "value": [u1, u2]})
    okta_patch(scim, created["id"], rename(created),
               {"op": "remove", "path": f'members[value eq "{u1["value"]}"]'},
               {"op": "add", "path": "members", "value": [u3]})
    assert members(scim, created["id"]) == {u2["value"], u3["value"]}


def test_remove_then_re_add_of_the_same_member_keeps_it(scim: ScimClient) -> None:
    """Case 43, in order: removing and re-adding one member in one request leaves it a member;
    adding then removing leaves it out."""
    u1, u2 = okta_user(scim, "u1@example.com"), okta_user(scim, "u2@example.com")
    created = okta_group(scim, "Ordered")
    okta_patch(scim, created["id"], {"op": "add", "path": "members", "value": [u1]})
    okta_patch(scim, created["id"], {"op": "remove", "path": f'members[value eq "{u1["value"]}"]'},
               {"op": "add", "path": "members", "value": [u1]})
    assert members(scim, created["id"]) == {u1["value"]}
    okta_patch(scim, created["id"], {"op": "add", "path": "members", "value": [u2]},
               {"op": "remove", "path": f'members[value eq "{u2["value"]}"]'})
    assert members(scim, created["id"]) == {u1["value"]}


def test_mixed_request_with_a_cross_tenant_member_is_400_and_atomic(scim: ScimClient, other_scim: ScimClient) -> None:
    """Case 43, atomically: when the add names a member of another tenant, the whole request
    (rename and remove included) is refused with 400 invalidValue and nothing changes."""
    u1, u2 = okta_user(scim, "u1@example.com"), okta_user(scim, "u2@example.com")
    stranger = okta_user(other_scim, "stranger@example.com")
    created = okta_group(scim, "Atomic")
    okta_patch(scim, created["id"], {"op": "add", "path": "members", "value": [u1]})
    before = okta_get(scim, created["id"])
    response = scim.patch(f"/Groups/{created['id']}", patch_body(
        rename(created, "Renamed"),
        {"op": "remove", "path": f'members[value eq "{u1["value"]}"]'},
        {"op": "add", "path": "members", "value": [u2, stranger]}), headers=OKTA)
    assert_scim_error(response, 400, "invalidValue")
    assert okta_get(scim, created["id"]) == before


def test_full_replace_of_members_sets_exactly_the_list(scim: ScimClient) -> None:
    """Case 44: `{"op":"replace","path":"members","value":[…full list…]}` → membership equals
    the list (adds the new, drops the absent); `[]` empties the group."""
    people = [okta_user(scim, f"r{i}@example.com") for i in range(5)]
    created = okta_group(scim, "Replaced")
    okta_patch(scim, created["id"], {"op": "add", "path": "members", "value": people[:3]})
    okta_patch(scim, created["id"], rename(created), {"op": "replace", "path": "members", "value": people[2:]})
    assert members(scim, created["id"]) == {p["value"] for p in people[2:]}
    okta_patch(scim, created["id"], {"op": "replace", "path": "members", "value": people[2:]})
    assert members(scim, created["id"]) == {p["value"] for p in people[2:]}
    okta_patch(scim, created["id"], {"op": "replace", "path": "members", "value": []})
    assert members(scim, created["id"]) == set()


def test_full_replace_with_a_cross_tenant_member_is_400_and_changes_nothing(scim: ScimClient,
                                                                           other_scim: ScimClient) -> None:
    """Case 44 + integrity: a replace list naming another tenant's user is refused whole."""
    u1, u2 = okta_user(scim, "u1@example.com"), okta_user(scim, "u2@example.com")
    stranger = okta_user(other_scim, "stranger@example.com")
    created = okta_group(scim, "Replace Guarded")
    okta_patch(scim, created["id"], {"op": "add", "path": "members", "value": [u1]})
    before = okta_get(scim, created["id"])
    response = scim.patch(f"/Groups/{created['id']}", patch_body(
        {"op": "replace", "path": "members", "value": [u2, stranger]}), headers=OKTA)
    assert_scim_error(response, 400, "invalidValue")
    assert okta_get(scim, created["id"]) == before
    assert_scim_error(other_scim.get(f"/Groups/{created['id']}"), 404)


def test_put_with_members_sets_name_and_membership(scim: ScimClient) -> None:
    """AIW apps: GET then PUT the whole group with its members → 200 with the group; the
    membership equals the PUT's list; a PUT without `members` keeps them."""
    people = [okta_user(scim, f"w{i}@example.com") for i in range(4)]
    created = okta_group(scim, "Put Group")
    okta_patch(scim, created["id"], {"op": "add", "path": "members", "value": people[:2]})
    current = okta_get(scim, created["id"])
    body = {"schemas": [GROUP], "id": current["id"], "displayName": "Put Group 2",
            "members": [{"value": p["value"], "display": p["display"]} for p in people[1:]]}
    response = scim.put(f"/Groups/{created['id']}", body, headers=OKTA)
    assert response.status_code == 200, response.text
    assert response.json()["displayName"] == "Put Group 2"
    assert members(scim, created["id"]) == {p["value"] for p in people[1:]}
    response = scim.put(f"/Groups/{created['id']}", {"schemas": [GROUP], "displayName": "Put Group 3"},
                        headers=OKTA)
    assert response.status_code == 200, response.text
    got = okta_get(scim, created["id"])
    assert got["displayName"] == "Put Group 3"
    assert {m["value"] for m in got["members"]} == {p["value"] for p in people[1:]}


def test_put_with_a_cross_tenant_member_is_400_and_changes_nothing(scim: ScimClient, other_scim: ScimClient) -> None:
    """PUT + integrity: neither the name nor the membership changes."""
    u1 = okta_user(scim, "u1@example.com")
    stranger = okta_user(other_scim, "stranger@example.com")
    created = okta_group(scim, "Put Guarded")
    okta_patch(scim, created["id"], {"op": "add", "path": "members", "value": [u1]})
    before = okta_get(scim, created["id"])
    response = scim.put(f"/Groups/{created['id']}", {"schemas": [GROUP], "displayName": "Put Hijacked",
                                                      "members": [u1, stranger]}, headers=OKTA)
    assert_scim_error(response, 400, "invalidValue")
    assert okta_get(scim, created["id"]) == before


def test_put_onto_an_existing_name_is_409(scim: ScimClient) -> None:
    """PUT renaming onto another group's name (other case) → 409 uniqueness, nothing changed."""
    okta_group(scim, "First")
    created = okta_group(scim, "Second")
    before = okta_get(scim, created["id"])
    response = scim.put(f"/Groups/{created['id']}", {"schemas": [GROUP], "displayName": "FIRST", "members": []},
                        headers=OKTA)
    assert_scim_error(response, 409, "uniqueness")
    assert okta_get(scim, created["id"]) == before


def test_create_with_members_is_accepted_and_checked(scim: ScimClient, other_scim: ScimClient) -> None:
    """A create body with members (not Okta's usual, but allowed): members are set; with a
    cross-tenant member the create is refused and no group is left behind."""
    u1 = okta_user(scim, "u1@example.com")
    stranger = okta_user(other_scim, "stranger@example.com")
    response = scim.post("/Groups", {"schemas": [GROUP], "displayName": "Born Full", "members": [u1, stranger]},
                         headers=OKTA)
    assert_scim_error(response, 400, "invalidValue")
    assert okta_list(scim, okta_filter('displayName eq "Born Full"'))["totalResults"] == 0
    response = scim.post("/Groups", {"schemas": [GROUP], "displayName": "Born Full", "members": [u1]},
                         headers=OKTA)
    assert response.status_code == 201, response.text
    assert members(scim, response.json()["id"]) == {u1["value"]}


# -- special characters, unlink ------------------------------------------------------------------


@pytest.mark.parametrize("weird_id", ["it's", 'a"b', "x\\y"])
def test_remove_by_filter_with_quotes_in_the_id_removes_nobody(scim: ScimClient, weird_id: str) -> None:
    """Case 54: an escaped id with `'`, `"` or `\\` in `members[value eq …]` matches no member."""
    u1 = okta_user(scim, "o'brien@example.com")
    created = okta_group(scim, 'R&D "Core"')
    okta_patch(scim, created["id"], {"op": "add", "path": "members", "value": [u1]})
    escaped = weird_id.replace("\\", "\\\\").replace('"', '\\"')
    okta_patch(scim, created["id"], rename(created), {"op": "remove", "path": f'members[value eq "{escaped}"]'})
    assert members(scim, created["id"]) == {u1["value"]}
    assert okta_get(scim, created["id"])["displayName"] == 'R&D "Core"'


def test_unlink_deletes_the_group_and_leaves_its_users(scim: ScimClient) -> None:
    """Case 46 via Okta ("Unlink pushed group → delete"): 204; GET 404; import no longer lists
    it; its users remain, without the group in `groups`."""
    u1 = okta_user(scim, "u1@example.com")
    created = okta_group(scim, "Unlinked")
    okta_patch(scim, created["id"], {"op": "add", "path": "members", "value": [u1]})
    response = scim.delete(f"/Groups/{created['id']}", headers=OKTA)
    assert response.status_code == 204
    assert_scim_error(scim.get(f"/Groups/{created['id']}", headers=OKTA), 404)
    assert okta_list(scim)["Resources"] == []
    user = scim.get(f"/Users/{u1['value']}", headers=OKTA)
    assert user.status_code == 200 and "groups" not in user.json()


def test_deactivated_user_stays_a_member(scim: ScimClient) -> None:
    """Okta never deletes users: a path-less `{"active": false}` keeps the memberships."""
    u1 = okta_user(scim, "u1@example.com")
    created = okta_group(scim, "Sticky")
    okta_patch(scim, created["id"], {"op": "add", "path": "members", "value": [u1]})
    response = scim.patch(f"/Users/{u1['value']}", patch_body({"op": "replace", "value": {"active": False}}),
                          headers=OKTA)
    assert response.status_code in (200, 204), response.text
    assert members(scim, created["id"]) == {u1["value"]}
    user = scim.get(f"/Users/{u1['value']}", headers=OKTA).json()
    assert user["active"] is False and [g["value"] for g in user["groups"]] == [created["id"]]
