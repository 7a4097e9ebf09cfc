"""PATCH is all or nothing (RFC 7644 §3.5.2; docs/reliability.md matrix row 6): for generated
lists of valid operations with one bad operation somewhere among them, the request is refused
with that operation's error, and the stored user — document, value index, version — is exactly
what it was, on SQLite and on PostgreSQL (500 examples each)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from identity_sync.auth.tokens import Principal
from identity_sync.errors import BadRequest, Conflict
from identity_sync.scim.registry import USER
from identity_sync.service.resources import ResourceService
from identity_sync.service.tenants import TenantService
from identity_sync.storage.db import Database

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GLOBALRELAY = "urn:ietf:params:scim:schemas:extension:GlobalRelay:2.0:User"
TAKEN = "taken@x.com"  # another user's userName: renaming onto it is 409

words = st.text(st.sampled_from("abcXYZ é'\"%_"), min_size=1, max_size=8)
valid_operation = st.one_of(
    st.builds(lambda v: {"op": "replace", "path": "displayName", "value": v}, words),
    st.builds(lambda v: {"op": "Replace", "path": "title", "value": v}, words),
    st.builds(lambda v: {"op": "replace", "path": "name.givenName", "value": v}, words),
    st.builds(lambda v: {"op": "Add", "path": 'emails[type eq "work"].value', "value": f"{v}@x.com"}, words),
    st.builds(lambda v: {"op": "replace", "path": "active", "value": v}, st.sampled_from([True, False, "False"])),
    st.builds(lambda v: {"op": "Add", "path": f"{GLOBALRELAY}:proxyAddresses", "value": [{"value": f"smtp:{v}@x"}]},
              words),
    st.builds(lambda v: {"op": "Replace", "path": f"{ENTERPRISE}:department", "value": v}, words),
    st.builds(lambda v: {"op": "replace", "value": {"nickName": v, "preferredLanguage": "en"}}, words),
)
# (operation, the error it must give)
BAD_OPERATIONS: list[tuple[dict[str, Any], str]] = [
    ({"op": "replace", "path": "id", "value": "x"}, "mutability"),
    ({"op": "replace", "path": "meta.created", "value": "2020-01-01T00:00:00Z"}, "mutability"),
    ({"op": "add", "path": "groups", "value": [{"value": "g"}]}, "mutability"),
    ({"op": "replace", "path": "unknownAttr", "value": "x"}, "invalidPath"),
    ({"op": "replace", "path": "name.unknown", "value": "x"}, "invalidPath"),
    ({"op": "replace", "path": 'emails[type eq "work"', "value": "x"}, "invalidPath"),
    ({"op": "replace", "path": "active", "value": "nope"}, "invalidValue"),
    ({"op": "replace", "path": "userName", "value": ""}, "invalidValue"),
    ({"op": "add", "path": "emails", "value": "not-a-list"}, "invalidValue"),
    ({"op": "replace", "path": f"{ENTERPRISE}:manager", "value": "no-such-user"}, "invalidValue"),
    ({"op": "remove"}, "noTarget"),
    ({"op": "frobnicate", "path": "title", "value": "x"}, "invalidSyntax"),
    ({"op": "replace", "path": "userName", "value": TAKEN.upper()}, "uniqueness"),
]

_numbers = itertools.count()


@pytest.fixture
def acme(tenants: TenantService, service: ResourceService) -> Principal:
    principal = tenants.authenticate(f"Bearer {tenants.create_tenant('acme').token}", "acme")
    service.create(principal, USER, {"userName": TAKEN})
    return principal


def _index(db: Database, resource_id: str) -> list[tuple[Any, ...]]:
    with db.read() as conn:
        return sorted(tuple(row) for row in conn.exec_driver_sql(
            "SELECT path, element, key FROM attr_values WHERE resource_id = "
            + ("%(r)s" if conn.dialect.name == "postgresql" else ":r"), {"r": resource_id}))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=st.lists(valid_operation, max_size=4), after=st.lists(valid_operation, max_size=3),
       bad=st.sampled_from(BAD_OPERATIONS))
def test_one_bad_operation_leaves_the_user_exactly_as_it_was(
        db: Database, service: ResourceService, acme: Principal, before: list[dict[str, Any]],
        after: list[dict[str, Any]], bad: tuple[dict[str, Any], str]) -> None:
    user = service.create(acme, USER, {
        "userName": f"u{next(_numbers)}@x.com", "title": "Archivist", "emails": [{"type": "work", "value": "w@x.com"}],
        ENTERPRISE: {"department": "Records"}, GLOBALRELAY: {"proxyAddresses": ["SMTP:u@x"]}})
    stored, index = service.get(acme, USER, user.id), _index(db, user.id)
    operation, expected = bad
    with pytest.raises((BadRequest, Conflict)) as refused:
        service.patch(acme, USER, user.id, {"schemas": [PATCH], "Operations": [*before, operation, *after]}, None)
    assert refused.value.scim_type == expected
    now = service.get(acme, USER, user.id)
    assert (now.doc, now.version, now.last_modified) == (stored.doc, stored.version, stored.last_modified)
    assert _index(db, user.id) == index
    # The valid operations alone go through: what was refused was the bad one, and only it.
    if before or after:
        service.patch(acme, USER, user.id, {"schemas": [PATCH], "Operations": [*before, *after]}, None)
