"""The value index's entries of a document (scim/index.py): one per leaf value, and each top-level
attribute's entries depend on that attribute alone — which lets an update rewrite only the entries
of the attributes it changed (storage/resources.py)."""

from __future__ import annotations

import copy

from identity_sync.scim.index import index_entries
from identity_sync.scim.patch import apply_operations, parse_operations
from identity_sync.scim.registry import USER
from identity_sync.scim.resource import normalize

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

DOC = normalize(USER, {
    "userName": "Pat@Example.com", "active": True, "title": "Engineer",
    "name": {"givenName": "Pat", "familyName": "Doe"},
    "emails": [{"type": "work", "value": "pat@example.com", "primary": True}, {"type": "home", "value": "p@x.org"}],
    ENTERPRISE: {"department": "Sales", "employeeNumber": "42"},
})


def test_the_entries_of_some_attributes_are_those_attributes_share_of_the_whole() -> None:
    everything = index_entries(USER, DOC)
    assert ("username", 0, "pat@example.com") in everything  # caseExact: false
    assert ("emails.value", 1, "p@x.org") in everything and ("active", 0, "true") in everything
    assert ("enterprise:department", 0, "sales") in everything
    keys = ["emails", ENTERPRISE, "absent"]
    some = index_entries(USER, DOC, keys)
    assert set(some) == {e for e in everything if e[0].startswith(("emails.", "enterprise:"))}
    assert index_entries(USER, DOC, []) == []


def test_a_patch_leaves_the_document_it_was_given_as_it_was() -> None:
    before = copy.deepcopy(DOC)
    operations = parse_operations({"schemas": [PATCH], "Operations": [
        {"op": "replace", "path": 'emails[type eq "work"].value', "value": "new@example.com"},
        {"op": "replace", "path": f"{ENTERPRISE}:department", "value": "Legal"},
        {"op": "remove", "path": "title"}]}, max_operations=10)
    after = apply_operations(USER, DOC, operations)
    assert DOC == before
    assert after["emails"][0]["value"] == "new@example.com" and "title" not in after
    assert after[ENTERPRISE]["department"] == "Legal" and after["emails"] is not DOC["emails"]
