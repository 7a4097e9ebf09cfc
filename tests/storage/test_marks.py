"""Remembered list positions (storage/marks.py): a mark is used only for its own generation, the
nearest one at or before the asked offset is found, and the cache stays bounded."""

from __future__ import annotations

from identity_sync.storage.listing import Position
from identity_sync.storage.marks import PositionMarks

KEY = ("tenant-1", "User")


def at(n: int) -> Position:
    return Position(False, None, f"2026-01-01T00:00:{n:02d}Z", f"id-{n}")


def test_the_nearest_mark_at_or_before_the_offset_is_found() -> None:
    marks = PositionMarks()
    for position in (100, 300, 200):
        marks.remember(KEY, 1, position, at(position))
    assert marks.nearest(KEY, 1, 99) is None
    assert marks.nearest(KEY, 1, 100) == (100, at(100))
    assert marks.nearest(KEY, 1, 250) == (200, at(200))
    assert marks.nearest(KEY, 1, 10_000) == (300, at(300))


def test_marks_of_another_generation_are_never_used() -> None:
    marks = PositionMarks()
    marks.remember(KEY, 1, 100, at(1))
    assert marks.nearest(KEY, 2, 100) is None
    marks.remember(KEY, 2, 200, at(2))
    assert marks.nearest(KEY, 1, 100) is None  # generation 1 was dropped when 2 was seen
    assert marks.nearest(KEY, 2, 150) is None
    assert marks.nearest(KEY, 2, 200) == (200, at(2))


def test_marks_follow_the_generation_last_seen_whichever_it_is() -> None:
    # Generations are random (counts.py), so "newer" cannot be told from the number: a list keeps
    # the marks of the generation it was last told about, and no others.
    marks = PositionMarks()
    marks.remember(KEY, 5, 100, at(5))
    marks.remember(KEY, 4, 200, at(4))
    assert marks.nearest(KEY, 5, 200) is None
    assert marks.nearest(KEY, 4, 200) == (200, at(4))


def test_lists_are_kept_apart_by_tenant_and_type() -> None:
    marks = PositionMarks()
    marks.remember(("t1", "User"), 1, 100, at(1))
    assert marks.nearest(("t2", "User"), 1, 100) is None
    assert marks.nearest(("t1", "Group"), 1, 100) is None


def test_each_list_keeps_its_most_recently_remembered_marks_only() -> None:
    marks = PositionMarks(max_marks=3)
    for position in (100, 200, 300):
        marks.remember(KEY, 1, position, at(position // 100))
    marks.remember(KEY, 1, 100, at(1))  # remembered again: now the most recent
    marks.remember(KEY, 1, 400, at(4))
    assert marks.nearest(KEY, 1, 250) == (100, at(1))  # 200 was the least recently remembered
    assert marks.nearest(KEY, 1, 350) == (300, at(3))
    assert marks.nearest(KEY, 1, 450) == (400, at(4))


def test_the_least_recently_used_list_goes_first() -> None:
    marks = PositionMarks(max_lists=2)
    marks.remember(("a", "User"), 1, 100, at(1))
    marks.remember(("b", "User"), 1, 100, at(2))
    assert marks.nearest(("a", "User"), 1, 100) is not None  # "a" is now the most recently used
    marks.remember(("c", "User"), 1, 100, at(3))
    assert marks.nearest(("b", "User"), 1, 100) is None
    assert marks.nearest(("a", "User"), 1, 100) == (100, at(1))
    assert marks.nearest(("c", "User"), 1, 100) == (100, at(3))
