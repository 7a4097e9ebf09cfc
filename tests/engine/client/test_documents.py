"""Mapping paths to resource documents and back (identity_sync.engine.client.documents)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from identity_sync.engine.client import documents

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GLOBAL_RELAY = "urn:ietf:params:scim:schemas:extension:GlobalRelay:2.0:User"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"


def test_build_places_every_path_kind_where_entra_puts_it() -> None:
    body = documents.build("User", {
        "userName": "ada@example.com", "active": True, "name.givenName": "Ada", "name.familyName": "Lovelace",
        'emails[type eq "work"].value': "ada@example.com", 'emails[type eq "home"].value': "ada@home.example",
        'addresses[type eq "work"].locality': "London", 'addresses[type eq "work"].country': "GB",
        'roles[primary eq "True"].value': "Admin", f"{ENTERPRISE}:employeeNumber": "1815",
        f"{ENTERPRISE}:manager": "manager-id", f"{GLOBAL_RELAY}:proxyAddresses": ["SMTP:ada@example.com"],
        "title": None,
    })
    assert body == {
        "schemas": [USER, ENTERPRISE, GLOBAL_RELAY],
        "userName": "ada@example.com", "active": True, "name": {"givenName": "Ada", "familyName": "Lovelace"},
        # The work email is primary, as in Entra's create body (entra-scim-requests.md §1.4 c).
        "emails": [{"type": "work", "primary": True, "value": "ada@example.com"},
                   {"type": "home", "value": "ada@home.example"}],
        "addresses": [{"type": "work", "locality": "London", "country": "GB"}],
        "roles": [{"primary": True, "value": "Admin"}],
        ENTERPRISE: {"employeeNumber": "1815", "manager": {"value": "manager-id"}},
        GLOBAL_RELAY: {"proxyAddresses": ["SMTP:ada@example.com"]},
    }


def test_build_a_group_and_refuse_what_is_not_a_path() -> None:
    assert documents.build("Group", {"displayName": "Sales", "externalId": "g-1"}) == {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Sales", "externalId": "g-1"}
    with pytest.raises(ValueError, match="a group is created empty"):
        documents.build("Group", {"displayName": "Sales", "members": ["u1"]})
    with pytest.raises(ValueError, match="resource type 'Device'"):
        documents.build("Device", {})
    with pytest.raises(ValueError, match="attribute path 'emails\\[type eq'"):
        documents.build("User", {'emails[type eq': "x"})
    with pytest.raises(ValueError, match="only 'eq' terms"):
        documents.build("User", {'emails[type ne "work"].value': "x"})
    with pytest.raises(ValueError, match="sub-attribute of the element"):
        documents.build("User", {'emails[type eq "work"]': "x"})


def test_extract_reads_what_targets_return_in_any_case_and_shape() -> None:
    resource = {
        "schemas": [USER, ENTERPRISE], "id": "u1", "UserName": "ada@example.com",
        "emails": [{"value": "other@example.com", "type": "other"}, {"value": "ada@example.com", "type": "Work"}],
        "roles": [{"value": "Reader", "primary": False}, {"value": "Admin", "primary": True}],
        ENTERPRISE.lower(): {"manager": {"value": "m1", "$ref": "../Users/m1", "displayName": "Boss"}},
        GLOBAL_RELAY: {"proxyAddresses": []},
    }
    assert documents.extract(resource, "userName") == "ada@example.com"
    assert documents.extract(resource, f"{USER}:userName") == "ada@example.com"
    assert documents.extract(resource, 'emails[type eq "work"].value') == "ada@example.com"
    assert documents.extract(resource, 'roles[primary eq "True"].value') == "Admin"
    assert documents.extract(resource, f"{ENTERPRISE}:manager") == "m1"
    assert documents.extract({ENTERPRISE: {"manager": "m2"}}, f"{ENTERPRISE}:manager") == "m2"
    assert documents.extract(resource, f"{GLOBAL_RELAY}:proxyAddresses") is None  # empty is absent
    assert documents.extract(resource, 'emails[type eq "home"].value') is None
    assert documents.extract(resource, "name.givenName") is None
    assert documents.extract(resource, f"{ENTERPRISE}:department") is None


def test_set_value_none_removes_and_cleans_up_after_itself() -> None:
    document = documents.build("User", {'emails[type eq "work"].value': "a@x", 'emails[type eq "home"].value': "b@x",
                                        "name.givenName": "Ada"})
    documents.set_value(document, 'emails[type eq "work"].value', None)
    assert document["emails"] == [{"type": "home", "value": "b@x"}]  # only type/primary left: element gone
    documents.set_value(document, 'emails[type eq "home"].value', None)
    documents.set_value(document, "name.givenName", None)
    documents.set_value(document, 'phoneNumbers[type eq "work"].value', None)  # absent: nothing to do
    documents.set_value(document, f"{ENTERPRISE}:manager", None)
    assert document == {"schemas": [USER]}


def test_set_value_updates_the_matching_element_in_place() -> None:
    document = {"emails": [{"type": "WORK", "value": "old@x", "primary": True, "display": "kept"}]}
    documents.set_value(document, 'emails[type eq "work"].value', "new@x")
    assert document == {"emails": [{"type": "WORK", "value": "new@x", "primary": True, "display": "kept"}]}


_PATHS = ["userName", "displayName", "name.givenName", "name.familyName", 'emails[type eq "work"].value',
          'emails[type eq "other"].value', 'phoneNumbers[type eq "mobile"].value', 'addresses[type eq "home"].region',
          'addresses[type eq "home"].postalCode', 'roles[primary eq "True"].type', f"{ENTERPRISE}:department",
          f"{ENTERPRISE}:manager", f"{GLOBAL_RELAY}:extensionAttribute7", "active"]
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(_PATHS), _TEXT),
       st.lists(_TEXT, min_size=1, max_size=4), st.booleans())
def test_whatever_build_writes_extract_reads_back(values: dict[str, str], proxies: list[str], active: bool) -> None:
    values = {**values, f"{GLOBAL_RELAY}:proxyAddresses": proxies, "active": active}
    document = documents.build("User", values)
    assert {path: documents.extract(document, path) for path in values} == values
