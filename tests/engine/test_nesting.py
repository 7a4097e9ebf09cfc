"""Nested groups (engine/nesting.py): transitive members at any depth, cycles, flattening, and the
nested "assigned" scope."""

from __future__ import annotations

from identity_sync.engine.model import SourceObject, SourceSnapshot
from identity_sync.engine.nesting import flatten_groups, transitive_members
from identity_sync.engine.scoping import effective_assignments


def _snapshot(groups: dict[str, list[str]], users: list[str], assigned: list[str] | None = None) -> SourceSnapshot:
    return SourceSnapshot({u: SourceObject("user", u, {"userPrincipalName": f"{u}@x"}) for u in users},
                          {g: SourceObject("group", g, {"displayName": g, "members": m}) for g, m in groups.items()},
                          None if assigned is None else frozenset(assigned), "w")


def test_members_of_nested_groups_at_any_depth() -> None:
    snapshot = _snapshot({"top": ["u1", "mid"], "mid": ["u2", "low"], "low": ["u3"], "alone": []},
                         ["u1", "u2", "u3"])
    users, groups = transitive_members(snapshot.groups, snapshot.users)
    assert users == {"top": {"u1", "u2", "u3"}, "mid": {"u2", "u3"}, "low": {"u3"}, "alone": set()}
    assert groups == {"top": {"mid", "low"}, "mid": {"low"}, "low": set(), "alone": set()}


def test_a_cycle_of_groups_gives_every_group_of_it_the_users_of_all() -> None:
    snapshot = _snapshot({"a": ["u1", "b"], "b": ["u2", "c"], "c": ["u3", "a"], "outer": ["a"], "self": ["self", "u4"]},
                         ["u1", "u2", "u3", "u4"])
    users, groups = transitive_members(snapshot.groups, snapshot.users)
    assert users["a"] == users["b"] == users["c"] == users["outer"] == {"u1", "u2", "u3"}
    assert groups["a"] == {"a", "b", "c"} and groups["outer"] == {"a", "b", "c"}
    assert users["self"] == {"u4"}


def test_deep_nesting_does_not_recurse() -> None:
    depth = 5000
    groups = {f"g{i}": [f"g{i + 1}"] for i in range(depth)}
    groups[f"g{depth}"] = ["u"]
    users, _ = transitive_members(_snapshot(groups, ["u"]).groups, {"u"})
    assert users["g0"] == {"u"}


def test_members_that_name_nothing_are_ignored() -> None:
    users, _ = transitive_members(_snapshot({"g": ["u1", "ghost", "lost-group"]}, ["u1"]).groups, {"u1"})
    assert users["g"] == {"u1"}


def test_flattening_replaces_member_groups_by_their_users_sorted() -> None:
    snapshot = _snapshot({"top": ["u3", "mid"], "mid": ["u1", "u2"]}, ["u1", "u2", "u3"])
    flat = flatten_groups(snapshot)
    assert flat.groups["top"].attributes["members"] == ["u1", "u2", "u3"]
    assert flat.groups["top"].attributes["displayName"] == "top"
    assert flat.users is snapshot.users
    assert snapshot.groups["top"].attributes["members"] == ["u3", "mid"]  # the source's picture is untouched


def test_the_assigned_scope_is_direct_unless_nested() -> None:
    snapshot = _snapshot({"top": ["u1", "mid"], "mid": ["u2"]}, ["u1", "u2", "u3"], assigned=["top", "u3"])
    direct = effective_assignments(snapshot)
    assert (direct.users, direct.groups) == ({"u1", "u3"}, {"top"})
    nested = effective_assignments(snapshot, nested=True)
    assert (nested.users, nested.groups) == ({"u1", "u2", "u3"}, {"top", "mid"})
