"""The connector data store (provisioning-engine.md §1.3): links from source anchors to target
ids with the values last exported, and the memberships exported, per job.

Links are written *after* the target answered (invariant 2 of docs/engine.md): a crash between
the two leaves an object without a link, which the next cycle finds again by matching.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from identity_sync.clock import now_text
from identity_sync.engine.model import ObjectType, Value
from identity_sync.engine.tables import engine_links, engine_memberships
from identity_sync.storage.db import Database

#: Rows per statement: far below SQLite's 32,766 bound parameters and PostgreSQL's 65,535.
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class LinkIndex:
    """What an incremental cycle needs of a link to decide "no change, no request"."""

    target_id: str
    digest: str


@dataclass(frozen=True, slots=True)
class Link:
    object_type: ObjectType
    anchor: str
    target_id: str
    digest: str
    exported: dict[str, Value]


class ConnectorStore:
    def __init__(self, db: Database, job_id: str) -> None:
        self.db = db
        self.job_id = job_id

    # -- links --------------------------------------------------------------------------------

    def index(self, object_type: ObjectType) -> dict[str, LinkIndex]:
        """Every link of one type: anchor → (target id, digest), without the exported values."""
        query = sa.select(engine_links.c.anchor, engine_links.c.target_id, engine_links.c.digest).where(
            engine_links.c.job_id == self.job_id, engine_links.c.object_type == object_type)
        with self.db.read() as conn:
            return {row.anchor: LinkIndex(row.target_id, row.digest) for row in conn.execute(query)}

    def anchors(self, object_type: ObjectType) -> list[str]:
        """The anchors of every link of one type (no more: the deletion guard counts with them)."""
        query = sa.select(engine_links.c.anchor).where(engine_links.c.job_id == self.job_id,
                                                       engine_links.c.object_type == object_type)
        with self.db.read() as conn:
            return list(conn.execute(query).scalars())

    def exported(self, object_type: ObjectType, anchors: Iterable[str]) -> dict[str, dict[str, Value]]:
        """The values last exported to each of these objects (fetched only for objects that changed)."""
        result: dict[str, dict[str, Value]] = {}
        with self.db.read() as conn:
            for chunk in _chunks(list(anchors)):
                query = sa.select(engine_links.c.anchor, engine_links.c.exported).where(
                    engine_links.c.job_id == self.job_id, engine_links.c.object_type == object_type,
                    engine_links.c.anchor.in_(chunk))
                result.update({row.anchor: row.exported for row in conn.execute(query)})
        return result

    def link(self, object_type: ObjectType, anchor: str) -> Link | None:
        query = sa.select(engine_links).where(engine_links.c.job_id == self.job_id,
                                              engine_links.c.object_type == object_type,
                                              engine_links.c.anchor == anchor)
        with self.db.read() as conn:
            row = conn.execute(query).first()
        return None if row is None else Link(object_type, anchor, row.target_id, row.digest, row.exported)

    def save_links(self, conn: Connection, links: list[Link]) -> None:
        if not links:
            return
        now = now_text()
        rows = [{"job_id": self.job_id, "object_type": link.object_type, "anchor": link.anchor,
                 "target_id": link.target_id, "digest": link.digest, "exported": link.exported, "updated_at": now}
                for link in links]
        # One statement executed for many rows (executemany): compiled once and cached, where a
        # multi-VALUES statement would be compiled again for every batch (3 s per 4,000 links).
        statement = _insert(conn)(engine_links)
        statement = statement.on_conflict_do_update(
            index_elements=["job_id", "object_type", "anchor"],
            set_={"target_id": statement.excluded.target_id, "digest": statement.excluded.digest,
                  "exported": statement.excluded.exported, "updated_at": statement.excluded.updated_at})
        conn.execute(statement, rows)

    def remove_links(self, conn: Connection, object_type: ObjectType, anchors: Iterable[str]) -> None:
        for chunk in _chunks(list(anchors)):
            conn.execute(sa.delete(engine_links).where(
                engine_links.c.job_id == self.job_id, engine_links.c.object_type == object_type,
                engine_links.c.anchor.in_(chunk)))

    def counts(self) -> dict[str, int]:
        """Linked objects by type: the progress bar's Users/Groups counts (§1.3)."""
        query = sa.select(engine_links.c.object_type, sa.func.count()).where(
            engine_links.c.job_id == self.job_id).group_by(engine_links.c.object_type)
        with self.db.read() as conn:
            found = {row[0]: row[1] for row in conn.execute(query)}
        return {"users": found.get("user", 0), "groups": found.get("group", 0)}

    # -- memberships ----------------------------------------------------------------------------

    def memberships(self, groups: Iterable[str] | None = None) -> dict[str, set[str]]:
        """Exported members by group anchor: of these groups, or of all (a few groups at a time
        keep 500,000 memberships out of memory)."""
        t = engine_memberships.c
        result: dict[str, set[str]] = {}
        chunks: Iterable[list[str] | None] = [None] if groups is None else _chunks(list(groups))
        with self.db.read() as conn:
            for chunk in chunks:
                query = sa.select(t.group_anchor, t.member_anchor).where(t.job_id == self.job_id)
                if chunk is not None:
                    query = query.where(t.group_anchor.in_(chunk))
                for group, member in conn.execute(query):
                    result.setdefault(group, set()).add(member)
        return result

    def add_memberships(self, conn: Connection, group: str, members: Iterable[str]) -> None:
        rows = [{"job_id": self.job_id, "group_anchor": group, "member_anchor": m} for m in members]
        if rows:
            conn.execute(_insert(conn)(engine_memberships).on_conflict_do_nothing(), rows)

    def remove_memberships(self, conn: Connection, group: str, members: Iterable[str]) -> None:
        for chunk in _chunks(list(members)):
            conn.execute(sa.delete(engine_memberships).where(
                engine_memberships.c.job_id == self.job_id, engine_memberships.c.group_anchor == group,
                engine_memberships.c.member_anchor.in_(chunk)))

    def forget_memberships(self, conn: Connection, anchors: Iterable[str]) -> None:
        """Forget every exported membership of these objects, as members and as groups."""
        t = engine_memberships.c
        for chunk in _chunks(list(anchors)):
            conn.execute(sa.delete(engine_memberships).where(
                t.job_id == self.job_id, sa.or_(t.member_anchor.in_(chunk), t.group_anchor.in_(chunk))))

    def forget_group(self, conn: Connection, group: str) -> None:
        conn.execute(sa.delete(engine_memberships).where(engine_memberships.c.job_id == self.job_id,
                                                         engine_memberships.c.group_anchor == group))

    def clear(self, conn: Connection) -> None:
        """``restart --reset connector-data-store``: forget every link and membership."""
        conn.execute(sa.delete(engine_links).where(engine_links.c.job_id == self.job_id))
        conn.execute(sa.delete(engine_memberships).where(engine_memberships.c.job_id == self.job_id))


def _insert(conn: Connection) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT (both databases we run on do)."""
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def _chunks(items: list[Any], size: int = _CHUNK) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
