"""A long PATCH applies its operations before its write transaction (ResourceService.
_applied_beforehand), so that the database's single writer is not held while they run; the result
stands only if the resource is still the version it was applied to, else they are applied again
inside the transaction. Either way the outcome is the one of applying them inside it."""

from __future__ import annotations

from typing import Any

import pytest

from identity_sync.auth.tokens import Principal
from identity_sync.errors import BadRequest
from identity_sync.scim.registry import USER
from identity_sync.service import resources
from identity_sync.service.resources import APPLIED_BEFOREHAND_AFTER, ResourceService
from identity_sync.service.tenants import TenantService
from identity_sync.storage.db import Database

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
LONG = APPLIED_BEFOREHAND_AFTER + 4


@pytest.fixture
def principal(db: Database, tenants: TenantService) -> Principal:
    issued = tenants.create_tenant("acme")
    return tenants.authenticate(f"Bearer {issued.token}", "acme")


def _adds(count: int, prefix: str) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": [
        {"op": "add", "path": "emails", "value": [{"value": f"{prefix}{i}@example.com", "type": "work"}]}
        for i in range(count)]}


def _emails(service: ResourceService, principal: Principal, user_id: str) -> list[str]:
    return [email["value"] for email in service.get(principal, USER, user_id).doc.get("emails", [])]


class _Counted:
    """Counts the calls of ResourceService._applied_beforehand and what they gave."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, meanwhile: Any = None) -> None:
        self.results: list[Any] = []
        real = ResourceService._applied_beforehand

        def counted(service: ResourceService, *args: Any) -> Any:
            result = real(service, *args)
            self.results.append(result)
            if meanwhile is not None:
                meanwhile()
            return result

        monkeypatch.setattr(ResourceService, "_applied_beforehand", counted)


def test_a_long_patch_gives_what_applying_it_inside_the_transaction_gives(
        service: ResourceService, principal: Principal, monkeypatch: pytest.MonkeyPatch) -> None:
    first = service.create(principal, USER, {"userName": "a@example.com"})
    second = service.create(principal, USER, {"userName": "b@example.com"})
    counted = _Counted(monkeypatch)
    before = service.patch(principal, USER, first.id, _adds(LONG, "x"), None)
    assert len(counted.results) == 1 and counted.results[0] is not None  # applied beforehand, and kept
    monkeypatch.setattr(resources, "APPLIED_BEFOREHAND_AFTER", 10_000)
    inside = service.patch(principal, USER, second.id, _adds(LONG, "x"), None)
    assert len(counted.results) == 1  # not tried: applied inside the transaction
    assert before.doc["emails"] == inside.doc["emails"] and len(before.doc["emails"]) == LONG
    assert before.version == inside.version == 2


def test_a_short_patch_is_applied_inside_the_transaction(
        service: ResourceService, principal: Principal, monkeypatch: pytest.MonkeyPatch) -> None:
    user = service.create(principal, USER, {"userName": "a@example.com"})
    counted = _Counted(monkeypatch)
    service.patch(principal, USER, user.id, _adds(APPLIED_BEFOREHAND_AFTER, "x"), None)
    assert counted.results == []


def test_a_write_in_between_makes_the_operations_apply_again_to_the_newer_version(
        service: ResourceService, principal: Principal, monkeypatch: pytest.MonkeyPatch) -> None:
    user = service.create(principal, USER, {"userName": "a@example.com"})
    counted = _Counted(monkeypatch, meanwhile=lambda: service.patch(principal, USER, user.id, {
        "schemas": [PATCH], "Operations": [{"op": "replace", "path": "displayName", "value": "Meanwhile"}]}, None))
    patched = service.patch(principal, USER, user.id, _adds(LONG, "x"), None)
    assert counted.results[0][0] == 1  # applied to version 1; version 2 was committed meanwhile
    assert patched.version == 3
    assert patched.doc["displayName"] == "Meanwhile"  # the write in between is kept
    assert _emails(service, principal, user.id) == [f"x{i}@example.com" for i in range(LONG)]


def test_operations_that_fail_beforehand_fail_inside_with_nothing_written(
        service: ResourceService, principal: Principal, monkeypatch: pytest.MonkeyPatch) -> None:
    user = service.create(principal, USER, {"userName": "a@example.com"})
    counted = _Counted(monkeypatch)
    body = _adds(LONG, "x")
    body["Operations"].append({"op": "replace", "path": "userName", "value": 42})
    with pytest.raises(BadRequest):
        service.patch(principal, USER, user.id, body, None)
    assert counted.results == [None]
    stored = service.get(principal, USER, user.id)
    assert stored.version == 1 and "emails" not in stored.doc
