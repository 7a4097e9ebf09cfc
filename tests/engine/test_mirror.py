"""The engine's copy of the source (engine/mirror.py): complete pictures from change-only reads,
``changed`` = what moved since the last completed cycle, nothing kept from a failed read, and
objects the cycle must see again stay pending. Sources here are small in-memory directories that
implement the source interface; the real sources have end-to-end tests of their own."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from identity_sync.config import Settings
from identity_sync.engine.jobs import Credentials, JobService
from identity_sync.engine.mirror import SourceMirror, SourceView
from identity_sync.engine.model import ObjectType, SourceError, SourceObject, SourceSnapshot
from identity_sync.engine.sources.base import SourceDelta
from identity_sync.storage.db import Database


class Directory:
    """An in-memory directory that can report its changes since a cursor (a change counter)."""

    description = "memory:"

    def __init__(self, incremental: bool = True) -> None:
        self.incremental = incremental
        self.users: dict[str, dict[str, object]] = {}
        self.groups: dict[str, dict[str, object]] = {}
        self.assigned: set[str] | None = None
        self.log: list[tuple[ObjectType, str]] = []
        self.reads: list[str] = []
        self.fail = False
        self.expired = False
        self.previous_seen: SourceSnapshot | None = None

    def put(self, object_type: ObjectType, anchor: str, **attributes: object) -> None:
        (self.users if object_type == "user" else self.groups)[anchor] = attributes
        self.log.append((object_type, anchor))

    def remove(self, object_type: ObjectType, anchor: str) -> None:
        (self.users if object_type == "user" else self.groups).pop(anchor)
        self.log.append((object_type, anchor))

    def read(self) -> SourceSnapshot:
        self.reads.append("complete")
        if self.fail:
            raise SourceError("memory: unreachable")
        return SourceSnapshot({a: SourceObject("user", a, dict(v)) for a, v in self.users.items()},
                              {a: SourceObject("group", a, dict(v)) for a, v in self.groups.items()},
                              None if self.assigned is None else frozenset(self.assigned), str(len(self.log)))

    def read_changes(self, cursor: str, previous: SourceSnapshot) -> SourceDelta | None:
        self.reads.append("changes")
        self.previous_seen = previous
        if self.fail:
            raise SourceError("memory: unreachable")
        if self.expired:
            return None
        changed: list[SourceObject] = []
        removed: list[tuple[ObjectType, str]] = []
        for object_type, anchor in dict.fromkeys(self.log[int(cursor):]):
            objects = self.users if object_type == "user" else self.groups
            if anchor in objects:
                changed.append(SourceObject(object_type, anchor, dict(objects[anchor])))
            else:
                removed.append((object_type, anchor))
        return SourceDelta(changed, removed, None if self.assigned is None else frozenset(self.assigned),
                           str(len(self.log)), entries_read=len(changed) + len(removed))

    def get(self, anchor: str) -> SourceObject | None:
        return None

    def close(self) -> None:
        pass


@pytest.fixture
def mirror(tmp_path: Path) -> SourceMirror:
    settings = Settings(data_dir=tmp_path)
    db = Database(settings.resolved_database_url())
    db.migrate()
    job = JobService(db, settings).create("j", source=f"csv:{tmp_path}", target_url="https://t.example/scim",
                                          credentials=Credentials(token="t"))
    return SourceMirror(db, job.id)


def _names(anchors: Sequence[str] | frozenset[str] | None) -> set[str]:
    return set(anchors or ())


def test_a_change_only_read_gives_a_complete_picture_and_only_the_changes(mirror: SourceMirror) -> None:
    source = Directory()
    for i in range(5):
        source.put("user", f"u{i}", userPrincipalName=f"u{i}@x", department="Sales")
    source.put("group", "g", displayName="G", members=["u0", "u1"])
    first = mirror.refresh(source, incremental=False)
    assert first.mode == "complete" and _names(first.snapshot.changed) == {"u0", "u1", "u2", "u3", "u4", "g"}
    mirror.settle(set())

    source.put("user", "u3", userPrincipalName="u3@x", department="Legal")
    source.remove("user", "u4")
    source.put("group", "g", displayName="G", members=["u0", "u1", "u3"])
    second = mirror.refresh(source, incremental=True)
    assert source.reads == ["complete", "changes"]
    assert second.mode == "changes" and second.entries_read == 3
    assert set(second.snapshot.users) == {"u0", "u1", "u2", "u3"}
    assert second.snapshot.users["u3"].attributes["department"] == "Legal"
    assert second.snapshot.users["u0"].attributes == {"userPrincipalName": "u0@x", "department": "Sales"}
    assert second.snapshot.groups["g"].attributes["members"] == ["u0", "u1", "u3"]
    assert _names(second.snapshot.changed) == {"u3", "g"}
    # The source was given the engine's copy as it was before these changes.
    assert source.previous_seen is not None and source.previous_seen.users["u3"].attributes["department"] == "Sales"


def test_nothing_changed_nothing_to_evaluate(mirror: SourceMirror) -> None:
    source = Directory(incremental=False)
    source.put("user", "u1", userPrincipalName="u1@x")
    mirror.refresh(source, incremental=False)
    mirror.settle(set())
    again = mirror.refresh(source, incremental=True)
    assert again.mode == "complete" and again.snapshot.changed == frozenset()


def test_a_failed_read_keeps_nothing_and_the_changes_come_next_time(mirror: SourceMirror) -> None:
    source = Directory()
    source.put("user", "u1", userPrincipalName="u1@x")
    mirror.refresh(source, incremental=False)
    mirror.settle(set())
    source.put("user", "u1", userPrincipalName="renamed@x")
    source.fail = True
    with pytest.raises(SourceError):
        mirror.refresh(source, incremental=True)
    source.fail = False
    later = mirror.refresh(source, incremental=True)
    assert later.snapshot.users["u1"].attributes["userPrincipalName"] == "renamed@x"
    assert _names(later.snapshot.changed) == {"u1"}


def test_a_cycle_that_did_not_settle_sees_its_objects_again(mirror: SourceMirror) -> None:
    source = Directory()
    source.put("user", "u1", userPrincipalName="u1@x")
    source.put("user", "u2", userPrincipalName="u2@x")
    mirror.refresh(source, incremental=False)  # the cycle crashed: no settle
    source.put("user", "u2", userPrincipalName="new@x")
    after_crash = mirror.refresh(source, incremental=True)
    assert _names(after_crash.snapshot.changed) == {"u1", "u2"}
    mirror.settle({"u1"})  # u1 failed: to be tried again
    quiet = mirror.refresh(source, incremental=True)
    assert _names(quiet.snapshot.changed) == {"u1"}


def test_an_expired_cursor_falls_back_to_a_complete_read(mirror: SourceMirror) -> None:
    source = Directory()
    source.put("user", "u1", userPrincipalName="u1@x")
    mirror.refresh(source, incremental=False)
    mirror.settle(set())
    source.expired = True
    source.remove("user", "u1")
    source.put("user", "u2", userPrincipalName="u2@x")
    result = mirror.refresh(source, incremental=True)
    assert source.reads == ["complete", "changes", "complete"]
    assert result.mode == "complete" and set(result.snapshot.users) == {"u2"}
    assert _names(result.snapshot.changed) == {"u2"}


def test_an_initial_cycle_reads_everything_even_with_a_cursor(mirror: SourceMirror) -> None:
    source = Directory()
    source.put("user", "u1", userPrincipalName="u1@x")
    mirror.refresh(source, incremental=False)
    mirror.refresh(source, incremental=False)
    assert source.reads == ["complete", "complete"]


def test_unassigning_a_group_changes_its_members(mirror: SourceMirror) -> None:
    source = Directory()
    source.put("user", "u1", userPrincipalName="u1@x")
    source.put("user", "u2", userPrincipalName="u2@x")
    source.put("group", "g", displayName="G", members=["u1"])
    source.assigned = {"g", "u2"}
    mirror.refresh(source, incremental=False)
    mirror.settle(set())
    source.assigned = {"u2"}
    result = mirror.refresh(source, incremental=True)
    assert _names(result.snapshot.changed) == {"u1", "g"}


def test_a_change_deep_in_nested_groups_changes_every_group_that_flattens_it(mirror: SourceMirror) -> None:
    source = Directory()
    for anchor in ("u1", "u2"):
        source.put("user", anchor, userPrincipalName=f"{anchor}@x")
    source.put("group", "top", displayName="Top", members=["mid"])
    source.put("group", "mid", displayName="Mid", members=["low"])
    source.put("group", "low", displayName="Low", members=["u1"])
    source.put("group", "other", displayName="Other", members=["u1"])
    view = SourceView(flatten_groups=True)
    first = mirror.refresh(source, incremental=False, view=view)
    assert first.snapshot.groups["top"].attributes["members"] == ["u1"]
    mirror.settle(set())
    source.put("group", "low", displayName="Low", members=["u1", "u2"])
    result = mirror.refresh(source, incremental=True, view=view)
    assert _names(result.snapshot.changed) == {"top", "mid", "low"}
    assert result.snapshot.groups["top"].attributes["members"] == ["u1", "u2"]


def test_a_preview_keeps_nothing(mirror: SourceMirror) -> None:
    source = Directory()
    source.put("user", "u1", userPrincipalName="u1@x")
    mirror.refresh(source, incremental=False)
    mirror.settle(set())
    source.put("user", "u1", userPrincipalName="u1-new@x")
    preview = mirror.refresh(source, incremental=True, persist=False)
    assert _names(preview.snapshot.changed) == {"u1"}
    real = mirror.refresh(source, incremental=True)
    assert _names(real.snapshot.changed) == {"u1"}
    assert real.snapshot.users["u1"].attributes["userPrincipalName"] == "u1-new@x"


def test_clear_makes_the_next_read_a_complete_one(mirror: SourceMirror) -> None:
    source = Directory()
    source.put("user", "u1", userPrincipalName="u1@x")
    mirror.refresh(source, incremental=False)
    with mirror.db.write() as conn:
        mirror.clear(conn)
    mirror.refresh(source, incremental=True)
    assert source.reads == ["complete", "complete"]


def test_on_demand_reads_one_object_fresh_over_the_copy(mirror: SourceMirror) -> None:
    source = Directory()
    source.put("user", "u1", userPrincipalName="u1@x")
    source.put("user", "u2", userPrincipalName="u2@x")
    source.put("group", "g", displayName="G", members=["u1"])

    def get(anchor: str) -> SourceObject | None:
        attributes = source.users.get(anchor)
        return None if attributes is None else SourceObject("user", anchor, dict(attributes))

    source.get = get  # type: ignore[method-assign]
    assert mirror.with_fresh(source, "u1") is None  # no copy yet: the caller reads completely
    mirror.refresh(source, incremental=False)
    source.users["u1"] = {"userPrincipalName": "renamed@x"}
    picture = mirror.with_fresh(source, "u1")
    assert picture is not None and source.reads == ["complete"]  # no second complete read
    assert picture.users["u1"].attributes["userPrincipalName"] == "renamed@x"
    assert picture.users["u2"].attributes["userPrincipalName"] == "u2@x" and "g" in picture.groups
    del source.users["u2"]
    assert "u2" not in mirror.with_fresh(source, "u2").users  # type: ignore[union-attr]
    assert mirror.with_fresh(Directory(incremental=False), "u1") is None  # digests only: nothing to start from
