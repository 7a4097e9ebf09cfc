"""Nested groups (issue 12, item 4): Entra provisions only the *direct* members of a group and
brings only the direct members of an assigned group into scope (provisioning-engine.md §1.5), its
most asked-for missing feature. Two per-job options do better:

* ``nested_groups = "flatten"`` — a group's members, as the target sees them, are every user
  reachable through its member groups (the member groups themselves are not members), for
  targets that do not understand nested groups;
* ``nested_scope = True`` — assigning a group brings the users *and groups* of its nested groups
  into the "assigned" scope too.

Both rest on :func:`transitive_members`, which follows member groups to any depth and stops at
cycles (a group that contains itself through others: every group of the cycle gets the users of
all of them), in time linear in groups + memberships: the groups' graph is condensed into its
strongly connected components (Tarjan), and each component's users are gathered once, children
first.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import replace

from identity_sync.engine.model import SourceObject, SourceSnapshot

NESTED_GROUPS = ("direct", "flatten")


def transitive_members(groups: Mapping[str, SourceObject], users: Container[str]
                       ) -> tuple[dict[str, frozenset[str]], dict[str, frozenset[str]]]:
    """(users, groups) reachable from each group through member groups, at any depth; a group is
    in its own ``groups`` only when it is in a cycle. Members that name nothing are ignored."""
    children = {anchor: [m for m in (obj.attributes.get("members") or ()) if m in groups and m != anchor]
                for anchor, obj in groups.items()}
    components = _components(children)
    user_sets: dict[str, frozenset[str]] = {}
    group_sets: dict[str, frozenset[str]] = {}
    for component in components:  # children components before their parents (Tarjan's order)
        members = set(component) if len(component) > 1 else set()
        found: set[str] = set()
        for anchor in component:
            found.update(m for m in (groups[anchor].attributes.get("members") or ()) if m in users)
            for child in children[anchor]:
                if child not in component:
                    found |= user_sets[child]
                    members.add(child)
                    members |= group_sets[child]
        for anchor in component:
            user_sets[anchor] = frozenset(found)
            group_sets[anchor] = frozenset(members)
    return user_sets, group_sets


def flatten_groups(snapshot: SourceSnapshot) -> SourceSnapshot:
    """The snapshot as a target without nested groups should see it: each group's ``members`` are
    its transitive users, sorted (a stable digest: unchanged membership, no request)."""
    user_sets, _ = transitive_members(snapshot.groups, snapshot.users)
    groups = {anchor: replace(obj, attributes={**obj.attributes, "members": sorted(user_sets[anchor])})
              for anchor, obj in snapshot.groups.items()}
    return replace(snapshot, groups=groups)


def _components(children: Mapping[str, list[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively (deep nesting must not hit Python's
    recursion limit); a component comes after every component it points into."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    result: list[list[str]] = []
    for root in children:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, position = work.pop()
            if position == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            edges = children[node]
            if position < len(edges):
                work.append((node, position + 1))
                child = edges[position]
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                result.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return result
