"""In-memory evaluation of filters.

Two users: PATCH picks the elements a path such as ``emails[type eq "work"].value`` targets
(:func:`matches_element`), and the property tests use :func:`matches` on whole resources as the
oracle that every SQL query the compiler produces must agree with. Comparison rules are the
schema's: ``caseExact`` decides case sensitivity (through the same :func:`canonical_key` the SQL
index uses) and a boolean sub-attribute accepts Entra's ``"True"``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from identity_sync.errors import BadRequest
from identity_sync.scim import attributes as t
from identity_sync.scim.attributes import Attribute
from identity_sync.scim.filter_ast import And, Compare, Filter, Literal, Not, Or, Present, ValuePath
from identity_sync.scim.filter_check import (
    PRESENT,
    AllOf,
    AnyOf,
    Checked,
    Elements,
    ElementTerm,
    Negated,
    Term,
    check_filter,
)
from identity_sync.scim.index import value_key
from identity_sync.scim.registry import ResourceType, canonical_key


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


# -- whole resources: the oracle of the SQL compiler ------------------------------------------------
#
# ``matches`` decides, in memory, what ``storage/filter_sql.py`` decides in SQL. It walks the stored
# document itself (not the value index), so the property tests that compare the two check the
# index, the compiler and the query together. Both sides share only the definition of "equal":
# :func:`value_key` (booleans as 'true'/'false', ``caseExact: false`` strings through
# ``canonical_key``), and both order strings by code point (SQLite's BINARY collation, ``COLLATE "C"``
# on PostgreSQL).
#
# The rules, for a term ``path op literal``:
# * a multi-valued attribute matches when any of its values does; ``ne`` is ``not eq`` (so an
#   absent attribute is ``ne`` anything), ``eq null`` means absent and ``ne null`` present;
# * a complex attribute without a sub-attribute compares its ``value`` (``emails eq "x"``) and is
#   present when any sub-attribute is;
# * booleans take ``eq``/``ne`` only; ``meta.created``/``meta.lastModified`` take dateTime literals
#   and no substring operators; ``members``/``groups`` take ``value eq``/``ne`` and ``pr``;
# * anything else that cannot be compared is ``400 invalidFilter``, decided for both sides by
#   ``scim/filter_check.py`` before any row is read (whatever the data).


@dataclass(frozen=True, slots=True)
class Candidate:
    """What a filter can see of one resource: its row and, for ``members``/``groups``, the ids
    of its related resources."""

    id: str
    doc: dict[str, Any]
    created_at: str
    last_modified: str
    related_ids: tuple[str, ...] = ()


def matches(rt: ResourceType, resource: Candidate, node: Filter | Checked) -> bool:
    """Whether ``resource`` (of type ``rt``) satisfies ``node``. A parsed filter is checked first
    (:func:`check_filter`), so this raises ``BadRequest(invalidFilter)`` exactly when the SQL
    compiler does; to test many resources, check once and pass the result."""
    checked = node if isinstance(node, Checked) else check_filter(rt, node)
    return _matches(rt, resource, checked)


def _matches(rt: ResourceType, resource: Candidate, node: Checked) -> bool:
    if isinstance(node, AllOf):
        return _matches(rt, resource, node.left) and _matches(rt, resource, node.right)
    if isinstance(node, AnyOf):
        return _matches(rt, resource, node.left) or _matches(rt, resource, node.right)
    if isinstance(node, Negated):
        return not _matches(rt, resource, node.inner)
    if isinstance(node, Elements):
        return _elements_match(resource, node)
    assert isinstance(node, Term), node  # an ElementTerm is only ever inside Elements
    return _term(rt, resource, node)


def _term(rt: ResourceType, resource: Candidate, term: Term) -> bool:
    resolved = term.resolved
    if term.kind == "id":
        return _scalar(resolved.attribute, resource.id, term.op, term.value)
    if term.kind == "relation":
        if term.present:
            return bool(resource.related_ids)
        return (term.value in resource.related_ids) == (term.op == "eq")
    if term.kind == "meta_type":
        same = isinstance(term.value, str) and term.value.lower() == rt.name.lower()
        return term.present or same == (term.op == "eq")
    if term.kind == "meta_time":
        sub = resolved.target
        column = resource.created_at if sub.name.lower() == "created" else resource.last_modified
        return _scalar(sub, column, term.op, term.value)
    if term.kind == "any":
        return bool(_values(resource.doc, resolved.container, resolved.attribute, None))
    values = _values(resource.doc, resolved.container, resolved.attribute, resolved.sub)
    if term.present:
        return bool(values)
    if term.value is None:
        return bool(values) == (term.op == "ne")
    test = _predicate(resolved.target, "eq" if term.op == "ne" else term.op, term.value)
    found = any(test(value) for value in values)
    return not found if term.op == "ne" else found


def _scalar(attr: Attribute, value: str, op: str, literal: Literal) -> bool:
    """A column that every resource has (``id``, ``meta.created``…)."""
    if op == PRESENT:
        return True
    if literal is None:
        return op == "ne"
    test = _predicate(attr, "eq" if op == "ne" else op, literal)
    return test(value) != (op == "ne")


def _elements_match(resource: Candidate, node: Elements) -> bool:
    attr = node.resolved.attribute
    elements = [e for e in _elements(resource.doc, node.resolved.container, attr)
                if any(attr.sub(k) is not None and v is not None for k, v in e.items())]
    return any(_element_matches(attr, element, node.inner) for element in elements)


def _element_matches(attr: Attribute, element: dict[str, Any], node: Checked) -> bool:
    if isinstance(node, AllOf):
        return _element_matches(attr, element, node.left) and _element_matches(attr, element, node.right)
    if isinstance(node, AnyOf):
        return _element_matches(attr, element, node.left) or _element_matches(attr, element, node.right)
    if isinstance(node, Negated):
        return not _element_matches(attr, element, node.inner)
    assert isinstance(node, ElementTerm), node  # check_filter puts only these inside Elements
    stored = next((v for k, v in element.items() if attr.sub(k) is node.sub), None)
    if node.present:
        return stored is not None
    if node.value is None:
        return (stored is not None) == (node.op == "ne")
    test = _predicate(node.sub, "eq" if node.op == "ne" else node.op, node.value)
    found = stored is not None and test(stored)
    return not found if node.op == "ne" else found


def _elements(doc: dict[str, Any], container: str | None, attr: Attribute) -> list[dict[str, Any]]:
    holder = doc.get(container) if container else doc
    value = holder.get(attr.name) if isinstance(holder, dict) else None
    items = value if isinstance(value, list) else [value]
    return [item for item in items if isinstance(item, dict)]


def _values(doc: dict[str, Any], container: str | None, attr: Attribute, sub: Attribute | None) -> list[Any]:
    """Every non-null value at ``attr`` (``.sub``) of the document, across elements."""
    if attr.is_complex:
        found = []
        for element in _elements(doc, container, attr):
            for key, value in element.items():
                if value is not None and attr.sub(key) is not None and (sub is None or attr.sub(key) is sub):
                    found.append(value)
        return found
    holder = doc.get(container) if container else doc
    value = holder.get(attr.name) if isinstance(holder, dict) else None
    items = value if attr.multi_valued and isinstance(value, list) else [value]
    return [item for item in items if item is not None]


def _predicate(attr: Attribute, op: str, literal: Literal) -> Callable[[Any], bool]:
    """``stored -> bool`` for ``stored op literal`` (``op`` not ``ne``: the callers negate ``eq``),
    a combination :func:`check_filter` accepted."""
    if attr.type == t.BOOLEAN:
        if isinstance(literal, str) and literal.strip().lower() in ("true", "false"):
            literal = literal.strip().lower() == "true"
        if not isinstance(literal, bool):
            return lambda stored: False
    wanted = value_key(attr, literal)
    tests: dict[str, Callable[[str], bool]] = {
        "eq": lambda key: key == wanted, "gt": lambda key: key > wanted, "ge": lambda key: key >= wanted,
        "lt": lambda key: key < wanted, "le": lambda key: key <= wanted, "co": lambda key: wanted in key,
        "sw": lambda key: key.startswith(wanted), "ew": lambda key: key.endswith(wanted),
    }
    test = tests[op]
    return lambda stored: test(value_key(attr, stored))
