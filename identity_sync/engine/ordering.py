"""The order users are exported in: managers before the people who report to them (§1.6)."""

from __future__ import annotations

from collections.abc import Mapping

from identity_sync.engine.model import SourceObject


def managers_first(objects: Mapping[str, SourceObject]) -> list[tuple[int, str]]:
    """User anchors ordered so that a manager comes before the people who report to them, with
    their depth in the management chain: exported level by level, a report's manager already has
    its target id and the reference needs no second request (§1.6). A loop of managers is cut.
    Anchors, not objects: a source may build its objects on lookup, and 100,000 of them held at
    once would not fit the engine's memory budget."""
    manager_of: dict[str, str] = {}
    for anchor, obj in objects.items():
        manager = obj.attributes.get("manager")
        if isinstance(manager, str) and manager in objects:
            manager_of[anchor] = manager
    depth: dict[str, int] = {}
    for anchor in objects:
        chain: list[str] = []
        current: str | None = anchor
        while current is not None and current not in depth and current not in chain:
            chain.append(current)
            current = manager_of.get(current)
        base = depth.get(current, -1) if current is not None else -1
        for level, member in enumerate(reversed(chain), start=base + 1):
            depth[member] = level
    return sorted(((depth[a], a) for a in objects), key=lambda pair: pair[0])
