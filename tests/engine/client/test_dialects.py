"""The PATCH each dialect sends (entra-scim-requests.md §1.4, §1.5, §2), exactly."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from identity_sync.engine.client import DIALECTS, BearerToken, ScimClient, documents
from identity_sync.engine.client.dialects import get_dialect, patch_body, whole_attribute_operations
from identity_sync.engine.model import Change
from identity_sync.scim import registry
from identity_sync.scim.patch import apply_operations, parse_operations
from tests.engine.client.scripted import Reply, Seen, json_reply, scim_error, scripted

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
MANAGER = f"{ENTERPRISE}:manager"
WORK_EMAIL = 'emails[type eq "work"].value'
CHANGES = [Change("active", False), Change("name.givenName", "Augusta"), Change(WORK_EMAIL, "a@x"),
           Change(MANAGER, "m2"), Change(f"{ENTERPRISE}:employeeNumber", "7"), Change("title", None)]


def test_entra_folds_plain_replaces_into_one_pathless_op_with_path_keys() -> None:
    assert get_dialect("entra").operations(CHANGES) == [
        {"op": "replace", "path": WORK_EMAIL, "value": "a@x"},
        {"op": "remove", "path": "title"},
        {"op": "replace", "value": {"active": False, "name.givenName": "Augusta", MANAGER: "m2",
                                    f"{ENTERPRISE}:employeeNumber": "7"}},
    ]


def test_entra_keeps_the_path_of_a_single_replace() -> None:
    assert get_dialect("entra").operations([Change("active", False)]) == [
        {"op": "replace", "path": "active", "value": False}]


def test_entra_legacy_capitalises_ops_and_sends_active_as_a_string() -> None:
    assert get_dialect("entra-legacy").operations(CHANGES) == [
        {"op": "Replace", "path": "active", "value": "False"},
        {"op": "Replace", "path": "name.givenName", "value": "Augusta"},
        {"op": "Replace", "path": WORK_EMAIL, "value": "a@x"},
        {"op": "Replace", "path": MANAGER, "value": "m2"},
        {"op": "Replace", "path": f"{ENTERPRISE}:employeeNumber", "value": "7"},
        {"op": "Remove", "path": "title"},
    ]
    assert get_dialect("entra-legacy").operations([Change("active", True)])[0]["value"] == "True"


def test_rfc_sends_one_lower_case_op_per_path_and_a_complex_manager() -> None:
    assert get_dialect("rfc").operations(CHANGES) == [
        {"op": "replace", "path": "active", "value": False},
        {"op": "replace", "path": "name.givenName", "value": "Augusta"},
        {"op": "replace", "path": WORK_EMAIL, "value": "a@x"},
        {"op": "replace", "path": MANAGER, "value": {"value": "m2"}},
        {"op": "replace", "path": f"{ENTERPRISE}:employeeNumber", "value": "7"},
        {"op": "remove", "path": "title"},
    ]


def test_member_operations_per_dialect() -> None:
    ids = ["u1", 'odd"id']
    for name in DIALECTS:
        op = "Add" if name == "entra-legacy" else "add"
        assert get_dialect(name).add_members(ids) == [
            {"op": op, "path": "members", "value": [{"value": "u1"}, {"value": 'odd"id'}]}]
    assert get_dialect("entra-legacy").remove_members(ids) == [
        {"op": "Remove", "path": "members", "value": [{"value": "u1"}, {"value": 'odd"id'}]}]
    for name in ("entra", "rfc"):
        assert get_dialect(name).remove_members(ids) == [
            {"op": "remove", "path": 'members[value eq "u1"]'},
            {"op": "remove", "path": 'members[value eq "odd\\"id"]'}]


def test_what_no_dialect_accepts() -> None:
    with pytest.raises(ValueError, match="unknown SCIM dialect 'scim1'"):
        get_dialect("scim1")
    with pytest.raises(ValueError, match="add_members/remove_members"):
        get_dialect("entra").operations([Change("members", ["u1"])])
    with pytest.raises(ValueError, match="appears twice"):
        get_dialect("rfc").operations([Change("title", "a"), Change("title", "b")])


def test_whole_attribute_operations_rebuild_the_list_from_the_current_resource() -> None:
    current = {"id": "u1", "emails": [{"type": "work", "value": "a@x", "primary": True}],
               "phoneNumbers": [{"type": "fax", "value": "1"}]}
    changes = [Change('emails[type eq "home"].value', "h@x"), Change('phoneNumbers[type eq "fax"].value', None),
               Change("title", "Lead")]
    assert whole_attribute_operations(get_dialect("rfc"), changes, current) == [
        {"op": "replace", "path": "title", "value": "Lead"},
        {"op": "replace", "path": "emails", "value": [{"type": "work", "value": "a@x", "primary": True},
                                                      {"type": "home", "value": "h@x"}]},
        {"op": "remove", "path": "phoneNumbers"},
    ]
    assert current["emails"] == [{"type": "work", "value": "a@x", "primary": True}]  # not modified


@pytest.mark.anyio
async def test_rfc_falls_back_to_the_whole_attribute_when_the_element_is_missing() -> None:
    user = {"id": "u1", "userName": "ada", "emails": [{"type": "work", "value": "a@x"}]}

    def strict(seen: Seen) -> Reply:
        if seen.method == "GET":
            return json_reply(user)
        paths = [op.get("path", "") for op in seen.json()["Operations"]]
        if any("[" in path for path in paths):
            return scim_error(400, "no value of 'emails' matches the path filter", "noTarget")
        return Reply(204)

    with scripted(strict) as server:
        async with ScimClient(server.url, BearerToken("dialect-test-token"), dialect="rfc") as client:
            await client.update("User", "u1", [Change('emails[type eq "home"].value', "h@x")])
    first, read, second = server.requests()
    assert (first.method, read.method, second.method) == ("PATCH", "GET", "PATCH")
    assert second.json()["Operations"] == [
        {"op": "replace", "path": "emails",
         "value": [{"type": "work", "value": "a@x"}, {"type": "home", "value": "h@x"}]}]


@pytest.mark.anyio
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_members_travel_in_batches_of_members_per_request(dialect: str) -> None:
    with scripted(lambda seen: Reply(204)) as server:
        auth = BearerToken("dialect-test-token")
        async with ScimClient(server.url, auth, dialect=dialect, members_per_request=100) as client:
            ids = [f"u{i}" for i in range(250)]
            await client.add_members("g1", ids)
            await client.remove_members("g1", ids[:150])
            await client.add_members("g1", [])
    patches = server.requests("PATCH")
    assert [s.path for s in patches] == ["/Groups/g1"] * 5
    added = [m["value"] for s in patches[:3] for m in s.json()["Operations"][0]["value"]]
    assert added == ids
    if dialect == "entra-legacy":
        removed = [m["value"] for s in patches[3:] for m in s.json()["Operations"][0]["value"]]
    else:
        removed = [op["path"][len('members[value eq "'):-2] for s in patches[3:] for op in s.json()["Operations"]]
    assert removed == ids[:150] and len(patches[3].body) > len(patches[4].body)


# -- every dialect means what documents.set_value means, as this project's PATCH engine reads it ----

_PATHS = ["displayName", "title", "name.givenName", "name.familyName", WORK_EMAIL, 'emails[type eq "home"].value',
          'phoneNumbers[type eq "mobile"].value', 'addresses[type eq "work"].locality',
          'addresses[type eq "work"].country', 'roles[primary eq "True"].value', f"{ENTERPRISE}:department",
          MANAGER, "urn:ietf:params:scim:schemas:extension:GlobalRelay:2.0:User:extensionAttribute3"]
_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FF), min_size=1, max_size=8).filter(str.strip)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(_PATHS), _TEXT), st.dictionaries(st.sampled_from(_PATHS), _TEXT | st.none()),
       st.booleans(), st.sampled_from(DIALECTS))
def test_a_dialects_patch_does_what_set_value_does(before: dict[str, str], after: dict[str, str | None],
                                                   active: bool, dialect: str) -> None:
    document = documents.build("User", {"userName": "ada@example.com", **before})
    changes = [Change(path, value) for path, value in after.items()] + [Change("active", active)]
    expected = copy.deepcopy(document)
    for change in changes:
        documents.set_value(expected, change.path, change.value)
    body = patch_body(get_dialect(dialect).operations(changes))
    patched = apply_operations(registry.USER, document, parse_operations(body, max_operations=100))
    paths = [*_PATHS, "active", "userName"]
    assert {p: documents.extract(patched, p) for p in paths} == {p: documents.extract(expected, p) for p in paths}
