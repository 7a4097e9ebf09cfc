"""Kept live counts (storage/counts.py): they follow every create and delete, ignore what changes
neither (updates, refused requests, tombstone purges), start from the existing rows when the
migration adds them, and give unfiltered lists their ``totalResults``."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from identity_sync.auth.tokens import Principal
from identity_sync.errors import BadRequest, Conflict, NotFound
from identity_sync.scim.registry import GROUP, USER
from identity_sync.service.resources import ResourceService
from identity_sync.service.tenants import TenantService
from identity_sync.service.tombstones import TombstoneService
from identity_sync.storage import counts
from identity_sync.storage.db import MIGRATIONS, Database
from identity_sync.storage.listing import ListRequest

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def live(db: Database, principal: Principal, type_name: str = "User") -> counts.LiveCount:
    with db.fast_read() as conn:
        return counts.read(conn, principal.tenant_id, type_name)


def true_count(db: Database, principal: Principal, type_name: str = "User") -> int:
    with db.read() as conn:
        return conn.execute(sa.text(
            "SELECT count(*) FROM resources WHERE tenant_id = :t AND resource_type = :r AND deleted_at IS NULL"),
            {"t": principal.tenant_id, "r": type_name}).scalar_one()


def test_a_tenant_without_resources_counts_zero(db: Database, acme: Principal) -> None:
    assert live(db, acme) == counts.LiveCount(0, 0)


def test_creates_and_deletes_move_the_count_and_the_generation(
        db: Database, service: ResourceService, acme: Principal) -> None:
    generations = {live(db, acme).generation}
    users = []
    for i in range(5):
        users.append(service.create(acme, USER, {"userName": f"u{i}@x.com"}))
        generations.add(live(db, acme).generation)
    assert live(db, acme).live == 5
    service.delete(acme, USER, users[0].id, None)
    generations.add(live(db, acme).generation)
    service.delete(acme, USER, users[1].id, None)
    generations.add(live(db, acme).generation)
    assert live(db, acme).live == 3
    assert len(generations) == 8  # every change of the live set: a generation never seen before
    service.create(acme, USER, {"userName": "u0@x.com"})  # a deleted userName, reused
    assert live(db, acme).live == 4 == true_count(db, acme)


def test_updates_and_refused_requests_change_nothing(db: Database, service: ResourceService, acme: Principal) -> None:
    user = service.create(acme, USER, {"userName": "a@x.com"})
    before = live(db, acme)
    service.patch(acme, USER, user.id, {"schemas": [PATCH], "Operations": [
        {"op": "replace", "path": "active", "value": False}]}, None)
    service.replace(acme, USER, user.id, {"userName": "b@x.com"}, None)
    with pytest.raises(Conflict):
        service.create(acme, USER, {"userName": "B@x.com"})
    with pytest.raises(NotFound):
        service.delete(acme, USER, "no-such-id", None)
    assert live(db, acme) == before and before.live == 1


def test_a_create_refused_after_its_insert_leaves_no_count_behind(
        db: Database, service: ResourceService, acme: Principal) -> None:
    # The group row is written before its members are checked: the refusal rolls all of it back.
    with pytest.raises(BadRequest):
        service.create(acme, GROUP, {"displayName": "G", "members": [{"value": "no-such-user"}]})
    assert live(db, acme, "Group") == counts.LiveCount(0, 0) and true_count(db, acme, "Group") == 0


def test_types_and_tenants_are_counted_apart(db: Database, service: ResourceService, acme: Principal,
                                             tenants: TenantService) -> None:
    globex = tenants.authenticate(f"Bearer {tenants.create_tenant('globex').token}", "globex")
    user = service.create(acme, USER, {"userName": "a@x.com"})
    service.create(acme, GROUP, {"displayName": "Sales", "members": [{"value": user.id}]})
    service.create(globex, USER, {"userName": "a@x.com"})
    service.create(globex, USER, {"userName": "b@x.com"})
    assert (live(db, acme).live, live(db, acme, "Group").live, live(db, globex).live) == (1, 1, 2)


def test_purging_tombstones_leaves_the_live_count(db: Database, service: ResourceService, acme: Principal) -> None:
    keep, gone = (service.create(acme, USER, {"userName": f"{n}@x.com"}) for n in ("keep", "gone"))
    service.delete(acme, USER, gone.id, None)
    assert TombstoneService(db).purge("acme", "9999-12-31T00:00:00Z") == 1
    assert live(db, acme).live == 1 == true_count(db, acme)


def test_an_unfiltered_list_gives_the_kept_count_as_its_total(
        db: Database, service: ResourceService, acme: Principal) -> None:
    for i in range(7):
        service.create(acme, USER, {"userName": f"u{i}@x.com"})
    with db.write() as conn:  # only a test may make the kept count lie, to show it is the one used
        conn.execute(sa.text("UPDATE resource_counts SET live = 70"))
    assert service.search(acme, USER, None, ListRequest(start_index=3, count=2)).total == 70
    assert service.search(acme, USER, "userName sw \"u\"", ListRequest(start_index=3, count=2)).total == 7


def test_recount_rebuilds_the_counts_from_the_rows_and_changes_every_generation(
        db: Database, service: ResourceService, acme: Principal) -> None:
    for i in range(3):
        service.create(acme, USER, {"userName": f"u{i}@x.com"})
    group = service.create(acme, GROUP, {"displayName": "G"})
    service.delete(acme, GROUP, group.id, None)
    before = (live(db, acme), live(db, acme, "Group"))
    with db.write() as conn:
        conn.execute(sa.text("UPDATE resource_counts SET live = 99"))
        assert counts.recount(conn) == 2
    after = (live(db, acme), live(db, acme, "Group"))
    assert (after[0].live, after[1].live) == (3, 0)
    assert after[0].generation != before[0].generation and after[1].generation != before[1].generation


def _upgrade(url: str, revision: str) -> None:
    db = Database(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with db.engine.connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
        conn.commit()
    db.dispose()


def test_the_migration_counts_the_rows_that_exist(empty_url: str) -> None:
    url = empty_url
    _upgrade(url, "0006")
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    rows: list[dict[str, Any]] = []
    for n, (tenant, rtype, deleted) in enumerate([("t1", "User", None), ("t1", "User", None),
                                                  ("t1", "User", "2026-01-02T00:00:00Z"), ("t1", "Group", None),
                                                  ("t2", "User", None)]):
        rows.append({"id": f"r{n}", "tenant_id": tenant, "resource_type": rtype, "name_key": f"n{n}",
                     "doc": "{}", "version": 1, "created_at": "2026-01-01T00:00:00Z",
                     "last_modified": "2026-01-01T00:00:00Z", "deleted_at": deleted})
    with engine.begin() as conn:
        for tenant in ("t1", "t2"):
            conn.execute(sa.text("INSERT INTO tenants (id, name, status, created_at) "
                                 "VALUES (:t, :t, 'active', '2026-01-01T00:00:00Z')"), {"t": tenant})
        conn.execute(sa.text(
            "INSERT INTO resources (id, tenant_id, resource_type, name_key, doc, version, created_at, "
            "last_modified, deleted_at) VALUES (:id, :tenant_id, :resource_type, :name_key, :doc, :version, "
            ":created_at, :last_modified, :deleted_at)"), rows)
    engine.dispose()
    _upgrade(url, "head")
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        found = {tuple(row) for row in conn.execute(sa.text(
            "SELECT tenant_id, resource_type, live, generation FROM resource_counts"))}
    engine.dispose()
    assert found == {("t1", "User", 2, 0), ("t1", "Group", 1, 0), ("t2", "User", 1, 0)}
