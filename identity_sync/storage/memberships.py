"""Group memberships: set operations on the ``memberships`` relation.

Every function costs O(members named), never O(group size), except those that by their nature
touch the whole set (``remove_all``, ``members_of`` for a full read, ``retire`` on delete).

Every statement names the tenant (``tenant_id`` leads the keys: docs/deployment.md, Citus), and
memberships point at their group and member by ``(tenant_id, id)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from identity_sync.storage.sqltext import DriverConnection, Sql, json_value
from identity_sync.storage.tables import former_memberships, memberships, resources


def live_members(conn: Connection, tenant_id: str, ids: Iterable[str]) -> dict[str, str]:
    """``{id: resource type}`` of those ``ids`` that are live Users or Groups of the tenant.

    On PostgreSQL the rows found stay locked (``FOR KEY SHARE``, the lock the membership's foreign
    key takes anyway) until the transaction ends: a concurrent delete of a member then waits,
    and retires the new membership with the others, instead of committing between this check
    and the insert and leaving a group with a deleted member. A delete that got there first is
    seen: the locking read re-checks ``deleted_at`` on the committed row."""
    wanted = list(dict.fromkeys(ids))
    found: dict[str, str] = {}
    for chunk in _chunks(wanted, 500):
        query = sa.select(resources.c.id, resources.c.resource_type).where(
            resources.c.tenant_id == tenant_id,
            resources.c.id.in_(chunk),
            resources.c.deleted_at.is_(None),
        )
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(key_share=True, read=True)
        rows = conn.execute(query).all()
        found.update({row.id: row.resource_type for row in rows})
    return found


def already_members(conn: Connection, tenant_id: str, group_id: str, ids: Iterable[str]) -> set[str]:
    """Those of ``ids`` that are members of the group now (an index lookup per 500 ids)."""
    present: set[str] = set()
    for chunk in _chunks(list(dict.fromkeys(ids)), 500):
        present.update(conn.execute(sa.select(memberships.c.member_id).where(
            memberships.c.tenant_id == tenant_id, memberships.c.group_id == group_id,
            memberships.c.member_id.in_(chunk))).scalars())
    return present


def add(conn: Connection, tenant_id: str, group_id: str, members: dict[str, str], now: str) -> int:
    """Insert the memberships that do not exist yet; returns how many were new."""
    if not members:
        return 0
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    rows = [
        {"group_id": group_id, "member_id": member_id, "tenant_id": tenant_id, "member_type": kind,
         "created_at": now}
        for member_id, kind in members.items()
    ]
    added = 0
    for chunk in _chunks(rows, 500):
        # Count what RETURNING yields: an executemany's rowcount is -1 on psycopg (SQLAlchemy
        # batches it as multi-row VALUES), which would hide a real change from the caller.
        result = conn.execute(insert(memberships).on_conflict_do_nothing().returning(memberships.c.member_id), chunk)
        added += len(result.all())
    return added


def remove(conn: Connection, tenant_id: str, group_id: str, member_ids: Iterable[str]) -> int:
    removed = 0
    for chunk in _chunks(list(dict.fromkeys(member_ids)), 500):
        result = conn.execute(memberships.delete().where(
            memberships.c.tenant_id == tenant_id, memberships.c.group_id == group_id,
            memberships.c.member_id.in_(chunk)))
        removed += result.rowcount
    return removed


def remove_all(conn: Connection, tenant_id: str, group_id: str) -> int:
    return conn.execute(memberships.delete().where(
        memberships.c.tenant_id == tenant_id, memberships.c.group_id == group_id)).rowcount


def member_page(conn: Connection, tenant_id: str, group_id: str, after: str, limit: int) -> list[tuple[str, str]]:
    """Up to ``limit`` ``(member id, type)`` pairs with ids above ``after``, in id order: one
    step of keyset pagination over the primary key, O(limit) at any group size."""
    rows = conn.execute(
        sa.select(memberships.c.member_id, memberships.c.member_type)
        .where(memberships.c.tenant_id == tenant_id, memberships.c.group_id == group_id,
               memberships.c.member_id > after)
        .order_by(memberships.c.member_id)
        .limit(limit)
    ).all()
    return [(row.member_id, row.member_type) for row in rows]


def members_of(conn: Connection, tenant_id: str, group_id: str, batch: int = 1000) -> Iterator[tuple[str, str]]:
    """``(member id, type)`` of every member, in id order, fetched ``batch`` rows at a time, so
    that a huge group is never held in memory at once."""
    after = ""
    while True:
        page = member_page(conn, tenant_id, group_id, after, batch)
        yield from page
        if len(page) < batch:
            return
        after = page[-1][0]


def groups_of(conn: Connection | DriverConnection, tenant_id: str,
              member_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The direct groups of each member: ``{member id: [{"value", "display"}]}`` (read on every
    User GET, so prepared SQL text)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for chunk in _chunks(member_ids, 500):
        sql = Sql(conn.dialect.name)
        tenant = sql.param(tenant_id)
        ids = ", ".join(sql.param(member_id) for member_id in chunk)
        rows = sql.run(conn, (
            "SELECT m.member_id, m.group_id, r.doc FROM memberships m "
            "JOIN resources r ON r.tenant_id = m.tenant_id AND r.id = m.group_id "
            f"WHERE m.tenant_id = {tenant} AND m.member_id IN ({ids}) ORDER BY m.member_id, m.group_id")).all()
        for member_id, group_id, doc in rows:
            out.setdefault(member_id, []).append({"value": group_id, "display": json_value(doc).get("displayName")})
    return out


def retire(conn: Connection, tenant_id: str, resource_id: str, now: str) -> list[tuple[str, int]]:
    """On deleting a user or group: move every membership it takes part in (as member or as
    group) to ``former_memberships``, where the tombstone keeps them, out of every SCIM view.
    The groups that lose it as a member get a new version, as for any membership change (else a
    client's ``If-None-Match`` would be answered 304 with the deleted member still listed);
    returns them, ``(group id, new version)``, for the audit trail.

    Each side is its own indexed statement: an ``OR`` of the two columns made SQLite scan."""
    mine = memberships.c.tenant_id == tenant_id
    groups = [row[0] for row in conn.execute(
        sa.select(memberships.c.group_id).where(mine, memberships.c.member_id == resource_id)).all()]
    bumped: list[tuple[str, int]] = []
    for chunk in _chunks(groups, 500):
        bumped += [(row[0], row[1]) for row in conn.execute(
            resources.update().where(resources.c.tenant_id == tenant_id, resources.c.id.in_(chunk),
                                     resources.c.deleted_at.is_(None))
            .values(version=resources.c.version + 1, last_modified=now)
            .returning(resources.c.id, resources.c.version))]
    for column in (memberships.c.member_id, memberships.c.group_id):
        columns = ["tenant_id", "group_id", "member_id", "member_type", "created_at", "ended_at"]
        values: list[Any] = [memberships.c.tenant_id, memberships.c.group_id, memberships.c.member_id,
                             memberships.c.member_type, memberships.c.created_at, sa.literal(now)]
        if conn.dialect.name == "sqlite":
            # No sequence on SQLite, and no autoincrement in a composite key: the tenant's highest
            # id (its primary key's last entry) plus the row's number. One writer at a time there.
            highest = sa.select(sa.func.coalesce(sa.func.max(former_memberships.c.id), 0)).where(
                former_memberships.c.tenant_id == tenant_id).scalar_subquery()
            columns.append("id")
            values.append(highest + sa.func.row_number().over())
        conn.execute(former_memberships.insert().from_select(
            columns, sa.select(*values).where(mine, column == resource_id), include_defaults=False))
        conn.execute(memberships.delete().where(mine, column == resource_id))
    return sorted(bumped)


def former_of(conn: Connection, tenant_id: str, resource_ids: list[str]) -> dict[str, list[dict[str, str]]]:
    """For each tombstone, the memberships it had when it was deleted: as member
    (``{"group": id}``) or as group (``{"member": id, "type": …}``)."""
    out: dict[str, list[dict[str, str]]] = {}
    for chunk in _chunks(resource_ids, 500):
        rows = conn.execute(sa.select(former_memberships).where(former_memberships.c.tenant_id == tenant_id, sa.or_(
            former_memberships.c.group_id.in_(chunk), former_memberships.c.member_id.in_(chunk)))).all()
        for row in rows:
            if row.member_id in chunk:
                out.setdefault(row.member_id, []).append({"group": row.group_id, "ended_at": row.ended_at})
            if row.group_id in chunk:
                out.setdefault(row.group_id, []).append(
                    {"member": row.member_id, "type": row.member_type, "ended_at": row.ended_at})
    return out


def forget(conn: Connection, tenant_id: str, resource_ids: list[str]) -> None:
    """Purge the former memberships of a tenant's tombstones being destroyed."""
    for chunk in _chunks(resource_ids, 500):
        conn.execute(former_memberships.delete().where(former_memberships.c.tenant_id == tenant_id, sa.or_(
            former_memberships.c.group_id.in_(chunk), former_memberships.c.member_id.in_(chunk))))


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
