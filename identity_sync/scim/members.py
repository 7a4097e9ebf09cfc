"""Group membership PATCH as deltas.

A group's members are not part of its stored document: they live in a relation, and a PATCH
that names k members must cost O(k) whatever the group's size. This module turns the PATCH
operations of a Group into an ordered plan of steps — document operations for every other
attribute, and membership deltas for ``members`` — without knowing how either is stored.

Every membership shape Entra and Okta send maps to one delta:

====================================================================  =================
``add members [{value}…]``                                              ``add``
``remove members`` with a value list (Entra's default dialect)          ``remove`` those
``remove members[value eq "id"]`` (aadOptscim062020, Okta)              ``remove`` id
``remove members`` with neither value nor filter                        ``remove_all``
``replace members [...]`` (Okta), path-less ``{"members": [...]}``      ``replace``
====================================================================  =================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from identity_sync.errors import BadRequest
from identity_sync.scim.attributes import Attribute
from identity_sync.scim.filter import parse_patch_path
from identity_sync.scim.filter_ast import Compare, Filter, Or
from identity_sync.scim.patch import Operation
from identity_sync.scim.registry import GROUP
from identity_sync.scim.resource import coerce

_MEMBERS = GROUP.core.attribute("members")
assert _MEMBERS is not None  # the Group schema's own attribute (scim/definitions.py)
MEMBERS: Attribute = _MEMBERS
assert MEMBERS is not None


@dataclass(frozen=True, slots=True)
class MemberDelta:
    """``kind`` is ``add``, ``remove``, ``remove_all`` or ``replace``. ``ids`` are the member ids
    named; ``where`` is a path filter other than plain ``value eq`` terms, to be evaluated on the
    members themselves (rare: e.g. ``members[type eq "Group"]``)."""

    kind: str
    ids: tuple[str, ...] = ()
    types: dict[str, str] = field(default_factory=dict)
    where: Filter | None = None


Step = Operation | MemberDelta


def plan(operations: list[Operation]) -> list[Step]:
    steps: list[Step] = []
    for operation in operations:
        if operation.path is None:
            if isinstance(operation.value, dict) and any(k.lower() == "members" for k in operation.value):
                rest = {k: v for k, v in operation.value.items() if k.lower() != "members"}
                members = next(v for k, v in operation.value.items() if k.lower() == "members")
                if rest:
                    steps.append(Operation(operation.op, None, rest))
                steps.append(_delta(operation.op, members))
            else:
                steps.append(operation)
            continue
        path = parse_patch_path(operation.path)
        if path.attr.attr.lower() != "members" or path.attr.urn not in (None, GROUP.core.id):
            steps.append(operation)
            continue
        if path.attr.sub is not None or path.sub is not None:
            raise BadRequest("Member sub-attributes cannot be changed; add or remove the member.", "mutability")
        if path.filter is not None:
            if operation.op != "remove":
                raise BadRequest("Use add or remove to change members; a filtered path only removes.",
                                 "invalidPath")
            ids = _value_equalities(path.filter)
            steps.append(MemberDelta("remove", tuple(ids)) if ids is not None
                         else MemberDelta("remove", where=path.filter))
            continue
        steps.append(_delta(operation.op, operation.value))
    return steps


def _delta(op: str, value: Any) -> MemberDelta:
    _require_values(value)
    members = coerce(MEMBERS, value, label="members") or []
    ids: list[str] = []
    types: dict[str, str] = {}
    for member in members:
        member_id = member.get("value")
        if not isinstance(member_id, str) or not member_id:
            raise BadRequest("Each member needs a 'value' with the member's id.", "invalidValue")
        ids.append(member_id)
        if "type" in member:
            types[member_id] = member["type"]
    if op == "remove":
        # Only a remove with no value at all empties the group; `"value": []` removes nobody.
        return MemberDelta("remove", tuple(ids)) if value is not None else MemberDelta("remove_all")
    return MemberDelta("replace" if op == "replace" else "add", tuple(ids), types)


def _require_values(value: Any) -> None:
    """Each member object must name its member: coercion drops read-only and empty
    sub-attributes, so ``{"display": "Ada"}`` or ``{"value": ""}`` would otherwise become a silent
    no-op (a client believing it added or removed someone)."""
    for member in value if isinstance(value, list) else [value]:
        if isinstance(member, dict):
            member_id = next((v for k, v in member.items() if k.lower() == "value"), None)
            if not isinstance(member_id, str) or not member_id:
                raise BadRequest("Each member needs a 'value' with the member's id.", "invalidValue")


def _value_equalities(node: Filter) -> list[str] | None:
    """The ids of ``value eq "a" [or value eq "b" …]``; ``None`` for any other filter."""
    if isinstance(node, Or):
        left, right = _value_equalities(node.left), _value_equalities(node.right)
        return None if left is None or right is None else left + right
    if (isinstance(node, Compare) and node.op == "eq" and node.path.attr.lower() == "value"
            and node.path.sub is None and isinstance(node.value, str)):
        return [node.value]
    return None


def split_members(body: Any) -> tuple[Any, Any, bool]:
    """A POST/PUT body without its ``members``: ``(rest, members, members given)``."""
    if not isinstance(body, dict):
        return body, None, False
    key = next((k for k in body if k.lower() == "members"), None)
    if key is None:
        return body, None, False
    return {k: v for k, v in body.items() if k != key}, body[key], True


def member_ids(value: Any) -> tuple[list[str], dict[str, str]]:
    delta = _delta("add", value)
    return list(delta.ids), delta.types
