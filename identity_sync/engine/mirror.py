"""The engine's copy of a job's source (table ``engine_source_objects``): what makes a source that
reports only changes — LDAP content synchronisation, Graph delta, SCIM ``meta.lastModified`` —
look complete to the cycle, and what lets an incremental cycle evaluate only what changed.

Each cycle starts with :meth:`SourceMirror.refresh`:

1. **Read.** With a cursor and an incremental cycle, ``source.read_changes(cursor, previous)``
   (``previous`` is this copy); otherwise, or when the source cannot (``None``), a complete
   ``source.read()``.
2. **See.** The complete picture as the cycle sees it: nested groups flattened when the job says so
   (engine/nesting.py), and who is assigned (direct, through groups, nested when the job says so).
3. **Compare.** Per object, a digest of what the cycle sees (its attributes and whether it is
   assigned): an object whose digest moved, a new object, and one still *pending* from an earlier
   cycle are the snapshot's ``changed``. Unassigning a group thus changes its members, and a
   change deep in a nested group changes every group that flattens it.
4. **Keep.** The new rows, digests, pending flags and the new cursor, in one transaction.

:meth:`settle` clears the pending flags at the end of a completed cycle, except for the objects
the cycle must see again (a failure, a reference not resolvable yet). A cycle that crashes clears
nothing: its objects are looked at again, never lost — the cursor only moves forward, and
everything read since the last completed cycle stays pending.

Only sources that can read changes need the attributes kept (``previous``); for the others (a CSV
export) the copy holds digests only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa

from identity_sync.engine.model import ObjectType, SourceObject, SourceSnapshot
from identity_sync.engine.nesting import flatten_groups
from identity_sync.engine.scoping import effective_assignments
from identity_sync.engine.sources.base import Source
from identity_sync.engine.tables import engine_jobs, engine_source_objects
from identity_sync.storage.db import Database

#: Rows written per statement.
CHUNK = 2000


@dataclass(frozen=True, slots=True)
class SourceView:
    """How a job looks at its source: nested groups flattened, nested groups' members assigned."""

    flatten_groups: bool = False
    nested_scope: bool = False

    def apply(self, snapshot: SourceSnapshot) -> SourceSnapshot:
        return flatten_groups(snapshot) if self.flatten_groups else snapshot


@dataclass(frozen=True, slots=True)
class Refreshed:
    """A refreshed picture: the complete snapshot the cycle works on (``changed`` set), how it was
    read (``complete`` or ``changes``) and how many entries the source read."""

    snapshot: SourceSnapshot
    mode: str
    entries_read: int


@dataclass(slots=True)
class _Row:
    text: str
    assigned: bool
    digest: str
    pending: bool


class _Objects(Mapping[str, SourceObject]):
    """Objects kept as JSON text and decoded when looked up (100k users stay ~100 MB lighter)."""

    def __init__(self, object_type: ObjectType, texts: dict[str, str]) -> None:
        self.object_type: ObjectType = object_type
        self.texts = texts

    def __getitem__(self, anchor: str) -> SourceObject:
        return SourceObject(self.object_type, anchor, json.loads(self.texts[anchor]))

    def __contains__(self, anchor: object) -> bool:
        return anchor in self.texts

    def __iter__(self) -> Iterator[str]:
        return iter(self.texts)

    def __len__(self) -> int:
        return len(self.texts)


class SourceMirror:
    def __init__(self, db: Database, job_id: str) -> None:
        self.db = db
        self.job_id = job_id

    def refresh(self, source: Source, *, incremental: bool, view: SourceView = SourceView(),
                persist: bool = True, read_complete: Callable[[], SourceSnapshot] | None = None) -> Refreshed:
        """Read the source (changes when it can), compare with the copy, keep the result (unless
        ``persist`` is false: a preview writes nothing). ``SourceError`` propagates unchanged, and
        then nothing is kept."""
        rows = self._rows()
        cursor = self._cursor()
        delta = None
        if incremental and cursor is not None and source.incremental and rows["user"] is not None:
            delta = source.read_changes(cursor, self._previous(source, rows))
        texts: dict[str, dict[str, str] | None]  # the objects' JSON texts when read as changes
        if delta is None:
            raw = (read_complete or source.read)()
            mode, entries = "complete", len(raw.users) + len(raw.groups)
            texts = {"user": None, "group": None}
        else:
            mode, entries = "changes", delta.entries_read
            changed = {kind: {a: row.text for a, row in (rows[kind] or {}).items()} for kind in ("user", "group")}
            for obj in delta.changed:
                changed[obj.object_type][obj.anchor] = _text(obj.attributes)
            for object_type, anchor in delta.removed:
                changed[object_type].pop(anchor, None)
            raw = SourceSnapshot(_Objects("user", changed["user"]), _Objects("group", changed["group"]), delta.assigned,
                                 delta.cursor, source.description)
            texts = {"user": changed["user"], "group": changed["group"]}
        seen = view.apply(raw)
        assignments = effective_assignments(seen, nested=view.nested_scope)
        assigned = {"user": assignments.users, "group": assignments.groups}
        changes: dict[str, dict[str, _Row]] = {"user": {}, "group": {}}
        pending: set[str] = set()
        for kind, objects, raw_objects in (("user", seen.users, raw.users), ("group", seen.groups, raw.groups)):
            old = rows[kind] or {}
            known = texts[kind]
            for anchor in objects:
                raw_text = known[anchor] if known is not None else _text(raw_objects[anchor].attributes)
                seen_text = raw_text if objects is raw_objects else _text(objects[anchor].attributes)
                is_assigned = anchor in assigned[kind]
                digest = _digest(seen_text, is_assigned)
                before = old.get(anchor)
                kept = raw_text if source.incremental else ""
                if before is None or before.digest != digest or before.text != kept:
                    changes[kind][anchor] = _Row(kept, is_assigned, digest, True)
                if before is None or before.digest != digest or before.pending:
                    pending.add(anchor)
        removed = {kind: [a for a in (rows[kind] or {}) if a not in (seen.users if kind == "user" else seen.groups)]
                   for kind in ("user", "group")}
        if persist:
            self._keep(changes, removed, raw.watermark)
        snapshot = replace(seen, changed=frozenset(pending))
        return Refreshed(snapshot, mode, entries)

    def with_fresh(self, source: Source, anchor: str) -> SourceSnapshot | None:
        """The copy, with the object ``anchor`` read fresh from the source (``source.get``): what
        on-demand provisioning needs of a source that can read changes, without a complete read.
        ``None`` when there is no copy to start from (a CSV export, or no cycle yet)."""
        rows = self._rows()
        if not source.incremental or rows["user"] is None:
            return None
        snapshot = self._previous(source, rows)
        fresh = source.get(anchor)
        for objects in (snapshot.users, snapshot.groups):
            assert isinstance(objects, _Objects)
            objects.texts.pop(anchor, None)
            if fresh is not None and fresh.object_type == objects.object_type:
                objects.texts[anchor] = _text(fresh.attributes)
        return snapshot

    def settle(self, again: set[str]) -> None:
        """A cycle completed: nothing is pending any more, except ``again`` (to be looked at next time)."""
        t = engine_source_objects.c
        with self.db.write() as conn:
            conn.execute(sa.update(engine_source_objects).where(t.job_id == self.job_id, t.pending.is_(True))
                         .values(pending=False))
            anchors = sorted(again)
            for start in range(0, len(anchors), CHUNK):
                conn.execute(sa.update(engine_source_objects).where(
                    t.job_id == self.job_id, t.anchor.in_(anchors[start:start + CHUNK])).values(pending=True))

    def clear(self, conn: sa.Connection) -> None:
        """Forget the copy and the cursor: the next read is a complete one (``job restart``)."""
        conn.execute(sa.delete(engine_source_objects).where(engine_source_objects.c.job_id == self.job_id))
        conn.execute(sa.update(engine_jobs).where(engine_jobs.c.id == self.job_id).values(source_cursor=None))

    # -- internals -------------------------------------------------------------------------------

    def _cursor(self) -> str | None:
        with self.db.read() as conn:
            return conn.execute(sa.select(engine_jobs.c.source_cursor).where(engine_jobs.c.id == self.job_id)).scalar()

    def _rows(self) -> dict[str, dict[str, _Row] | None]:
        """Per type, anchor → row; ``None`` for both when nothing was ever kept."""
        t = engine_source_objects.c
        rows: dict[str, dict[str, _Row]] = {"user": {}, "group": {}}
        query = sa.select(t.object_type, t.anchor, t.attributes, t.assigned, t.digest, t.pending).where(
            t.job_id == self.job_id)
        with self.db.read() as conn:
            for row in conn.execute(query):
                rows[row.object_type][row.anchor] = _Row(row.attributes, bool(row.assigned), row.digest,
                                                         bool(row.pending))
        if not rows["user"] and not rows["group"]:
            return {"user": None, "group": None}
        return dict(rows)

    def _previous(self, source: Source, rows: dict[str, dict[str, _Row] | None]) -> SourceSnapshot:
        texts = {kind: {a: row.text for a, row in (rows[kind] or {}).items()} for kind in ("user", "group")}
        assigned = frozenset(a for kind in ("user", "group") for a, row in (rows[kind] or {}).items() if row.assigned)
        return SourceSnapshot(_Objects("user", texts["user"]), _Objects("group", texts["group"]), assigned,
                              self._cursor() or "", source.description)

    def _keep(self, changes: dict[str, dict[str, _Row]], removed: dict[str, list[str]], cursor: str) -> None:
        t = engine_source_objects.c
        with self.db.write() as conn:
            for kind in ("user", "group"):
                gone = removed[kind]
                for start in range(0, len(gone), CHUNK):
                    conn.execute(sa.delete(engine_source_objects).where(
                        t.job_id == self.job_id, t.object_type == kind, t.anchor.in_(gone[start:start + CHUNK])))
                anchors = list(changes[kind])
                for start in range(0, len(anchors), CHUNK):
                    chunk = anchors[start:start + CHUNK]
                    conn.execute(sa.delete(engine_source_objects).where(
                        t.job_id == self.job_id, t.object_type == kind, t.anchor.in_(chunk)))
                    conn.execute(sa.insert(engine_source_objects), [
                        {"job_id": self.job_id, "object_type": kind, "anchor": a, "attributes": changes[kind][a].text,
                         "assigned": changes[kind][a].assigned, "digest": changes[kind][a].digest, "pending": True}
                        for a in chunk])
            conn.execute(sa.update(engine_jobs).where(engine_jobs.c.id == self.job_id).values(source_cursor=cursor))


def _text(attributes: Mapping[str, Any]) -> str:
    """The canonical JSON of an object's attributes: equal attributes, equal text."""
    return json.dumps(dict(attributes), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _digest(text: str, assigned: bool) -> str:
    return hashlib.sha256(f"{int(assigned)}{text}".encode()).hexdigest()[:32]
