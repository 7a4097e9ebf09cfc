"""Tenant-scoped access to SCIM resources. Every function takes the tenant id: there is no way to
express an unscoped query through this module.

Functions run on a connection the service layer opened (and will commit or roll back); they
never start or end transactions themselves.
"""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from identity_sync.errors import Conflict
from identity_sync.scim.filter_ast import Filter
from identity_sync.scim.index import IndexEntry, index_entries
from identity_sync.scim.registry import ResourceType
from identity_sync.storage import counts, listing, sqltext
from identity_sync.storage.filter_sql import compile_filter, is_selective, user_name_key
from identity_sync.storage.listing import ListRequest
from identity_sync.storage.marks import PositionMarks
from identity_sync.storage.sqltext import DriverConnection, Sql, json_value
from identity_sync.storage.tables import attr_values, resources


@dataclass(frozen=True, slots=True)
class StoredResource:
    id: str
    doc: dict[str, Any]
    version: int
    created_at: str
    last_modified: str
    deleted_at: str | None = None
    #: Multi-valued attributes kept in relations, loaded on request: ``members``, ``groups``.
    related: dict[str, list[dict[str, Any]]] | None = None


def touch(conn: Connection, tenant_id: str, rt: ResourceType, current: StoredResource, now: str) -> StoredResource:
    """A new version without a document change (a membership changed)."""
    conn.execute(
        resources.update().where(resources.c.id == current.id, *_live(tenant_id, rt))
        .values(version=current.version + 1, last_modified=now)
    )
    return StoredResource(current.id, current.doc, current.version + 1, current.created_at, now)


def _live(tenant_id: str, rt: ResourceType) -> list[sa.ColumnElement[bool]]:
    return [
        resources.c.tenant_id == tenant_id,
        resources.c.resource_type == rt.name,
        resources.c.deleted_at.is_(None),
    ]


@dataclass(frozen=True, slots=True)
class NewDocument:
    """What a new resource's rows hold, computed from its document alone: made before the write
    transaction (:func:`prepared`), so that SQLite's single writer spends its turn on statements."""

    doc: dict[str, Any]
    text: str
    entries: list[IndexEntry]


def prepared(rt: ResourceType, doc: dict[str, Any]) -> NewDocument:
    return NewDocument(doc, _json_text(doc), index_entries(rt, doc))


def insert(conn: Connection, tenant_id: str, rt: ResourceType, resource_id: str, name_key: str,
           new: NewDocument, now: str) -> StoredResource:
    """A new live resource. The caller also calls ``counts.changed`` as its transaction's last
    statement (see counts.py for why last)."""
    try:
        with _guarded(conn):
            sqltext.run(conn, _INSERT[conn.dialect.name == "postgresql"], id=resource_id, tenant=tenant_id,
                        rtype=rt.name, name_key=name_key, doc=new.text, now=now)
    except IntegrityError:
        raise _conflict(rt) from None
    _insert_entries(conn, tenant_id, resource_id, new.entries)
    return StoredResource(resource_id, new.doc, 1, now, now)


_SELECT = "SELECT r.id, r.doc, r.version, r.created_at, r.last_modified FROM resources r"
_LIVE = "r.tenant_id = {tenant} AND r.resource_type = {rtype} AND r.deleted_at IS NULL"
# With a selective filter, SQLite would walk every live row of the tenant through
# `uq_resources_live_name` and test each against the filter (13 ms at 10,000 users) instead of
# fetching the few ids the filter's index lookup yields by primary key (0.01 ms). Written this
# way, no index can serve the live-row test, except the primary key (tenant_id, id): the tenant
# stays a plain equality, the key's first column (hiding it too made every lookup a scan of the
# whole table: tests/storage/test_query_plans.py). PostgreSQL plans by cost and is unaffected.
_LIVE_UNINDEXED = "r.tenant_id = {tenant} AND r.resource_type || '' = {rtype} AND coalesce(r.deleted_at, '') = ''"
_SELECT_KEYED = ("SELECT r.id AS id, r.doc AS doc, r.version AS version, r.created_at AS created_at, "
                 "r.last_modified AS last_modified, {sort_key} AS sk FROM resources r")
_GET = f"{_SELECT} WHERE r.id = {{id}} AND {_LIVE}"


def _stored(row: Any) -> StoredResource:
    return StoredResource(row[0], json_value(row[1]), row[2], row[3], row[4])


def get(conn: Connection | DriverConnection, tenant_id: str, rt: ResourceType, resource_id: str, *,
        for_update: bool = False) -> StoredResource | None:
    """The live resource, or ``None``. ``for_update`` locks its row until the transaction ends
    (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite's write transaction already holds the lock), so
    a read-modify-write never works from a stale copy."""
    template = _GET + (" FOR UPDATE" if for_update and conn.dialect.name == "postgresql" else "")
    row = sqltext.run(conn, template, id=resource_id, tenant=tenant_id, rtype=rt.name).first()
    return _stored(row) if row else None


def exists(conn: Connection, tenant_id: str, rt: ResourceType, resource_id: str) -> bool:
    return sqltext.run(conn, f"SELECT 1 FROM resources r WHERE r.id = {{id}} AND {_LIVE}", id=resource_id,
                       tenant=tenant_id, rtype=rt.name).first() is not None


def update(conn: Connection, tenant_id: str, rt: ResourceType, current: StoredResource, name_key: str,
           doc: dict[str, Any], now: str) -> StoredResource:
    """Replace the document, bumping the version. The ``version`` condition makes a concurrent
    writer that read the same version lose with 409 instead of silently overwriting."""
    try:
        with _guarded(conn):
            result = sqltext.run(conn, _UPDATE[conn.dialect.name == "postgresql"], id=current.id,
                                 version=current.version, tenant=tenant_id, rtype=rt.name, doc=_json_text(doc),
                                 name_key=name_key, now=now)
    except IntegrityError:
        raise _conflict(rt) from None
    if result.rowcount != 1:
        raise Conflict("The resource was changed by another request; retry.", "mutability")
    # Rewrite only the index entries that changed: Entra's typical PATCH touches 1-3 of ~40 values.
    # Only the top-level attributes whose JSON differs can have changed entries (compared as JSON:
    # 1 == 1.0 == True in Python, not in the index).
    changed_keys = [key for key in current.doc.keys() | doc.keys()
                    if orjson.dumps(current.doc.get(key)) != orjson.dumps(doc.get(key))]
    before = set(index_entries(rt, current.doc, changed_keys))
    after = set(index_entries(rt, doc, changed_keys))
    stale = {(path, element) for path, element, _ in before - after} - {(p, e) for p, e, _ in after - before}
    driver = sqltext.on_driver(conn)
    if stale:
        driver.exec_driver_sql(sqltext.prepared(_DELETE_ENTRY, conn.dialect.name), [
            {"tenant_id": tenant_id, "resource_id": current.id, "path": path, "element": element}
            for path, element in stale])
    changed = after - before
    if changed:
        driver.exec_driver_sql(sqltext.prepared(_UPSERT_INDEX, conn.dialect.name),
                               _index_rows(tenant_id, current.id, changed))
    return StoredResource(current.id, doc, current.version + 1, current.created_at, now)


def soft_delete(conn: Connection, tenant_id: str, rt: ResourceType, resource_id: str, now: str) -> bool:
    """Make the resource invisible to SCIM but keep its row as a tombstone. The caller also calls
    ``counts.changed`` as its transaction's last statement (see counts.py for why last)."""
    result = conn.execute(
        resources.update().where(resources.c.id == resource_id, *_live(tenant_id, rt)).values(deleted_at=now)
    )
    if result.rowcount != 1:
        return False
    conn.execute(attr_values.delete().where(attr_values.c.tenant_id == tenant_id,
                                            attr_values.c.resource_id == resource_id))
    return True


@dataclass(frozen=True, slots=True)
class Page:
    #: ``None`` on cursor pages after the first (RFC 9865 makes it optional; counting every page
    #: would make a traversal quadratic).
    total: int | None
    resources: list[StoredResource]
    next_cursor: str | None = None


def query(conn: Connection, tenant_id: str, rt: ResourceType, node: Filter | None, *, start_index: int,
          count: int) -> tuple[int, list[StoredResource]]:
    """``(totalResults, one page)`` in creation order: :func:`search` with index paging."""
    page = search(conn, tenant_id, rt, node, ListRequest(start_index=start_index, count=count))
    assert page.total is not None
    return page.total, page.resources


def search(conn: Connection | DriverConnection, tenant_id: str, rt: ResourceType, node: Filter | None,
           request: ListRequest, marks: PositionMarks | None = None) -> Page:
    """One page of the live resources matching ``node``, in the order and by the paging method
    ``request`` asks for (see ``storage/listing.py``). ``marks`` lets index pages of unfiltered
    lists seek from where an earlier page ended (``storage/marks.py``)."""
    sql = Sql(conn.dialect.name)
    name_key = user_name_key(rt, node) if node is not None else None
    live = _LIVE_UNINDEXED if node is not None and name_key is None and is_selective(node) else _LIVE
    where = live.format(tenant=sql.named("tenant", tenant_id), rtype=sql.named("rtype", rt.name))
    if name_key is not None:  # userName eq: the unique index of live names (filter_sql.py)
        where = f"{where} AND r.name_key = {sql.named('name_key', name_key)}"
    elif node is not None:
        where = f"{where} AND {compile_filter(sql, rt, node)}"
    sort_key = listing.sort_key_sql(sql, rt, request.sort_by) if request.sort_by else None
    print_ = listing.fingerprint(rt, request)
    cursor_mode = request.cursor is not None
    # Unfiltered: the total is the kept count (read before the page: marks.py says why), wherever
    # a total is given (index pages; the first cursor page).
    wants_total = not cursor_mode or request.cursor == ""
    counted = counts.read(conn, tenant_id, rt.name) if node is None and wants_total else None
    after = listing.decode_cursor(request.cursor, print_) if request.cursor else None
    skip = 0 if cursor_mode else request.start_index - 1
    # Index pages of an unfiltered list in creation order seek from a remembered position.
    memory = (marks, counted.generation) if (marks is not None and counted is not None and sort_key is None
                                             and not cursor_mode) else None
    if memory is not None and skip > 0:
        near = memory[0].nearest((tenant_id, rt.name), memory[1], skip)
        if near is not None:
            skip, after = skip - near[0], near[1]
    order, seek = listing.order_and_seek(sql, sort_key, request.descending and sort_key is not None, after)
    rows: list[Any] = []
    if request.count > 0:
        limit = request.count + 1 if cursor_mode else request.count
        if sort_key is None and not cursor_mode and skip > 0:
            # OFFSET over ids only (an index-only walk of the live listing index), then fetch the
            # page: SQLite evaluates whole result rows even for the rows OFFSET skips. A first
            # page skips nothing and takes the plain form below: one walk of the primary key
            # per row, not two (a lookup by userName is a first page).
            ids = (f"SELECT r.id FROM resources r WHERE {where} AND {seek} ORDER BY {order} "
                   f"LIMIT {sql.named('limit', limit)} OFFSET {sql.named('offset', skip)}")
            # The tenant again outside: every reference to a tenant table names it (Citus routing).
            text = f"{_SELECT} WHERE r.tenant_id = {sql.placeholder('tenant')} AND r.id IN ({ids}) ORDER BY {order}"
        elif sort_key is None:
            text = f"{_SELECT} WHERE {where} AND {seek} ORDER BY {order} LIMIT {sql.named('limit', limit)}"
        else:
            text = (f"SELECT * FROM ({_SELECT_KEYED.format(sort_key=sort_key)} WHERE {where}) t "
                    f"WHERE {seek} ORDER BY {order} LIMIT {sql.named('limit', limit)}")
        if not cursor_mode and sort_key is not None:
            text += f" OFFSET {sql.named('offset', skip)}"
        rows = sql.run(conn, text).all()
    if memory is not None and rows:
        memory[0].remember((tenant_id, rt.name), memory[1], request.start_index - 1 + len(rows),
                           listing.position_of(rows[-1], False))
    next_cursor = None
    if cursor_mode and len(rows) > request.count:
        rows = rows[:request.count]
        next_cursor = listing.encode_cursor(listing.position_of(rows[-1], sort_key is not None), print_)
    page = [_stored(row) for row in rows]
    first_page = request.cursor == "" if cursor_mode else request.start_index == 1
    if first_page and request.count > 0 and len(rows) < request.count:
        return Page(len(page), page, next_cursor)  # the whole result is on this page: no count query
    if cursor_mode and not first_page:
        return Page(None, page, next_cursor)
    if counted is not None:
        return Page(counted.live, page, next_cursor)
    total = sql.run(conn, f"SELECT count(*) FROM resources r WHERE {where}").scalar_one()
    return Page(total, page, next_cursor)


def tombstones(conn: Connection, tenant_id: str, older_than: str | None) -> list[dict[str, Any]]:
    """The tenant's tombstones (deleted before ``older_than``), oldest first."""
    conditions = [resources.c.tenant_id == tenant_id, resources.c.deleted_at.is_not(None)]
    if older_than is not None:
        conditions.append(resources.c.deleted_at < older_than)
    rows = conn.execute(
        sa.select(resources.c.id, resources.c.tenant_id, resources.c.resource_type, resources.c.doc,
                  resources.c.deleted_at).where(*conditions).order_by(resources.c.deleted_at)
    ).all()
    return [dict(row._mapping) for row in rows]


def tombstone_ids(conn: Connection, tenant_id: str, older_than: str, limit: int) -> list[str]:
    """Up to ``limit`` ids of the tenant's tombstones deleted before ``older_than``, oldest first."""
    return list(conn.execute(
        sa.select(resources.c.id).where(resources.c.tenant_id == tenant_id, resources.c.deleted_at.is_not(None),
                                        resources.c.deleted_at < older_than)
        .order_by(resources.c.deleted_at).limit(limit)).scalars())


def purge(conn: Connection, tenant_id: str, resource_ids: list[str]) -> list[dict[str, Any]]:
    """Destroy a tenant's tombstones for good; returns those this call destroyed (``id``, ``tenant_id``,
    ``resource_type``): a concurrent purge of the same ones destroys each only once. Only the
    operator's CLI and the retention job call this; no SCIM request can."""
    destroyed: list[dict[str, Any]] = []
    for start in range(0, len(resource_ids), 500):  # PostgreSQL takes at most 65,535 parameters
        result = conn.execute(
            resources.delete()
            .where(resources.c.tenant_id == tenant_id, resources.c.id.in_(resource_ids[start:start + 500]),
                   resources.c.deleted_at.is_not(None))
            .returning(resources.c.id, resources.c.tenant_id, resources.c.resource_type)
        )
        destroyed += [dict(row._mapping) for row in result]
    return destroyed


def _insert_entries(conn: Connection, tenant_id: str, resource_id: str, entries: list[IndexEntry]) -> None:
    if not entries:
        return
    driver = sqltext.on_driver(conn)
    if conn.dialect.name == "sqlite" and _SQLITE_JSON_ROWS:
        # One statement for all of a document's entries (about 25 for a user Entra sends):
        # executemany's steps each let go of the interpreter lock, and a writer holding SQLite's
        # write lock waited to get it back up to 25 times per create.
        rows = {"resource_id": resource_id, "tenant_id": tenant_id, "entries": orjson.dumps(entries).decode()}
        driver.exec_driver_sql(sqltext.prepared(_INSERT_INDEX_FROM_JSON, "sqlite"), rows)
        return
    driver.exec_driver_sql(sqltext.prepared(_INSERT_INDEX, conn.dialect.name),
                           _index_rows(tenant_id, resource_id, entries))


# The statements of every create and update as prepared text (sqltext.py: building them with
# SQLAlchemy Core cost a tenth of a create). [False] is SQLite's, [True] PostgreSQL's (JSONB).
_INSERT = tuple(
    "INSERT INTO resources (id, tenant_id, resource_type, name_key, doc, version, created_at, last_modified) "
    f"VALUES ({{id}}, {{tenant}}, {{rtype}}, {{name_key}}, {doc}, 1, {{now}}, {{now}})"
    for doc in ("{doc}", "CAST({doc} AS JSONB)"))
_UPDATE = tuple(
    f"UPDATE resources SET doc = {doc}, name_key = {{name_key}}, version = {{version}} + 1, last_modified = {{now}} "
    "WHERE id = {id} AND version = {version} AND tenant_id = {tenant} AND resource_type = {rtype} "
    "AND deleted_at IS NULL"
    for doc in ("{doc}", "CAST({doc} AS JSONB)"))
_INSERT_INDEX = ("INSERT INTO attr_values (resource_id, tenant_id, path, element, key) "
                 "VALUES ({resource_id}, {tenant_id}, {path}, {element}, {key})")
#: SQLite 3.38 has JSON functions built in, and the ``->>`` operator.
_SQLITE_JSON_ROWS = sqlite3.sqlite_version_info >= (3, 38, 0)
_INSERT_INDEX_FROM_JSON = ("INSERT INTO attr_values (resource_id, tenant_id, path, element, key) "
                           "SELECT {resource_id}, {tenant_id}, value ->> 0, value ->> 1, value ->> 2 "
                           "FROM json_each({entries})")
# An entry whose key changed keeps its (tenant, resource, path, element) primary key: the same
# ON CONFLICT clause on both databases.
_UPSERT_INDEX = (_INSERT_INDEX + " ON CONFLICT (tenant_id, resource_id, path, element) "
                 "DO UPDATE SET key = excluded.key")
_DELETE_ENTRY = ("DELETE FROM attr_values WHERE tenant_id = {tenant_id} AND resource_id = {resource_id} "
                 "AND path = {path} AND element = {element}")


def _json_text(doc: dict[str, Any]) -> str:
    return orjson.dumps(doc).decode()


def _index_rows(tenant_id: str, resource_id: str, entries: Any) -> list[dict[str, Any]]:
    return [{"resource_id": resource_id, "tenant_id": tenant_id, "path": path, "element": element, "key": key}
            for path, element, key in entries]


def _guarded(conn: Connection) -> AbstractContextManager[Any]:
    """Where a statement may fail on a unique key: a savepoint on PostgreSQL, whose failed
    statement aborts the whole transaction. SQLite undoes only the failed statement (its ABORT
    conflict resolution) and keeps the transaction: two statements per write fewer there."""
    return conn.begin_nested() if conn.dialect.name == "postgresql" else nullcontext()


def _conflict(rt: ResourceType) -> Conflict:
    name = "userName" if rt.name == "User" else "displayName"
    return Conflict(f"A {rt.name} with this {name} already exists (compared case-insensitively).")
