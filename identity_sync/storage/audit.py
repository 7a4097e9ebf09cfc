"""The audit trail (``audit_events``): appended to in the transaction of the change it records,
read by the operator's CLI. Nothing here updates or deletes an event."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from identity_sync.storage import sqltext
from identity_sync.storage.tables import audit_events

#: The actor of changes made by an operator through the CLI (purges, legal hold, retention).
OPERATOR = "operator:cli"
#: The actor of the service's own retention job.
RETENTION = "service:retention"


@dataclass(frozen=True, slots=True)
class Event:
    tenant_id: str
    at: str
    actor: str
    action: str
    resource_type: str
    resource_id: str
    version: int | None
    attributes: Iterable[str] = ()


def record(conn: Connection, *events: Event) -> None:
    """Append events, in one statement. Call it at the end of the transaction (only
    ``counts.changed`` after it).

    On PostgreSQL a tenant's writers take a lock here that they hold until they commit, so that a
    tenant's events commit in the order of their ids: an export that continues after the last id
    it saw (``--tenant … --after``) can then never miss an event that committed late. Each
    tenant's lock is taken once, in tenant order (so two writers of several tenants cannot
    deadlock). SQLite runs one writer at a time anyway."""
    if not events:
        return
    if conn.dialect.name == "postgresql":
        for tenant_id in sorted({event.tenant_id for event in events}):
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtextextended(%(key)s, 0))",
                                 {"key": f"audit:{tenant_id}"})
    rows = [{
        "tenant_id": e.tenant_id, "at": e.at, "actor": e.actor, "action": e.action, "resource_type": e.resource_type,
        "resource_id": e.resource_id, "version": e.version, "attributes": orjson.dumps(sorted(e.attributes)).decode(),
    } for e in sorted(events, key=lambda e: e.tenant_id)]
    # Prepared text, not a Core insert: built on every write, that cost more than the statement.
    template = _INSERT_SQLITE if conn.dialect.name == "sqlite" else _INSERT
    sqltext.on_driver(conn).exec_driver_sql(sqltext.prepared(template, conn.dialect.name),
                                            rows if len(rows) > 1 else rows[0])


_INSERT = ("INSERT INTO audit_events (tenant_id, at, actor, action, resource_type, resource_id, version, attributes) "
           "VALUES ({tenant_id}, {at}, {actor}, {action}, {resource_type}, {resource_id}, {version}, {attributes})")
# No sequence on SQLite, and no autoincrement in the composite key (tenant_id, id): each row takes
# the highest id plus one (an index lookup on ix_audit_events_id; each row of the executemany sees
# the one before; one writer at a time on SQLite, group commit included).
_INSERT_SQLITE = (
    "INSERT INTO audit_events (id, tenant_id, at, actor, action, resource_type, resource_id, version, attributes) "
    "VALUES ((SELECT coalesce(max(audit_events.id), 0) + 1 FROM audit_events), "
    "{tenant_id}, {at}, {actor}, {action}, {resource_type}, {resource_id}, {version}, {attributes})")


def events(conn: Connection, *, tenant_id: str | None, since: str | None, resource_id: str | None,
           limit: int, after: int | None = None) -> list[dict[str, Any]]:
    """The oldest ``limit`` events matching, in the order they were written; ``after`` continues
    an export after the event of that ``id``."""
    query = sa.select(audit_events).order_by(audit_events.c.id).limit(limit)
    if after is not None:
        query = query.where(audit_events.c.id > after)
    if tenant_id is not None:
        query = query.where(audit_events.c.tenant_id == tenant_id)
    if since is not None:
        query = query.where(audit_events.c.at >= since)
    if resource_id is not None:
        query = query.where(audit_events.c.resource_id == resource_id)
    return [{**row._asdict(), "attributes": orjson.loads(row.attributes)} for row in conn.execute(query)]


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """The console's filters of the trail; every field optional (``tenant_id`` ``""`` is the
    service's own events). ``since``/``until`` are stored-form timestamps: ``since <= at < until``."""

    tenant_id: str | None = None
    actor: str | None = None
    action: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    since: str | None = None
    until: str | None = None

    def where(self, query: sa.Select[Any]) -> sa.Select[Any]:
        t = audit_events.c
        for name in ("tenant_id", "actor", "action", "resource_type", "resource_id"):
            value = getattr(self, name)
            if value is not None:
                query = query.where(t[name] == value)
        if self.since is not None:
            query = query.where(t.at >= self.since)
        if self.until is not None:
            query = query.where(t.at < self.until)
        return query

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


def newest(conn: Connection, audit_filter: AuditFilter, *, before: int | None, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` events matching, newest first, of ids below ``before`` (keyset paging: a
    page deep in a long trail costs what the first does)."""
    query = audit_filter.where(sa.select(audit_events))
    if before is not None:
        query = query.where(audit_events.c.id < before)
    query = query.order_by(audit_events.c.id.desc()).limit(limit)
    return [{**row._asdict(), "attributes": orjson.loads(row.attributes)} for row in conn.execute(query)]


def latest(conn: Connection, *, tenant_id: str, resource_id: str | None, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` events of a tenant (or of one of its resources), newest first."""
    query = sa.select(audit_events).where(audit_events.c.tenant_id == tenant_id).order_by(audit_events.c.id.desc())
    if resource_id is not None:
        query = query.where(audit_events.c.resource_id == resource_id)
    return [{**row._asdict(), "attributes": orjson.loads(row.attributes)} for row in conn.execute(query.limit(limit))]
