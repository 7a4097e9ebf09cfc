"""ResourceService.related(): a user created just now is known to be in no group (no query), any
other user's groups are read — also in a page mixing both."""

from __future__ import annotations

from typing import Any

import pytest

from identity_sync.auth.tokens import Principal
from identity_sync.scim.registry import GROUP, USER
from identity_sync.service import resources as resources_module
from identity_sync.service.resources import ResourceService


@pytest.fixture
def group_reads(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The user ids of each groups_of() query the service makes."""
    calls: list[list[str]] = []
    real = resources_module.memberships.groups_of

    def recording(conn: Any, tenant_id: str, user_ids: list[str]) -> Any:
        calls.append(list(user_ids))
        return real(conn, tenant_id, user_ids)

    monkeypatch.setattr(resources_module.memberships, "groups_of", recording)
    return calls


def test_a_created_user_has_no_groups_without_a_query(service: ResourceService, acme: Principal,
                                                      group_reads: list[list[str]]) -> None:
    created = service.create(acme, USER, {"userName": "ada@example.com"})
    assert created.related == {"groups": []}
    assert service.related(acme, USER, [created], False, True) == [created]
    assert group_reads == []


def test_other_users_groups_are_read_and_a_new_group_carries_no_such_shortcut(
        service: ResourceService, acme: Principal, group_reads: list[list[str]]) -> None:
    member = service.create(acme, USER, {"userName": "ada@example.com"})
    group = service.create(acme, GROUP, {"displayName": "Archivists", "members": [{"value": member.id}]})
    assert group.related is None  # a group's members are loaded only when asked for
    fresh = service.create(acme, USER, {"userName": "bob@example.com"})
    stored = service.get(acme, USER, member.id)

    page = service.related(acme, USER, [stored, fresh], False, True)

    assert group_reads == [[member.id]]  # only the user whose groups were not known
    assert [g["value"] for g in (page[0].related or {})["groups"]] == [group.id]
    assert page[1] is fresh and (page[1].related or {})["groups"] == []
