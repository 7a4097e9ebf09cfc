"""Replays of the requests Microsoft Entra ID's provisioning service sends, in both PATCH dialects
(default/legacy: ``"op":"Replace"``, ``"False"``; ``aadOptscim062020``: lowercase ops, booleans,
path-less replace with dotted and URN keys), through the real HTTP app.

Each test names its case in the list "Test cases an Entra emulator must replay" of
docs/entra-scim-requests.md. Every write is checked with a follow-up GET (and the filter lookups
Entra would make), because Entra diff-compares what it reads back."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from starlette.testclient import TestClient

from identity_sync.config import Settings
from identity_sync.storage.db import Database
from identity_sync.web.app import create_app
from tests.conformance import (
    CORE,
    ENTERPRISE,
    GLOBALRELAY,
    LIST_RESPONSE,
    SCIM_JSON,
    assert_scim_error,
    entra_filter,
    fetch,
    ids,
    patch_body,
    query,
)
from tests.conftest import ScimClient

ADSCIM_USER = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/User"
#: The typo in an old Microsoft sample: no colon between "2.0" and "User".
TYPO_ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0User"


def entra_user(user_name: str, **extra: Any) -> dict[str, Any]:
    """The create body of docs §1.4c."""
    body: dict[str, Any] = {
        "schemas": [CORE, ENTERPRISE],
        "externalId": f"ext-{user_name}",
        "userName": user_name,
        "active": True,
        "emails": [{"primary": True, "type": "work", "value": user_name}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "Given Family", "familyName": "Family", "givenName": "Given"},
        "roles": [],
    }
    body.update(extra)
    return body


def create(scim: ScimClient, user_name: str, **extra: Any) -> dict[str, Any]:
    response = scim.post("/Users", entra_user(user_name, **extra))
    assert response.status_code == 201, response.text
    return response.json()


def patch_ok(scim: ScimClient, user_id: str, *operations: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    response = scim.patch(f"/Users/{user_id}", patch_body(*operations), **kwargs)
    assert response.status_code in (200, 204), response.text
    return fetch(scim, user_id)


def by_filter(scim: ScimClient, expression: str) -> list[str]:
    return ids(query(scim, entra_filter(expression)))


# -- connection and authentication -------------------------------------------------------------


def test_test_connection_without_user_agent_gets_an_empty_list_response(scim: ScimClient) -> None:
    """Case 1: the random-GUID probe, form-encoded, with no User-Agent header at all."""
    request = scim.http.build_request(
        "GET", f"{scim.base}/Users?filter=userName+eq+%22{uuid.uuid4()}%22",
        headers={"Authorization": f"Bearer {scim.token}"})
    del request.headers["user-agent"]
    assert "user-agent" not in request.headers
    response = scim.http.send(request)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(SCIM_JSON)
    assert response.json() == {
        "schemas": [LIST_RESPONSE], "totalResults": 0, "Resources": [], "startIndex": 1, "itemsPerPage": 0,
    }


def test_test_connection_on_externalid_matching_gets_an_empty_list_response(scim: ScimClient) -> None:
    """Case 2: the probe when externalId is the matching attribute."""
    create(scim, "someone@contoso.com")
    body = query(scim, entra_filter(f'externalId eq "{uuid.uuid4()}"'))
    assert body["totalResults"] == 0 and body["Resources"] == []


@pytest.mark.parametrize("authorization", [None, "Bearer idsync_not-a-real-token", "Basic dXNlcjpwYXNz", "Bearer "])
@pytest.mark.parametrize("method,path", [
    ("GET", "/Users?filter=userName+eq+%22x%22"), ("GET", "/Users/abc"), ("POST", "/Users"),
    ("PATCH", "/Users/abc"), ("DELETE", "/Users/abc"), ("GET", "/Schemas"),
])
def test_missing_or_invalid_bearer_is_a_scim_401(scim: ScimClient, authorization: str | None, method: str,
                                                 path: str) -> None:
    """Case 4: never HTML, always a SCIM error with status "401" and a WWW-Authenticate challenge."""
    headers = {"Content-Type": SCIM_JSON}
    if authorization is not None:
        headers["Authorization"] = authorization
    content = b'{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"x"}'
    response = scim.http.request(method, scim.base + path, headers=headers,
                                 content=content if method in ("POST", "PATCH") else None)
    assert_scim_error(response, 401)
    assert response.headers["www-authenticate"].lower().startswith("bearer")


def test_a_token_of_another_tenant_is_rejected(scim: ScimClient, other_scim: ScimClient) -> None:
    """Case 4: a valid token presented on another tenant's URL."""
    response = scim.get("/Users", headers={"Authorization": f"Bearer {other_scim.token}"})
    assert_scim_error(response, 401)


# -- create, match, get ------------------------------------------------------------------------


def test_create_tolerates_meta_empty_roles_nulls_and_unknown_schema_urns(scim: ScimClient) -> None:
    """Case 8: Entra's create body incl. meta, roles:[], null attributes, ADSCIM/typo URNs."""
    body = entra_user(
        "Test_User_1@contoso.com",
        schemas=[CORE, ENTERPRISE, GLOBALRELAY, ADSCIM_USER, TYPO_ENTERPRISE],
        addresses=None, phoneNumbers=None, title=None, nickName=None,
        **{ENTERPRISE: {"employeeNumber": "E-1", "manager": None, "department": None},
           GLOBALRELAY: {"proxyAddresses": ["SMTP:Test_User_1@contoso.com"], "extensionAttribute1": "x1"},
           ADSCIM_USER: {"something": "ignored"}},
    )
    response = scim.post("/Users", body)
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith(SCIM_JSON)
    created = response.json()
    assert created["id"]
    assert response.headers["location"] == created["meta"]["location"]
    assert created["meta"]["resourceType"] == "User"
    assert created["meta"]["location"].endswith(f"/Users/{created['id']}")
    got = fetch(scim, created["id"])
    assert got == created
    assert got["userName"] == "Test_User_1@contoso.com"
    assert got["externalId"] == "ext-Test_User_1@contoso.com"
    assert got["active"] is True
    assert got["emails"] == [{"primary": True, "type": "work", "value": "Test_User_1@contoso.com"}]
    assert got["name"] == {"formatted": "Given Family", "familyName": "Family", "givenName": "Given"}
    assert got[ENTERPRISE] == {"employeeNumber": "E-1"}
    assert got[GLOBALRELAY] == {"proxyAddresses": ["SMTP:Test_User_1@contoso.com"], "extensionAttribute1": "x1"}
    for absent in ("roles", "addresses", "phoneNumbers", "title", "nickName", ADSCIM_USER, TYPO_ENTERPRISE):
        assert absent not in got
    assert set(got["schemas"]) == {CORE, ENTERPRISE, GLOBALRELAY}


def test_duplicate_username_in_other_letter_case_is_a_409_uniqueness(scim: ScimClient) -> None:
    """Case 9: the validator's "Create Duplicate User": 201, then 409."""
    first = create(scim, "Dup.User@contoso.com")
    response = scim.post("/Users", entra_user("dup.user@CONTOSO.com"))
    assert_scim_error(response, 409, "uniqueness")
    assert by_filter(scim, 'userName eq "dup.user@contoso.com"') == [first["id"]]


def test_username_match_is_case_insensitive(scim: ScimClient) -> None:
    """Case 10: filter for an existing user with a different case."""
    user = create(scim, "Mixed.Case@Contoso.com")
    create(scim, "other@contoso.com")
    body = query(scim, entra_filter('userName eq "MIXED.CASE@CONTOSO.COM"'))
    assert body["totalResults"] == 1 and ids(body) == [user["id"]]
    assert body["Resources"][0] == fetch(scim, user["id"])


def test_work_email_filter_finds_the_user(scim: ScimClient) -> None:
    """Case 11: `emails[type eq "work"].value eq …`, the uniqueness attribute Entra may match on."""
    user = create(scim, "alice@contoso.com", emails=[
        {"type": "work", "value": "alice.work@x.com", "primary": True},
        {"type": "home", "value": "alice.home@x.com"}])
    create(scim, "bob@contoso.com", emails=[{"type": "home", "value": "alice.work@x.com"}])
    assert by_filter(scim, 'emails[type eq "work"].value eq "alice.work@x.com"') == [user["id"]]
    assert by_filter(scim, 'emails[type eq "work"].value eq "alice.home@x.com"') == []


def test_unquoted_legacy_filter_matches_like_the_quoted_one(scim: ScimClient) -> None:
    """Case 12: the historic `filter=externalId eq jyoung`."""
    user = create(scim, "jyoung@contoso.com", externalId="jyoung")
    assert ids(query(scim, "filter=externalId+eq+jyoung")) == [user["id"]]
    assert ids(query(scim, entra_filter('externalId eq "jyoung"'))) == [user["id"]]


def test_unknown_id_is_a_scim_404_for_get_patch_and_delete(scim: ScimClient) -> None:
    """Case 13 (and Okta R4/R12): 404 with a SCIM error body."""
    missing = str(uuid.uuid4())
    assert_scim_error(scim.get(f"/Users/{missing}"), 404)
    assert_scim_error(scim.delete(f"/Users/{missing}"), 404)
    operation = {"op": "Replace", "path": "displayName", "value": "x"}
    assert_scim_error(scim.patch(f"/Users/{missing}", patch_body(operation)), 404)


# -- multi-valued and filtered paths -----------------------------------------------------------


def test_legacy_replace_of_work_email_changes_it_in_place(scim: ScimClient) -> None:
    """Case 14: `Replace emails[type eq "work"].value` + `Replace name.familyName`, no duplicate."""
    user = create(scim, "multi@contoso.com", emails=[
        {"primary": True, "type": "work", "value": "multi@contoso.com"}, {"type": "home", "value": "m@home.net"}])
    got = patch_ok(scim, user["id"],
                   {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "updated@contoso.com"},
                   {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"})
    assert got["emails"] == [{"primary": True, "type": "work", "value": "updated@contoso.com"},
                             {"type": "home", "value": "m@home.net"}]
    assert got["name"] == {"formatted": "Given Family", "familyName": "updatedFamilyName", "givenName": "Given"}
    assert by_filter(scim, 'emails[type eq "work"].value eq "updated@contoso.com"') == [user["id"]]
    assert by_filter(scim, 'emails[type eq "work"].value eq "multi@contoso.com"') == []


def test_whole_element_replace_by_filter_keeps_its_position(scim: ScimClient) -> None:
    """Case 14 variant: `replace emails[type eq "home"]` with an object replaces that element in
    place (same position, one home email), so an element-wise diff sees one change."""
    user = create(scim, "inplace@contoso.com", emails=[
        {"type": "home", "value": "h1@x.com"}, {"type": "work", "value": "w@x.com", "primary": True}])
    got = patch_ok(scim, user["id"],
                   {"op": "replace", "path": 'emails[type eq "home"]', "value": {"value": "h2@x.com"}})
    assert got["emails"] == [{"type": "home", "value": "h2@x.com"},
                             {"type": "work", "value": "w@x.com", "primary": True}]


def test_add_to_a_missing_work_email_creates_the_element(scim: ScimClient) -> None:
    """Case 15: the validator's "Add Attributes" against a user without emails."""
    user = scim.create_user("noemail@contoso.com")
    got = patch_ok(scim, user["id"], {"op": "Add", "path": 'emails[type eq "work"].value', "value": "n@x.com"})
    assert got["emails"] == [{"type": "work", "value": "n@x.com"}]
    got = patch_ok(scim, user["id"], {"op": "add", "path": 'emails[type eq "work"].value', "value": "n2@x.com"})
    assert got["emails"] == [{"type": "work", "value": "n2@x.com"}]


def test_replace_of_a_missing_work_address_creates_the_element(scim: ScimClient) -> None:
    """Case 15: `Replace addresses[type eq "work"].streetAddress` then a second sub-attribute."""
    user = create(scim, "addr@contoso.com", addresses=[{"type": "home", "locality": "Home Town"}])
    patch_ok(scim, user["id"],
             {"op": "Replace", "path": 'addresses[type eq "work"].streetAddress', "value": "1 Main St"})
    got = patch_ok(scim, user["id"],
                   {"op": "Replace", "path": 'addresses[type eq "work"].locality', "value": "Redmond"})
    assert got["addresses"] == [{"type": "home", "locality": "Home Town"},
                                {"type": "work", "streetAddress": "1 Main St", "locality": "Redmond"}]
    assert by_filter(scim, 'addresses[type eq "work"].locality eq "redmond"') == [user["id"]]


def test_primary_role_value_replace_with_string_true_filter(scim: ScimClient) -> None:
    """Case 16: `roles[primary eq "True"].value` updates the boolean-primary role in place."""
    user = create(scim, "roles@contoso.com", roles=[
        {"primary": True, "type": "WindowsAzureActiveDirectoryRole", "value": "User"},
        {"primary": False, "value": "Reader"}])
    got = patch_ok(scim, user["id"], {"op": "Replace", "path": 'roles[primary eq "True"].value', "value": "Admin"})
    assert got["roles"] == [{"primary": True, "type": "WindowsAzureActiveDirectoryRole", "value": "Admin"},
                            {"primary": False, "value": "Reader"}]
    assert by_filter(scim, 'roles[primary eq "True"].value eq "Admin"') == [user["id"]]


def test_primary_role_paths_create_the_role_when_missing(scim: ScimClient) -> None:
    """Case 16 / GR mapping: display, type and value of `roles[primary eq "True"]` on a roleless user."""
    user = create(scim, "noroles@contoso.com")
    got = patch_ok(scim, user["id"],
                   {"op": "Add", "path": 'roles[primary eq "True"].value', "value": "Admin"},
                   {"op": "Add", "path": 'roles[primary eq "True"].display', "value": "Administrator"},
                   {"op": "Add", "path": 'roles[primary eq "True"].type', "value": "WindowsAzureActiveDirectoryRole"})
    assert got["roles"] == [{"primary": True, "value": "Admin", "display": "Administrator",
                             "type": "WindowsAzureActiveDirectoryRole"}]


def test_rename_moves_the_match_and_rename_onto_existing_is_409(scim: ScimClient) -> None:
    """Case 17: PATCH `Replace userName`; the old name no longer matches; renaming onto a taken
    name (in another case) is 409 and changes nothing."""
    user = create(scim, "old.name@contoso.com")
    other = create(scim, "taken@contoso.com")
    got = patch_ok(scim, user["id"], {"op": "Replace", "path": "userName", "value": "new.name@contoso.com"})
    assert got["id"] == user["id"] and got["userName"] == "new.name@contoso.com"
    assert by_filter(scim, 'userName eq "new.name@contoso.com"') == [user["id"]]
    assert by_filter(scim, 'userName eq "old.name@contoso.com"') == []
    before = fetch(scim, user["id"])
    response = scim.patch(f"/Users/{user['id']}",
                          patch_body({"op": "Replace", "path": "userName", "value": "TAKEN@contoso.com"}))
    assert_scim_error(response, 409, "uniqueness")
    assert fetch(scim, user["id"]) == before
    assert by_filter(scim, 'userName eq "taken@contoso.com"') == [other["id"]]


def test_flagged_pathless_replace_with_dotted_and_urn_keys(scim: ScimClient) -> None:
    """Case 18: aadOptscim062020's multi-attribute replace; no literal dotted keys stored."""
    user = create(scim, "flag@contoso.com")
    got = patch_ok(scim, user["id"],
                   {"op": "replace", "path": 'emails[type eq "work"].value', "value": "flag2@contoso.com"},
                   {"op": "replace", "value": {
                       "displayName": "Bjfe", "name.givenName": "Kkom", "name.familyName": "Unua",
                       f"{ENTERPRISE}:employeeNumber": "Aklq",
                       f"{GLOBALRELAY}:extensionAttribute3": "gr3"}})
    assert got["displayName"] == "Bjfe"
    assert got["name"] == {"formatted": "Given Family", "givenName": "Kkom", "familyName": "Unua"}
    assert got[ENTERPRISE] == {"employeeNumber": "Aklq"}
    assert got[GLOBALRELAY] == {"extensionAttribute3": "gr3"}
    assert got["emails"] == [{"primary": True, "type": "work", "value": "flag2@contoso.com"}]
    assert not [key for key in got if "." in key and not key.startswith("urn:")]
    assert by_filter(scim, f'{ENTERPRISE}:employeeNumber eq "Aklq"') == [user["id"]]


def test_validator_pathless_replace_of_the_joining_property(scim: ScimClient) -> None:
    """Case 18 (validator "Update joining property"): `{"op":"replace","value":{"userName":…}}`."""
    user = create(scim, "join@contoso.com")
    got = patch_ok(scim, user["id"], {"op": "replace", "value": {"userName": "join2@contoso.com"}})
    assert got["userName"] == "join2@contoso.com"
    assert by_filter(scim, 'userName eq "join2@contoso.com"') == [user["id"]]


def test_enterprise_extension_path_is_stored_under_the_extension(scim: ScimClient) -> None:
    """Case 19: `Replace urn:…:enterprise:2.0:User:department`."""
    user = create(scim, "dept@contoso.com")
    got = patch_ok(scim, user["id"], {"op": "Replace", "path": f"{ENTERPRISE}:department", "value": "Sales"})
    assert got[ENTERPRISE] == {"department": "Sales"}
    assert "department" not in got
    assert ENTERPRISE in got["schemas"]
    assert by_filter(scim, f'{ENTERPRISE}:department eq "sales"') == [user["id"]]


def test_globalrelay_extension_attribute_is_stored_under_the_extension(scim: ScimClient) -> None:
    """Case 20: `Add urn:…:GlobalRelay:2.0:User:extensionAttribute7`."""
    user = create(scim, "gr@contoso.com")
    got = patch_ok(scim, user["id"], {"op": "Add", "path": f"{GLOBALRELAY}:extensionAttribute7", "value": "v"})
    assert got[GLOBALRELAY] == {"extensionAttribute7": "v"}
    assert GLOBALRELAY in got["schemas"]
    assert by_filter(scim, f'{GLOBALRELAY}:extensionAttribute7 eq "v"') == [user["id"]]


def test_proxy_addresses_add_remove_replace_sequence(scim: ScimClient) -> None:
    """Case 21: Add as [{value}], as [string], as a bare string; Remove one; Replace all."""
    user = create(scim, "proxy@contoso.com")
    path = f"{GLOBALRELAY}:proxyAddresses"

    def addresses(*operations: dict[str, Any]) -> list[str]:
        return patch_ok(scim, user["id"], *operations).get(GLOBALRELAY, {}).get("proxyAddresses", [])

    assert addresses({"op": "Add", "path": path, "value": [{"value": "smtp:a@x"}]}) == ["smtp:a@x"]
    assert addresses({"op": "Add", "path": path, "value": ["smtp:b@x"]}) == ["smtp:a@x", "smtp:b@x"]
    assert addresses({"op": "add", "path": path, "value": "smtp:c@x"}) == ["smtp:a@x", "smtp:b@x", "smtp:c@x"]
    assert addresses({"op": "Add", "path": path, "value": [{"value": "smtp:b@x"}]}) == [
        "smtp:a@x", "smtp:b@x", "smtp:c@x"]
    assert by_filter(scim, f'{path} eq "smtp:b@x"') == [user["id"]]
    assert addresses({"op": "Remove", "path": path, "value": [{"value": "smtp:a@x"}]}) == ["smtp:b@x", "smtp:c@x"]
    assert by_filter(scim, f'{path} eq "smtp:a@x"') == []
    assert addresses({"op": "Replace", "path": path, "value": ["SMTP:p@x", "smtp:q@x"]}) == ["SMTP:p@x", "smtp:q@x"]
    assert by_filter(scim, f'{path} eq "smtp:b@x"') == []
    assert by_filter(scim, f'{path} eq "SMTP:P@X"') == [user["id"]]


@pytest.mark.parametrize("one_request", [True, False], ids=["one-request", "two-requests"])
def test_swapping_the_primary_proxy_address_keeps_both_addresses(scim: ScimClient, one_request: bool) -> None:
    """The primary address moves from a@x to b@x: Entra adds the new forms and removes the old
    ones. ``SMTP:a@x`` and ``smtp:a@x`` differ by the case of their prefix only, yet are two
    addresses (primary, alias): add and remove must match them exactly, or the remove deletes the
    alias the add just wrote (doc §7.2: "prefix case carries primary/secondary meaning")."""
    user = create(scim, "swap@contoso.com", **{GLOBALRELAY: {"proxyAddresses": ["SMTP:a@x", "smtp:b@x"]}})
    path = f"{GLOBALRELAY}:proxyAddresses"
    add = {"op": "Add", "path": path, "value": [{"value": "smtp:a@x"}, {"value": "SMTP:b@x"}]}
    remove = {"op": "Remove", "path": path, "value": [{"value": "SMTP:a@x"}, {"value": "smtp:b@x"}]}
    if one_request:
        got = patch_ok(scim, user["id"], add, remove)
    else:
        patch_ok(scim, user["id"], add)
        got = patch_ok(scim, user["id"], remove)
    assert got[GLOBALRELAY]["proxyAddresses"] == ["smtp:a@x", "SMTP:b@x"]
    assert by_filter(scim, f'{path} eq "smtp:A@X"') == [user["id"]]  # filters ignore case


@pytest.mark.parametrize("operation", [
    pytest.param(lambda m: {"op": "Add", "path": f"{ENTERPRISE}:manager", "value": m}, id="bare-string"),
    pytest.param(lambda m: {"op": "replace", "path": f"{ENTERPRISE}:manager", "value": {"value": m}},
                 id="validator-object"),
    pytest.param(lambda m: {"op": "Add", "path": "manager",
                            "value": [{"$ref": f"http://old.example/Users/{m}", "value": m}]}, id="legacy-array"),
    pytest.param(lambda m: {"op": "replace", "value": {f"{ENTERPRISE}:manager": m}}, id="pathless-urn-key"),
])
def test_manager_shapes_all_set_manager_value(scim: ScimClient, operation: Any) -> None:
    """Case 22: every manager shape Entra and the validator send sets `manager.value` to the id,
    nested under the enterprise key, with a `$ref` to our own URL."""
    manager = create(scim, "boss@contoso.com")
    user = create(scim, "report@contoso.com")
    got = patch_ok(scim, user["id"], operation(manager["id"]))
    assert got[ENTERPRISE]["manager"]["value"] == manager["id"]
    assert got[ENTERPRISE]["manager"]["$ref"] == manager["meta"]["location"]
    assert "manager" not in got
    assert by_filter(scim, f'{ENTERPRISE}:manager eq "{manager["id"]}"') == [user["id"]]


def test_manager_as_a_string_in_the_create_body(scim: ScimClient) -> None:
    """Case 22: `"manager":"<id>"` inside the extension of a POST body."""
    manager = create(scim, "boss2@contoso.com")
    user = create(scim, "report2@contoso.com", **{ENTERPRISE: {"manager": manager["id"]}})
    assert fetch(scim, user["id"])[ENTERPRISE]["manager"]["value"] == manager["id"]


@pytest.mark.parametrize("clearing", [
    pytest.param(lambda m: {"op": "Remove", "path": f"{ENTERPRISE}:manager"}, id="remove-no-value"),
    pytest.param(lambda m: {"op": "Replace", "path": f"{ENTERPRISE}:manager", "value": ""}, id="replace-empty"),
    pytest.param(lambda m: {"op": "remove", "path": f'manager[value eq "{m}"]'}, id="remove-filtered"),
    pytest.param(lambda m: {"op": "remove", "path": f'{ENTERPRISE}:manager[value eq "{m}"]'},
                 id="remove-filtered-urn"),
])
def test_manager_clearing_forms(scim: ScimClient, clearing: Any) -> None:
    """Case 23: each clearing form removes the manager (and the then-empty extension)."""
    manager = create(scim, "boss3@contoso.com")
    user = create(scim, "report3@contoso.com")
    patch_ok(scim, user["id"], {"op": "Add", "path": f"{ENTERPRISE}:manager", "value": manager["id"]})
    got = patch_ok(scim, user["id"], clearing(manager["id"]))
    assert "manager" not in got.get(ENTERPRISE, {})
    assert by_filter(scim, f'{ENTERPRISE}:manager eq "{manager["id"]}"') == []


def test_legacy_manager_reference_check_returns_only_id(scim: ScimClient) -> None:
    """Case 24: `id eq "<u>" and manager eq "<m>"&attributes=id` → 1 result with only id (and
    schemas) when true, 0 otherwise."""
    manager = create(scim, "boss4@contoso.com")
    user = create(scim, "report4@contoso.com")
    patch_ok(scim, user["id"], {"op": "Add", "path": f"{ENTERPRISE}:manager", "value": manager["id"]})
    raw = entra_filter(f'id eq "{user["id"]}" and manager eq "{manager["id"]}"') + "&attributes=id"
    body = query(scim, raw)
    assert body["totalResults"] == 1
    assert body["Resources"] == [{"schemas": body["Resources"][0]["schemas"], "id": user["id"]}]
    wrong = entra_filter(f'id eq "{user["id"]}" and manager eq "{user["id"]}"') + "&attributes=id"
    assert query(scim, wrong)["totalResults"] == 0
    swapped = entra_filter(f'id eq "{manager["id"]}" and manager eq "{manager["id"]}"') + "&attributes=id"
    assert query(scim, swapped)["Resources"] == []


def test_string_encoded_role_json_is_decoded(scim: ScimClient) -> None:
    """Case 25: PATCH `Add roles` whose value is a JSON document inside a string."""
    user = create(scim, "approle@contoso.com")
    encoded = '{"id":"7c6a6b0e-0000-4000-8000-000000000001","value":"Admin","displayName":"Admin"}'
    got = patch_ok(scim, user["id"], {"op": "Add", "path": "roles", "value": [{"value": encoded}]})
    assert [role["value"] for role in got["roles"]] == ["Admin"]
    assert got["roles"][0].get("display") == "Admin"
    assert by_filter(scim, 'roles[value eq "Admin"]') == [user["id"]]


@pytest.mark.parametrize("element", [
    pytest.param(lambda encoded: {"value": encoded}, id="value-only"),
    pytest.param(lambda encoded: {"primary": False, "value": encoded}, id="with-primary-false"),
])
def test_a_string_encoded_role_is_removed_by_the_same_string(scim: ScimClient, element: Any) -> None:
    """Case 25 both ways: the role Entra added as an encoded document, with or without sibling
    keys (AppRoleAssignmentsComplex sends `primary: false`), is removed by the same element."""
    user = create(scim, "approle2@contoso.com")
    encoded = '{"id":"7c6a6b0e-0000-4000-8000-000000000002","value":"Reader","displayName":"Reader"}'
    added = patch_ok(scim, user["id"], {"op": "Add", "path": "roles", "value": [element(encoded)]})
    assert [(role["value"], role.get("display")) for role in added["roles"]] == [("Reader", "Reader")]
    removed = patch_ok(scim, user["id"], {"op": "Remove", "path": "roles", "value": [element(encoded)]})
    assert "roles" not in removed
    assert by_filter(scim, 'roles[value eq "Reader"]') == []


# -- disable, enable, delete -------------------------------------------------------------------


@pytest.mark.parametrize("value", ["False", False], ids=["legacy-string", "flagged-boolean"])
def test_disable_keeps_the_user_readable_and_matchable(scim: ScimClient, value: Any) -> None:
    """Cases 26 (legacy `"False"`) and 27 (flagged `false`)."""
    user = create(scim, "leaver@contoso.com")
    op = "Replace" if isinstance(value, str) else "replace"
    response = scim.patch(f"/Users/{user['id']}", patch_body({"op": op, "path": "active", "value": value}))
    assert response.status_code in (200, 204)
    if response.status_code == 200:
        assert response.json()["active"] is False
    got = fetch(scim, user["id"])
    assert got["active"] is False
    matched = query(scim, entra_filter('userName eq "leaver@contoso.com"'))["Resources"]
    assert [(u["id"], u["active"]) for u in matched] == [(user["id"], False)]
    assert by_filter(scim, "active eq false") == [user["id"]]


def test_enable_with_string_then_boolean(scim: ScimClient) -> None:
    """Case 28 (users part): `Replace active "True"` then `true` → active again, data intact."""
    user = create(scim, "returner@contoso.com", **{ENTERPRISE: {"department": "Ops"}})
    patch_ok(scim, user["id"], {"op": "Replace", "path": "active", "value": "False"})
    got = patch_ok(scim, user["id"], {"op": "Replace", "path": "active", "value": "True"})
    assert got["active"] is True
    got = patch_ok(scim, user["id"], {"op": "replace", "path": "active", "value": True})
    assert got["active"] is True and got[ENTERPRISE] == {"department": "Ops"}
    assert by_filter(scim, 'active eq "True"') == [user["id"]]


@pytest.mark.parametrize("op", ["Add", "ADD", "add", "aDd"])
def test_op_casing_gives_identical_results(scim: ScimClient, op: str) -> None:
    """Case 31: the same PATCH with any casing of `op`."""
    user = create(scim, f"casing-{op}@contoso.com")
    got = patch_ok(scim, user["id"],
                   {"op": op, "path": "nickName", "value": "Babs"},
                   {"op": op, "path": 'phoneNumbers[type eq "mobile"].value', "value": "+1 555 0100"},
                   {"op": op, "path": f"{ENTERPRISE}:costCenter", "value": "CC-1"})
    assert got["nickName"] == "Babs"
    assert got["phoneNumbers"] == [{"type": "mobile", "value": "+1 555 0100"}]
    assert got[ENTERPRISE] == {"costCenter": "CC-1"}


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8"])
def test_patch_sent_as_application_json_is_accepted(scim: ScimClient, content_type: str) -> None:
    """Case 32: older Entra traffic labels bodies `application/json`; the reply is still scim+json."""
    user = create(scim, "json@contoso.com")
    response = scim.patch(f"/Users/{user['id']}", patch_body({"op": "Replace", "path": "title", "value": "CTO"}),
                          headers={"Content-Type": content_type})
    assert response.status_code in (200, 204), response.text
    if response.status_code == 200:
        assert response.headers["content-type"].startswith(SCIM_JSON)
    assert fetch(scim, user["id"])["title"] == "CTO"


def test_delete_frees_the_username_and_never_reuses_the_id(scim: ScimClient) -> None:
    """Case 33 (users part): 204; GET 404; filter 0; re-create 201 with a new id; old id stays 404."""
    user = create(scim, "gone@contoso.com")
    response = scim.delete(f"/Users/{user['id']}")
    assert response.status_code == 204 and response.content == b""
    assert_scim_error(scim.get(f"/Users/{user['id']}"), 404)
    assert by_filter(scim, 'userName eq "gone@contoso.com"') == []
    assert ids(query(scim, "startIndex=1&count=100")) == []
    assert_scim_error(scim.delete(f"/Users/{user['id']}"), 404)
    again = create(scim, "Gone@contoso.com")
    assert again["id"] != user["id"]
    assert by_filter(scim, 'userName eq "gone@contoso.com"') == [again["id"]]
    assert_scim_error(scim.get(f"/Users/{user['id']}"), 404)
    patch = patch_body({"op": "Replace", "path": "active", "value": "False"})
    assert_scim_error(scim.patch(f"/Users/{user['id']}", patch), 404)


def test_soft_delete_then_purge_and_unassignment(scim: ScimClient) -> None:
    """Case 47: create → `active "False"` (GET-able, inactive) → later DELETE → gone. The
    unassigned user (no DELETE) stays inactive and listed."""
    purged = create(scim, "purged@contoso.com")
    unassigned = create(scim, "unassigned@contoso.com")
    for user in (purged, unassigned):
        patch_ok(scim, user["id"], {"op": "Replace", "path": "active", "value": "False"})
    assert fetch(scim, purged["id"])["active"] is False
    assert sorted(by_filter(scim, "active eq false")) == sorted([purged["id"], unassigned["id"]])
    assert scim.delete(f"/Users/{purged['id']}").status_code == 204
    assert_scim_error(scim.get(f"/Users/{purged['id']}"), 404)
    assert by_filter(scim, "active eq false") == [unassigned["id"]]
    assert fetch(scim, unassigned["id"])["active"] is False


def test_both_dialects_on_one_tenant(scim: ScimClient) -> None:
    """Case 48: a flagged tenant's cycle sends flagged shapes; Provision on demand sends legacy
    shapes to the same tenant and user; both apply."""
    user = create(scim, "pod@contoso.com")
    patch_ok(scim, user["id"], {"op": "replace", "value": {
        "displayName": "Cycle", "name.givenName": "Flag", f"{ENTERPRISE}:department": "D1"}})
    patch_ok(scim, user["id"], {"op": "Replace", "path": "displayName", "value": "On Demand"},
             {"op": "Replace", "path": f"{ENTERPRISE}:department", "value": "D2"},
             {"op": "Replace", "path": "active", "value": "False"})
    got = patch_ok(scim, user["id"], {"op": "replace", "path": "active", "value": True},
                   {"op": "replace", "value": {"name.familyName": "Flagged"}})
    assert got["displayName"] == "On Demand"
    assert got["name"] == {"formatted": "Given Family", "familyName": "Flagged", "givenName": "Flag"}
    assert got[ENTERPRISE] == {"department": "D2"}
    assert got["active"] is True


# -- listing and discovery ---------------------------------------------------------------------


def test_paging_is_stable_and_complete(scim: ScimClient, settings: Settings, db: Database) -> None:
    """Case 49: ≥ 11 users, pages of 5 at startIndex 1, 6, 11; integers; startIndex echoed;
    count above the maximum capped."""
    created = [create(scim, f"page{i:02d}@contoso.com")["id"] for i in range(12)]
    seen: list[str] = []
    for start in (1, 6, 11):
        body = query(scim, f"startIndex={start}&count=5")
        for key in ("totalResults", "startIndex", "itemsPerPage"):
            assert type(body[key]) is int
        assert body["totalResults"] == 12
        assert body["startIndex"] == start
        assert body["itemsPerPage"] == len(body["Resources"]) == (5 if start < 11 else 2)
        seen += ids(body)
    assert len(seen) == len(set(seen)) == 12
    assert sorted(seen) == sorted(created)
    again = [ids(query(scim, f"startIndex={start}&count=5")) for start in (1, 6, 11)]
    assert [i for page in again for i in page] == seen
    beyond = query(scim, "startIndex=13&count=5")
    assert beyond["Resources"] == [] and beyond["totalResults"] == 12 and beyond["startIndex"] == 13
    capped = query(scim, "startIndex=1&count=1000000")
    assert capped["itemsPerPage"] == 12
    assert ids(capped) == seen
    zero = query(scim, "count=0")
    assert zero["totalResults"] == 12 and zero["Resources"] == []
    # The same data served with a page maximum of 5: `count=50` is capped, not an error.
    small = create_app(settings.model_copy(update={"max_page_size": 5}), db)
    with TestClient(small, base_url="https://scim.example.test") as http:
        body = query(ScimClient(http, scim.tenant, scim.token), "startIndex=6&count=50")
    assert body["itemsPerPage"] == 5 and body["totalResults"] == 12 and body["startIndex"] == 6
    assert ids(body) == seen[5:10]


def test_discovery_lists_the_user_schemas_and_globalrelay_attributes(scim: ScimClient) -> None:
    """Case 50 (users part): /Schemas, /ResourceTypes, /ServiceProviderConfig."""
    response = scim.get("/Schemas")
    assert response.status_code == 200 and response.headers["content-type"].startswith(SCIM_JSON)
    body = response.json()
    assert body["schemas"] == [LIST_RESPONSE]
    schemas = {schema["id"]: schema for schema in body["Resources"]}
    assert {CORE, ENTERPRISE, GLOBALRELAY} <= set(schemas)
    assert body["totalResults"] == len(body["Resources"])
    gr = {attr["name"]: attr for attr in schemas[GLOBALRELAY]["attributes"]}
    assert gr["proxyAddresses"]["multiValued"] is True
    assert gr["proxyAddresses"]["type"] == "string"
    for i in range(1, 16):
        attr = gr[f"extensionAttribute{i}"]
        assert attr["type"] == "string" and attr["multiValued"] is False
        assert attr["mutability"] == "readWrite"
    enterprise = {attr["name"]: attr for attr in schemas[ENTERPRISE]["attributes"]}
    assert {"employeeNumber", "costCenter", "organization", "division", "department", "manager"} <= set(enterprise)
    single = scim.get(f"/Schemas/{GLOBALRELAY}")
    assert single.status_code == 200 and single.json()["id"] == GLOBALRELAY
    types = scim.get("/ResourceTypes")
    assert types.status_code == 200
    user_type = next(rt for rt in types.json()["Resources"] if rt["name"] == "User")
    assert user_type["endpoint"] == "/Users" and user_type["schema"] == CORE
    assert {ext["schema"] for ext in user_type["schemaExtensions"]} == {ENTERPRISE, GLOBALRELAY}
    config = scim.get("/ServiceProviderConfig")
    assert config.status_code == 200 and config.json()["patch"]["supported"] is True


def test_the_aadoptscim062020_flag_in_the_url_is_ignored(scim: ScimClient) -> None:
    """Case 52: the Tenant URL's `?aadOptscim062020` carried onto every request."""
    response = scim.post("/Users?aadOptscim062020", entra_user("flagurl@contoso.com"))
    assert response.status_code == 201, response.text
    user_id = response.json()["id"]
    body = query(scim, "aadOptscim062020&" + entra_filter('userName eq "flagurl@contoso.com"'))
    assert ids(body) == [user_id]
    body = query(scim, entra_filter('userName eq "flagurl@contoso.com"') + "&aadOptscim062020")
    assert ids(body) == [user_id]
    assert scim.get(f"/Users/{user_id}?aadOptscim062020").status_code == 200
    response = scim.patch(f"/Users/{user_id}?aadOptscim062020",
                          patch_body({"op": "replace", "path": "active", "value": False}))
    assert response.status_code in (200, 204)
    assert fetch(scim, user_id)["active"] is False
    assert scim.get("/Schemas?aadOptscim062020").status_code == 200
    assert scim.delete(f"/Users/{user_id}?aadOptscim062020").status_code == 204


@pytest.mark.parametrize("empty", ["", None], ids=["empty-string", "null"])
def test_replace_with_empty_clears_optional_attributes(scim: ScimClient, empty: Any) -> None:
    """Case 53: PATCH replace with `""`, then with `null` (Logic-App "Null/empty update")."""
    user = create(scim, "clear@contoso.com", title="Eng", nickName="Nick", displayName="Clear Me",
                  phoneNumbers=[{"type": "work", "value": "+1 555 0101"}],
                  **{ENTERPRISE: {"department": "Dept", "costCenter": "CC"},
                     GLOBALRELAY: {"extensionAttribute2": "e2", "proxyAddresses": ["smtp:c@x"]}})
    got = patch_ok(scim, user["id"],
                   {"op": "Replace", "path": "title", "value": empty},
                   {"op": "Replace", "path": "name.givenName", "value": empty},
                   {"op": "Replace", "path": 'phoneNumbers[type eq "work"].value', "value": empty},
                   {"op": "Replace", "path": 'emails[type eq "work"].value', "value": empty},
                   {"op": "Replace", "path": f"{ENTERPRISE}:department", "value": empty},
                   {"op": "Replace", "path": f"{GLOBALRELAY}:extensionAttribute2", "value": empty},
                   {"op": "Replace", "path": f"{GLOBALRELAY}:proxyAddresses", "value": empty})
    for key in ("title", "phoneNumbers", "emails"):
        # The primary work email must not linger as {"type": "work", "primary": true}.
        assert got.get(key) in (None, "", []), key
    assert "givenName" not in got["name"]
    assert got[ENTERPRISE] == {"costCenter": "CC"}
    assert GLOBALRELAY not in got
    got = patch_ok(scim, user["id"], {"op": "replace", "value": {
        "nickName": empty, "displayName": empty, f"{ENTERPRISE}:costCenter": empty}})
    assert "nickName" not in got and "displayName" not in got and ENTERPRISE not in got
    assert by_filter(scim, 'title eq "Eng"') == []
    assert by_filter(scim, f'{ENTERPRISE}:department eq "Dept"') == []


def test_special_characters_in_username_and_values(scim: ScimClient) -> None:
    """Case 54 (users part): `o'brien@x.com` and embedded double quotes."""
    user = create(scim, "o'brien@x.com", displayName='Pat "The Boss" O\'Brien',
                  **{ENTERPRISE: {"department": 'R&D "Core"'}})
    assert by_filter(scim, "userName eq \"O'Brien@x.com\"") == [user["id"]]
    assert by_filter(scim, 'displayName eq "Pat \\"The Boss\\" O\'Brien"') == [user["id"]]
    assert by_filter(scim, f'{ENTERPRISE}:department eq "R&D \\"Core\\""') == [user["id"]]
    assert ids(query(scim, "filter=userName+eq+%22o%27brien%40x.com%22")) == [user["id"]]
    got = fetch(scim, user["id"])
    assert got["userName"] == "o'brien@x.com"
    assert got["displayName"] == 'Pat "The Boss" O\'Brien'
    got = patch_ok(scim, user["id"], {"op": "Replace", "path": f"{ENTERPRISE}:department", "value": 'A "B" & C\'s'})
    assert got[ENTERPRISE]["department"] == 'A "B" & C\'s'
    assert by_filter(scim, f'{ENTERPRISE}:department eq "a \\"b\\" & c\'s"') == [user["id"]]


# -- bad input: 400 with the right scimType, and nothing changed ---------------------------------


def test_an_empty_operations_array_changes_nothing_and_succeeds(scim: ScimClient) -> None:
    """The Microsoft SCIM Validator sends PATCH with `"Operations": []` and expects success (doc
    §3.3): 200 with the unchanged user, same version."""
    user = create(scim, "noop@contoso.com")
    response = scim.patch(f"/Users/{user['id']}", {"schemas": [patch_body()["schemas"][0]], "Operations": []})
    assert response.status_code == 200, response.text
    assert response.json()["meta"]["version"] == user["meta"]["version"]
    assert response.json()["userName"] == "noop@contoso.com"


@pytest.mark.parametrize("body,scim_type", [
    pytest.param(patch_body({"op": "Replace", "path": "active", "value": "maybe"}), "invalidValue",
                 id="active-not-boolean"),
    pytest.param(patch_body({"op": "Replace", "path": "active", "value": 1}), "invalidValue", id="active-number"),
    pytest.param(patch_body({"op": "Add", "path": "emails", "value": ["x@y.com"]}), "invalidValue",
                 id="emails-not-objects"),
    pytest.param(patch_body({"op": "Merge", "path": "title", "value": "x"}), "invalidSyntax", id="unknown-op"),
    pytest.param(patch_body({"op": "Replace", "path": "favouriteColour", "value": "x"}), "invalidPath",
                 id="unknown-attribute"),
    pytest.param(patch_body({"op": "Replace", "path": "urn:example:unknown:2.0:User:x", "value": "x"}),
                 "invalidPath", id="unknown-extension"),
    pytest.param(patch_body({"op": "Replace", "path": "name.nonsense", "value": "x"}), "invalidPath",
                 id="unknown-sub-attribute"),
    pytest.param(patch_body({"op": "Replace", "path": "id", "value": "mine"}), "mutability", id="readonly-id"),
    pytest.param(patch_body({"op": "Replace", "path": 'emails[type eq "work"', "value": "x"}), "invalidPath",
                 id="broken-path"),
    pytest.param(patch_body({"op": "Remove"}), "noTarget", id="remove-without-path"),
    pytest.param(patch_body({"op": "Replace", "path": "title", "value": "ok"},
                            {"op": "Replace", "path": "active", "value": "nope"}), "invalidValue",
                 id="second-op-fails-atomically"),
    pytest.param({"schemas": [patch_body()["schemas"][0]], "Operations": {}}, "invalidSyntax", id="operations-object"),
    pytest.param({"schemas": [patch_body()["schemas"][0]]}, "invalidSyntax", id="no-operations"),
])
def test_bad_patch_is_400_and_changes_nothing(scim: ScimClient, body: dict[str, Any], scim_type: str) -> None:
    """Bad input: a precise 400, and a follow-up GET proves the user is untouched."""
    user = create(scim, "steady@contoso.com", title="Before")
    before = fetch(scim, user["id"])
    assert_scim_error(scim.patch(f"/Users/{user['id']}", body), 400, scim_type)
    assert fetch(scim, user["id"]) == before


@pytest.mark.parametrize("extra,scim_type", [
    pytest.param({"active": "maybe"}, "invalidValue", id="active-not-boolean"),
    pytest.param({"emails": ["x@y.com"]}, "invalidValue", id="emails-not-objects"),
    pytest.param({"emails": [{"type": "work", "value": 5}]}, "invalidValue", id="email-value-number"),
    pytest.param({"userName": ""}, "invalidValue", id="empty-username"),
    pytest.param({"userName": 42}, "invalidValue", id="username-not-string"),
])
def test_bad_create_is_400_and_stores_nothing(scim: ScimClient, extra: dict[str, Any], scim_type: str) -> None:
    """Bad input on POST: a precise 400 and no user created."""
    body = entra_user("bad@contoso.com")
    body.update(extra)
    assert_scim_error(scim.post("/Users", body), 400, scim_type)
    assert query(scim, "startIndex=1&count=10")["totalResults"] == 0


@pytest.mark.parametrize("expression", [
    'userName eq "unterminated', "userName eq", "userName zz \"x\"", 'nosuchattr eq "x"',
    'emails[type eq "work"', 'urn:example:unknown:2.0:User:x eq "y"',
])
def test_invalid_filter_is_400_invalid_filter(scim: ScimClient, expression: str) -> None:
    """Bad input: an unparsable or unknown-attribute filter is 400 invalidFilter, never 500."""
    user = create(scim, "filtered@contoso.com")
    response = scim.get(f"/Users?{entra_filter(expression)}")
    assert_scim_error(response, 400, "invalidFilter")
    assert fetch(scim, user["id"])["userName"] == "filtered@contoso.com"


@pytest.mark.parametrize("query_string", ["startIndex=abc", "count=many"])
def test_non_integer_paging_parameters_are_400(scim: ScimClient, query_string: str) -> None:
    """Bad input: paging parameters must be integers."""
    assert_scim_error(scim.get(f"/Users?{query_string}"), 400, "invalidValue")


def test_malformed_json_body_is_400_invalid_syntax(scim: ScimClient) -> None:
    """Bad input: a body that is not JSON."""
    response = scim.http.post(f"{scim.base}/Users", content=b'{"userName": ',
                              headers={"Authorization": f"Bearer {scim.token}", "Content-Type": SCIM_JSON})
    assert_scim_error(response, 400, "invalidSyntax")


def test_tenants_are_isolated(scim: ScimClient, other_scim: ScimClient) -> None:
    """Same userName in two tenants; each tenant sees only its own user."""
    mine = create(scim, "shared@contoso.com")
    theirs = other_scim.post("/Users", entra_user("shared@contoso.com")).json()
    assert mine["id"] != theirs["id"]
    assert by_filter(scim, 'userName eq "shared@contoso.com"') == [mine["id"]]
    assert_scim_error(scim.get(f"/Users/{theirs['id']}"), 404)
    assert_scim_error(scim.delete(f"/Users/{theirs['id']}"), 404)
    assert other_scim.get(f"/Users/{theirs['id']}").status_code == 200


def test_an_extension_object_value_may_repeat_its_schemas_key(scim) -> None:
    """scim2-tester adds the whole extension object, `schemas` included: the key is ignored."""
    user = scim.create_user("ext-object@example.com")
    ext = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    response = scim.patch(f"/Users/{user['id']}", {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "add", "path": ext, "value": {"schemas": [ext], "department": "Archive"}}],
    })
    assert response.status_code == 200, response.text
    assert scim.get(f"/Users/{user['id']}").json()[ext] == {"department": "Archive"}
