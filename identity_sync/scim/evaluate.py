"""In-memory evaluation of filters against the elements of a complex attribute.

PATCH needs it to pick the elements a path such as ``emails[type eq "work"].value`` targets.
Comparison rules are the schema's: ``caseExact`` decides case sensitivity (through the same
:func:`canonical_key` the SQL index uses) and a boolean sub-attribute accepts Entra's ``"True"``.
"""

from __future__ import annotations

from typing import Any

from identity_sync.errors import BadRequest
from identity_sync.scim import attributes as t
from identity_sync.scim.attributes import Attribute
from identity_sync.scim.filter_ast import And, Compare, Filter, Literal, Not, Or, Present, ValuePath
from identity_sync.scim.registry import canonical_key


def comparable(attr: Attribute, value: Any) -> Any:
    """``value`` in the form used to compare values of ``attr`` (both stored values and literals)."""
    if attr.type == t.BOOLEAN and isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if isinstance(value, str) and not attr.case_exact and attr.type in (t.STRING, t.REFERENCE):
        return canonical_key(value)
    return value


def matches_element(attr: Attribute, element: Any, node: Filter) -> bool:
    """Whether one element of the complex attribute ``attr`` satisfies ``node`` (whose paths are
    relative to the element)."""
    if isinstance(node, And):
        return matches_element(attr, element, node.left) and matches_element(attr, element, node.right)
    if isinstance(node, Or):
        return matches_element(attr, element, node.left) or matches_element(attr, element, node.right)
    if isinstance(node, Not):
        return not matches_element(attr, element, node.inner)
    if isinstance(node, ValuePath):
        raise BadRequest("Nested value filters are not allowed.", "invalidFilter")
    sub = _sub(attr, node.path.attr, node.path.sub)
    stored = element.get(sub.name) if isinstance(element, dict) else (element if sub.name == "value" else None)
    if isinstance(node, Present):
        return stored not in (None, "", [])
    return compare(sub, stored, node.op, node.value)


def _sub(attr: Attribute, name: str, sub_name: str | None) -> Attribute:
    sub = attr.sub(name) if sub_name is None else None
    if sub is None:
        raise BadRequest(f"Unknown sub-attribute in filter: {attr.name}.{name[:40]}", "invalidFilter")
    return sub


def compare(attr: Attribute, stored: Any, op: str, literal: Literal) -> bool:
    """RFC 7644 §3.4.2.2 comparison of one stored value with a filter literal."""
    if stored is None:
        return op == "ne" and literal is not None
    left, right = comparable(attr, stored), comparable(attr, literal)
    if op == "eq":
        return left == right
    if op == "ne":
        return left != right
    if not isinstance(left, str) or not isinstance(right, str):
        if op in ("co", "sw", "ew") or isinstance(left, bool) or isinstance(right, bool):
            return False
        if not isinstance(left, (int, float)) or not isinstance(right, (int, float)):
            return False
    if op == "co":
        return right in left
    if op == "sw":
        return left.startswith(right)
    if op == "ew":
        return left.endswith(right)
    if op == "gt":
        return left > right
    if op == "ge":
        return left >= right
    if op == "lt":
        return left < right
    if op == "le":
        return left <= right
    raise BadRequest(f"Unsupported operator: {op}", "invalidFilter")


def equality_terms(attr: Attribute, node: Filter) -> dict[str, Any] | None:
    """The sub-attribute values fixed by a conjunction of ``eq`` terms (``type eq "work"``,
    ``primary eq "True"``), used to create the element a filtered PATCH path targets when it is
    missing. ``None`` when the filter is not such a conjunction."""
    if isinstance(node, And):
        left, right = equality_terms(attr, node.left), equality_terms(attr, node.right)
        return None if left is None or right is None else {**left, **right}
    if isinstance(node, Compare) and node.op == "eq" and node.value is not None:
        sub = _sub(attr, node.path.attr, node.path.sub)
        value = comparable(sub, node.value) if sub.type == t.BOOLEAN else node.value
        return {sub.name: value}
    return None
