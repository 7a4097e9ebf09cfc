"""Managers are exported before the people who report to them (§1.6), so that a manager reference
needs no second request; a loop of managers cannot hang the cycle."""

from __future__ import annotations

from identity_sync.engine.model import SourceObject
from identity_sync.engine.ordering import managers_first


def _users(managers: dict[str, str | None]) -> dict[str, SourceObject]:
    return {a: SourceObject("user", a, {"manager": m} if m else {}) for a, m in managers.items()}


def test_every_manager_comes_at_a_lower_depth_than_its_reports() -> None:
    users = _users({"d": "c", "c": "b", "b": "a", "a": None, "x": "a", "lonely": None, "dangling": "gone"})
    ordered = managers_first(users)
    depth = dict((a, d) for d, a in ordered)
    assert [a for _, a in ordered][:3] == ["a", "lonely", "dangling"]
    assert depth == {"a": 0, "lonely": 0, "dangling": 0, "b": 1, "x": 1, "c": 2, "d": 3}
    assert [d for d, _ in ordered] == sorted(d for d, _ in ordered)


def test_a_loop_of_managers_is_cut() -> None:
    ordered = managers_first(_users({"a": "b", "b": "c", "c": "a", "d": "a"}))
    assert sorted(a for _, a in ordered) == ["a", "b", "c", "d"]
    depth = dict((a, d) for d, a in ordered)
    assert depth["d"] == depth["a"] + 1
