"""Adding a member while that member is being deleted (PostgreSQL, where writers run in
parallel; SQLite runs one writer at a time). The delete holds the member's row lock while it
retires its memberships; the add must neither deadlock with it (the live-count row is taken
last, storage/counts.py; only new members are locked, service/resources.py) nor leave a group
with a deleted member. Each test forces its interleaving: the delete is held after taking its
lock until the add has started."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from identity_sync.auth.tokens import Principal
from identity_sync.errors import BadRequest
from identity_sync.scim.registry import GROUP, USER
from identity_sync.service.resources import ResourceService
from identity_sync.service.tenants import TenantService
from identity_sync.storage import memberships
from identity_sync.storage.db import Database
from identity_sync.storage.listing import ListRequest

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@pytest.fixture
def acme(db_kind: str, tenants: TenantService) -> Principal:
    if db_kind != "postgresql":
        pytest.skip("SQLite runs one writer at a time: these interleavings cannot happen")
    return tenants.authenticate(f"Bearer {tenants.create_tenant('acme').token}", "acme")


def race(monkeypatch: pytest.MonkeyPatch, delete: Callable[[], Any], add: Callable[[], Any]) -> dict[str, str]:
    """Run ``delete`` and ``add`` in two threads: ``delete`` takes its locks, then waits in
    ``memberships.retire`` until ``add`` has been running for 0.3 s. ``{"delete"|"add": outcome}``."""
    add_started = threading.Event()
    real_retire = memberships.retire

    def held_retire(conn: Any, tenant_id: str, resource_id: str, now: str) -> int:
        add_started.wait(5)
        time.sleep(0.3)  # the add is now waiting for a lock the delete holds (or would deadlock)
        return real_retire(conn, tenant_id, resource_id, now)

    monkeypatch.setattr(memberships, "retire", held_retire)
    outcomes: dict[str, str] = {}

    def run(name: str, action: Callable[[], Any], delay: float) -> None:
        time.sleep(delay)
        if name == "add":
            add_started.set()
        try:
            action()
            outcomes[name] = "ok"
        except BadRequest as exc:
            outcomes[name] = f"400 {exc.scim_type}"
        except Exception as exc:
            outcomes[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"

    threads = [threading.Thread(target=run, args=("delete", delete, 0.0)),
               threading.Thread(target=run, args=("add", add, 0.2))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


def members_that_are_tombstones(db: Database) -> int:
    with db.read() as conn:
        return conn.execute(sa.text(
            "SELECT count(*) FROM memberships m JOIN resources r ON r.id = m.member_id "
            "WHERE r.deleted_at IS NOT NULL")).scalar_one()


def test_creating_a_group_with_a_member_being_deleted(monkeypatch: pytest.MonkeyPatch, db: Database,
                                                      service: ResourceService, acme: Principal) -> None:
    doomed = service.create(acme, GROUP, {"displayName": "Doomed"})
    outcomes = race(monkeypatch, lambda: service.delete(acme, GROUP, doomed.id, None),
                    lambda: service.create(acme, GROUP, {"displayName": "New", "members": [{"value": doomed.id}]}))
    # The add waited for the delete and then found its member gone: nothing was created.
    assert outcomes == {"delete": "ok", "add": "400 invalidValue"}
    assert members_that_are_tombstones(db) == 0
    assert service.search(acme, GROUP, None, ListRequest()).total == 0


def test_adding_a_user_being_deleted_to_an_existing_group(monkeypatch: pytest.MonkeyPatch, db: Database,
                                                          service: ResourceService, acme: Principal) -> None:
    user = service.create(acme, USER, {"userName": "leaver@x.com"})
    group = service.create(acme, GROUP, {"displayName": "Sales"})
    patch = {"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": user.id}]}]}
    outcomes = race(monkeypatch, lambda: service.delete(acme, USER, user.id, None),
                    lambda: service.patch(acme, GROUP, group.id, patch, None))
    assert outcomes == {"delete": "ok", "add": "400 invalidValue"}
    assert members_that_are_tombstones(db) == 0


def test_re_adding_an_existing_member_while_it_is_deleted(monkeypatch: pytest.MonkeyPatch, db: Database,
                                                          service: ResourceService, acme: Principal) -> None:
    # Entra re-sends members a group already has. The delete locks the user and then the groups
    # it leaves; the PATCH locks the group. Were the PATCH to lock the user too, they would
    # deadlock.
    user = service.create(acme, USER, {"userName": "leaver@x.com"})
    group = service.create(acme, GROUP, {"displayName": "Sales", "members": [{"value": user.id}]})
    patch = {"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": user.id}]}]}
    outcomes = race(monkeypatch, lambda: service.delete(acme, USER, user.id, None),
                    lambda: service.patch(acme, GROUP, group.id, patch, None))
    assert outcomes == {"delete": "ok", "add": "ok"}
    assert members_that_are_tombstones(db) == 0
    with db.read() as conn:
        assert list(memberships.members_of(conn, acme.tenant_id, group.id)) == []
