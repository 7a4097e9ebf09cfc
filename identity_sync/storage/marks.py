"""Remembered positions in unfiltered lists, so that index paging (``startIndex``) seeks instead of
skipping.

SCIM's index paging names a page by its offset: page k of ``GET /Users?startIndex=…&count=100``
is ``OFFSET 100·k``, and a database skips an offset by walking it. Paging through N users that
way walks N²/200 index entries (18 s for 100,000 users). Clients page from the start, one page
after the other (Okta's imports, operators' scripts), so each page's last resource is where the
next page starts: remembering "the resource at position P is X" lets the next page be the same
keyset query as a cursor page (``listing.py``), at constant cost.

A mark is exact only while the live set is unchanged, so marks belong to a generation of it
(``counts.py``): a create or delete gives a new generation, and a list's marks are dropped when
another generation is seen. A page with no mark at or before its start seeks from the nearest
mark before it and skips only the rest (with several workers, each remembers the pages it
served, so the rest is a few pages), or skips from the beginning, as before.

Why a request never uses a mark that is wrong for what it reads, although the generation and
the page are two statements (each seeing what was committed when it started, on SQLite in
autocommit and on PostgreSQL in READ COMMITTED): a request reads the generation g, then runs its
page query, then remembers the page's end under g. If a write committed between the two
statements, that mark describes the newer live set g' while labelled g. Only requests that read
g can use it, and they read g before g' was committed; the mark exists only after g' was
committed, so their page query, which comes after they look the mark up, sees g' too (or a
later set, if more writes race: index paging under concurrent writes is not consistent anyway,
RFC 7644 §3.4.2.4). Every request that starts after g' was committed reads g' and never uses
marks of g. This holds because every change of the live set changes the generation (the
service calls ``counts.changed`` with every create and delete) and a generation never comes
back (random, see counts.py).

Marks live in the process: they are a cache, never a source of truth, and cost nothing to lose.
Bounded: at most ``max_lists`` lists (least recently used goes first) of ``max_marks`` marks each
(least recently remembered goes first): a sequential walk needs only the newest.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from identity_sync.storage.listing import Position


@dataclass
class _List:
    generation: int
    positions: list[int] = field(default_factory=list)  # sorted
    marks: OrderedDict[int, Position] = field(default_factory=OrderedDict)  # in insertion order


class PositionMarks:
    def __init__(self, max_lists: int = 1024, max_marks: int = 256) -> None:
        self.max_lists = max_lists
        self.max_marks = max_marks
        self._lists: OrderedDict[tuple[str, str], _List] = OrderedDict()
        self._lock = threading.Lock()

    def nearest(self, key: tuple[str, str], generation: int, offset: int) -> tuple[int, Position] | None:
        """The mark at the largest position ``<= offset`` of ``generation``: ``(position, where)``,
        where position ``p`` means "``where`` is the p-th resource, counting from 1"."""
        with self._lock:
            found = self._lists.get(key)
            if found is None or found.generation != generation:
                return None
            self._lists.move_to_end(key)
            i = bisect.bisect_right(found.positions, offset)
            if i == 0:
                return None
            position = found.positions[i - 1]
            return position, found.marks[position]

    def remember(self, key: tuple[str, str], generation: int, position: int, where: Position) -> None:
        with self._lock:
            found = self._lists.get(key)
            if found is None or found.generation != generation:
                found = self._lists[key] = _List(generation)
            self._lists.move_to_end(key)
            if position in found.marks:
                found.marks.move_to_end(position)
            else:
                bisect.insort(found.positions, position)
            found.marks[position] = where
            if len(found.marks) > self.max_marks:
                oldest, _ = found.marks.popitem(last=False)
                found.positions.remove(oldest)
            while len(self._lists) > self.max_lists:
                self._lists.popitem(last=False)
