"""Listing resources: sorting (RFC 7644 §3.4.2.3), index paging (``startIndex``/``count``) and
cursor paging (RFC 9865).

Order. Without ``sortBy`` resources come in creation order, ``(created_at, id)``. With ``sortBy``
the key is the attribute's value in comparison form (``scim/index.py``: so ``caseExact: false``
attributes sort case-insensitively, as RFC 7644 §3.4.2.3 asks), read from the value index by a
correlated lookup on its primary key. For a multi-valued attribute the key is the value of the
``primary`` element if there is one, else of the first element. Resources without a value sort
last in both directions. Ties are broken by ``(created_at, id)`` (reversed with ``descending``),
so the order is total.

Cursors. A cursor is the sort position of the last resource of a page (its sort key,
``created_at`` and ``id``), plus a fingerprint of the query it belongs to, base64url-encoded. The
next page is a keyset query for what comes after that position ("seek", not OFFSET), so:
* it costs the same on page 1 and on page 1,000 (paging through N resources is O(N));
* it stays correct while data changes: nothing is skipped or repeated because resources were
  created or deleted before the position, and no state is kept on the server, so any worker
  or process can serve the next page and cursors never expire.
A cursor used with another filter, sort or resource type is ``400 invalidCursor``.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from identity_sync.errors import BadRequest
from identity_sync.scim.filter import parse_patch_path
from identity_sync.scim.registry import Resolved, ResourceType
from identity_sync.storage.sqltext import Sql

_RELATIONS = frozenset({"members", "groups"})
_META_COLUMNS = {"created": "r.created_at", "lastmodified": "r.last_modified"}


@dataclass(frozen=True, slots=True)
class ListRequest:
    start_index: int = 1
    count: int = 100
    sort_by: str | None = None
    descending: bool = False
    #: ``None``: index paging. ``""``: the first page of a cursor traversal. Else a ``nextCursor``.
    cursor: str | None = None
    #: The filter text, so that a cursor cannot be replayed against another query.
    filter_text: str = ""


@dataclass(frozen=True, slots=True)
class Position:
    """Where a resource sits in the order: ``(sort key is missing, sort key, created_at, id)``."""

    missing: bool
    key: str | None
    created_at: str
    id: str


def sort_key_sql(sql: Sql, rt: ResourceType, sort_by: str) -> str:
    """SQL for the sort key of ``r`` (a column or a correlated value-index lookup)."""
    path = parse_patch_path(sort_by)
    if path.filter is not None:
        raise BadRequest("sortBy takes an attribute path without a filter.", "invalidValue")
    resolved = rt.resolve(path.attr, scim_type="invalidValue")
    attr = resolved.attribute
    if attr.name == "id":
        return "r.id"
    if attr.name == "meta":
        column = _META_COLUMNS.get(resolved.sub.name.lower()) if resolved.sub else None
        if column is None:
            raise BadRequest("sortBy supports meta.created and meta.lastModified.", "invalidValue")
        return column
    if attr.name in _RELATIONS and resolved.container is None:
        raise BadRequest(f"Cannot sort by '{attr.name}'.", "invalidValue")
    if attr.is_complex and resolved.sub is None:
        value_sub = attr.sub("value")
        if value_sub is None:
            raise BadRequest(f"Name a sub-attribute of '{attr.name}' to sort by.", "invalidValue")
        resolved = Resolved(resolved.container, attr, value_sub)
    key_path = sql.param(resolved.index_path)
    order = "s.element"
    primary = attr.sub("primary") if attr.multi_valued and attr.is_complex else None
    if primary is not None:
        # RFC 7644 §3.4.2.3: a multi-valued attribute sorts by its primary value, if any.
        flag = sql.param(Resolved(resolved.container, attr, primary).index_path)
        order = (f"NOT EXISTS (SELECT 1 FROM attr_values q WHERE q.tenant_id = s.tenant_id "
                 f"AND q.resource_id = s.resource_id "
                 f"AND q.path = {flag} AND q.element = s.element AND q.key = 'true'), s.element")
    return (f"(SELECT s.key FROM attr_values s WHERE s.tenant_id = r.tenant_id AND s.resource_id = r.id "
            f"AND s.path = {key_path} "
            f"ORDER BY {order} LIMIT 1)")


def fingerprint(rt: ResourceType, request: ListRequest) -> str:
    text = "\x1f".join((rt.name, request.filter_text, request.sort_by or "", str(request.descending)))
    return hashlib.blake2s(text.encode(), digest_size=6).hexdigest()


def encode_cursor(position: Position, print_: str) -> str:
    payload = orjson.dumps([print_, position.missing, position.key, position.created_at, position.id])
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode()


def decode_cursor(cursor: str, print_: str) -> Position:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        found, missing, key, created_at, resource_id = orjson.loads(raw)
        valid = (isinstance(missing, bool) and (key is None or isinstance(key, str))
                 and isinstance(created_at, str) and isinstance(resource_id, str))
    except (ValueError, TypeError, orjson.JSONDecodeError):
        valid, found = False, None
    if not valid:
        raise BadRequest("The cursor is not one this service issued.", "invalidCursor")
    if found != print_:
        raise BadRequest("The cursor belongs to another query (filter, sortBy or sortOrder).", "invalidCursor")
    return Position(missing, key, created_at, resource_id)


def order_and_seek(sql: Sql, sort_key: str | None, descending: bool, after: Position | None) -> tuple[str, str]:
    """``(ORDER BY list, seek condition)`` over a row source exposing ``created_at``, ``id`` and,
    when sorting by an attribute, ``sk``. The seek condition is ``1 = 1`` without a cursor."""
    direction, beyond = ("DESC", "<") if descending else ("ASC", ">")
    collate = ' COLLATE "C"' if sql.dialect == "postgresql" else ""
    if sort_key is None:
        order = f"created_at {direction}, id {direction}"
        if after is None:
            return order, "1 = 1"
        c, i = sql.param(after.created_at), sql.param(after.id)
        return order, f"(created_at, id) {beyond} ({c}, {i})"
    order = f"(sk IS NULL), sk{collate} {direction}, created_at {direction}, id {direction}"
    if after is None:
        return order, "1 = 1"
    c, i = sql.param(after.created_at), sql.param(after.id)
    if after.missing:
        return order, f"(sk IS NULL AND (created_at, id) {beyond} ({c}, {i}))"
    k = sql.param(after.key)
    return order, f"(sk IS NULL OR (sk{collate} {beyond} {k} OR (sk = {k} AND (created_at, id) {beyond} ({c}, {i}))))"


def position_of(row: Any, sorted_by_key: bool) -> Position:
    key = row[5] if sorted_by_key else None
    return Position(sorted_by_key and key is None, key, row[3], row[0])
