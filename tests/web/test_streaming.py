"""A group's full representation is streamed member page by member page; the result is the same
JSON document a small group gets, whatever the size."""

from __future__ import annotations

import sqlalchemy as sa

from identity_sync.clock import now_text
from identity_sync.ids import new_id
from identity_sync.storage import counts
from identity_sync.storage.db import Database
from identity_sync.storage.tables import memberships, resources
from identity_sync.web import streaming
from tests.conftest import ScimClient


def _bulk_users(db: Database, tenant_id: str, count: int) -> list[str]:
    ids = [new_id() for _ in range(count)]
    now = now_text()
    with db.write() as conn:
        conn.execute(resources.insert(), [
            {"id": i, "tenant_id": tenant_id, "resource_type": "User", "name_key": f"u{n}@x.com",
             "doc": {"userName": f"u{n}@x.com"}, "version": 1, "created_at": now, "last_modified": now}
            for n, i in enumerate(ids)])
        counts.recount(conn)  # rows loaded straight into the table, as a migration tool would
    return ids


def test_a_group_larger_than_one_page_streams_every_member_once(scim: ScimClient, db: Database) -> None:
    group = scim.post("/Groups", {"displayName": "Everyone"}).json()
    with db.read() as conn:
        tenant_id = conn.execute(sa.select(resources.c.tenant_id).where(resources.c.id == group["id"])).scalar_one()
    users = _bulk_users(db, tenant_id, streaming.PAGE * 2 + 17)
    with db.write() as conn:
        conn.execute(memberships.insert(), [
            {"group_id": group["id"], "member_id": u, "tenant_id": tenant_id, "member_type": "User",
             "created_at": now_text()} for u in users])
    response = scim.get(f"/Groups/{group['id']}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/scim+json")
    body = response.json()
    assert body["displayName"] == "Everyone"
    assert sorted(m["value"] for m in body["members"]) == sorted(users)
    assert all(m["type"] == "User" and m["$ref"].endswith(f"/Users/{m['value']}") for m in body["members"])
    assert response.headers["etag"] == body["meta"]["version"]


def test_an_empty_group_streams_an_empty_member_list(scim: ScimClient) -> None:
    group = scim.post("/Groups", {"displayName": "Nobody"}).json()
    assert scim.get(f"/Groups/{group['id']}").json()["members"] == []


def test_projection_applies_to_the_streamed_group(scim: ScimClient) -> None:
    user = scim.create_user("solo@x.com")
    group = scim.post("/Groups", {"displayName": "Solo", "members": [{"value": user["id"]}]}).json()
    body = scim.get(f"/Groups/{group['id']}", params={"attributes": "members"}).json()
    assert set(body) == {"schemas", "id", "members"}
    assert [m["value"] for m in body["members"]] == [user["id"]]
    assert "members" not in scim.get(f"/Groups/{group['id']}", params={"excludedAttributes": "members"}).json()
