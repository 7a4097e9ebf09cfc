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
from datetime import UTC, datetime
from typing import Any

from identity_sync.errors import BadRequest
from identity_sync.scim import attributes as t
from identity_sync.scim.attributes import Attribute
from identity_sync.scim.filter_ast import And, Compare, Filter, Literal, Not, Or, Present, ValuePath
from identity_sync.scim.index import value_key
from identity_sync.scim.registry import Resolved, ResourceType, canonical_key


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
# * anything else that cannot be compared is ``400 invalidFilter`` — raised whatever the data, as
#   the compiler raises before any row is read (so ``and``/``or`` evaluate both sides).

_RELATIONS = frozenset({"members", "groups"})
_ORDERING = frozenset({"eq", "gt", "ge", "lt", "le", "co", "sw", "ew"})


@dataclass(frozen=True, slots=True)
class Candidate:
    """What a filter can see of one resource: its row and, for ``members``/``groups``, the ids
    of its related resources."""

    id: str
    doc: dict[str, Any]
    created_at: str
    last_modified: str
    related_ids: tuple[str, ...] = ()


def matches(rt: ResourceType, resource: Candidate, node: Filter) -> bool:
    """Whether ``resource`` (of type ``rt``) satisfies ``node``; raises ``BadRequest(invalidFilter)``
    exactly when the SQL compiler would."""
    if isinstance(node, (And, Or)):
        left, right = matches(rt, resource, node.left), matches(rt, resource, node.right)
        return (left and right) if isinstance(node, And) else (left or right)
    if isinstance(node, Not):
        return not matches(rt, resource, node.inner)
    if isinstance(node, ValuePath):
        return _value_path(rt, resource, node)
    return _term(rt, resource, node)


def _term(rt: ResourceType, resource: Candidate, node: Compare | Present) -> bool:
    resolved = rt.resolve(node.path, scim_type="invalidFilter")
    attr = resolved.attribute
    if attr.name == "id":
        return _scalar(attr, resource.id, node)
    if attr.name in _RELATIONS and resolved.container is None:
        return _relation(attr, resolved.sub.name if resolved.sub else "value", resource, node)
    if attr.name == "meta":
        return _meta(rt, resolved, resource, node)
    if attr.is_complex and resolved.sub is None:
        if isinstance(node, Present):
            return bool(_values(resource.doc, resolved.container, attr, None))
        value_sub = attr.sub("value")
        if value_sub is None:
            raise BadRequest(f"Attribute '{attr.name}' cannot be compared directly.", "invalidFilter")
        resolved = Resolved(resolved.container, attr, value_sub)
    values = _values(resource.doc, resolved.container, attr, resolved.sub)
    if isinstance(node, Present):
        return bool(values)
    if node.value is None:
        return _null_test(node.op, bool(values))
    test = _predicate(resolved.target, "eq" if node.op == "ne" else node.op, node.value)
    found = any(test(value) for value in values)
    return not found if node.op == "ne" else found


def _null_test(op: str, present: bool) -> bool:
    if op not in ("eq", "ne"):
        raise BadRequest("null can only be compared with eq or ne.", "invalidFilter")
    return present if op == "ne" else not present


def _scalar(attr: Attribute, value: str, node: Compare | Present) -> bool:
    """A column that every resource has (``id``, ``meta.created``…)."""
    if isinstance(node, Present):
        return True
    if node.value is None:
        return _null_test(node.op, True)
    test = _predicate(attr, "eq" if node.op == "ne" else node.op, node.value)
    return test(value) != (node.op == "ne")


def _meta(rt: ResourceType, resolved: Resolved, resource: Candidate, node: Compare | Present) -> bool:
    sub = resolved.sub
    if sub is None:
        raise BadRequest("Filter on a meta sub-attribute such as meta.lastModified.", "invalidFilter")
    if sub.name == "resourceType":
        if isinstance(node, Present):
            return True
        if node.op not in ("eq", "ne"):
            raise BadRequest(f"Unsupported operator for meta.resourceType: {node.op}", "invalidFilter")
        same = isinstance(node.value, str) and node.value.lower() == rt.name.lower()
        return same == (node.op == "eq")
    column = {"created": resource.created_at, "lastmodified": resource.last_modified}.get(sub.name.lower())
    if column is None:
        raise BadRequest(f"Filtering on meta.{sub.name} is not supported.", "invalidFilter")
    if isinstance(node, Compare):
        node = Compare(node.path, node.op, timestamp_literal(node.op, node.value))
    return _scalar(sub, column, node)


#: Stored timestamps are "YYYY-MM-DDTHH:MM:SS.ffffffZ" with years 0001-9999: these sort before
#: and after every one of them.
_BEFORE_ALL_TIMESTAMPS = "0000"
_AFTER_ALL_TIMESTAMPS = "9999-12-31T23:59:59.999999Z~"


def timestamp_literal(op: str, value: Literal) -> Literal:
    """A dateTime filter literal in the stored timestamp form (so that text order is time order)."""
    if value is None:
        return None
    if op in ("co", "sw", "ew") or not isinstance(value, str):
        raise BadRequest("A dateTime is compared with eq, ne, gt, ge, lt, le and a dateTime string.",
                         "invalidFilter")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest("A dateTime literal is required here.", "invalidFilter") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # no offset: UTC, as stored (not the server's local time)
    try:
        # Formatted here, not by strftime: "%Y" does not pad years below 1000 on every platform,
        # and "5-01-01" would sort after "2026-…".
        utc = moment.astimezone(UTC)
        return (f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:"
                f"{utc.second:02d}.{utc.microsecond:06d}Z")
    except OverflowError:
        # A valid literal whose UTC instant is outside years 1-9999 ("0001-01-01T00:00:00+01:00"
        # is 0000-12-31T23:00Z): earlier or later than every stored timestamp, so it stands for a
        # text that sorts before or after all of them (and equals none).
        return _BEFORE_ALL_TIMESTAMPS if moment.year == 1 else _AFTER_ALL_TIMESTAMPS


def _relation(attr: Attribute, sub_name: str, resource: Candidate, node: Compare | Present) -> bool:
    if isinstance(node, Present):
        return bool(resource.related_ids)
    if sub_name.lower() != "value" or node.op not in ("eq", "ne") or not isinstance(node.value, str):
        raise BadRequest(f"'{attr.name}' can be filtered with value eq/ne or pr only.", "invalidFilter")
    return (node.value in resource.related_ids) == (node.op == "eq")


def _value_path(rt: ResourceType, resource: Candidate, node: ValuePath) -> bool:
    resolved = rt.resolve(node.path, scim_type="invalidFilter")
    attr = resolved.attribute
    if attr.name in _RELATIONS and resolved.container is None:
        inner = node.inner
        if not isinstance(inner, (Compare, Present)) or inner.path.urn is not None or inner.path.sub is not None:
            raise BadRequest(f"'{attr.name}[…]' takes one value eq/ne or pr term.", "invalidFilter")
        return _relation(attr, inner.path.attr, resource, inner)
    if not attr.is_complex or resolved.sub is not None:
        raise BadRequest(f"'{attr.name}' cannot take a value filter.", "invalidFilter")
    _element_matches(attr, {}, node.inner)  # validates the inner filter even when there is no element
    elements = [e for e in _elements(resource.doc, resolved.container, attr)
                if any(attr.sub(k) is not None and v is not None for k, v in e.items())]
    return any(_element_matches(attr, element, node.inner) for element in elements)


def _element_matches(attr: Attribute, element: dict[str, Any], node: Filter) -> bool:
    if isinstance(node, (And, Or)):
        left = _element_matches(attr, element, node.left)
        right = _element_matches(attr, element, node.right)
        return (left and right) if isinstance(node, And) else (left or right)
    if isinstance(node, Not):
        return not _element_matches(attr, element, node.inner)
    if isinstance(node, ValuePath):
        raise BadRequest("Value filters cannot be nested.", "invalidFilter")
    sub = attr.sub(node.path.attr) if node.path.sub is None and node.path.urn is None else None
    if sub is None:
        raise BadRequest(f"Unknown sub-attribute in value filter: {attr.name}.{node.path.attr[:40]}",
                         "invalidFilter")
    stored = next((v for k, v in element.items() if attr.sub(k) is sub), None)
    if isinstance(node, Present):
        return stored is not None
    if node.value is None:
        return _null_test(node.op, stored is not None)
    test = _predicate(sub, "eq" if node.op == "ne" else node.op, node.value)
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
    """``stored -> bool`` for ``stored op literal``; raises for a combination the SQL refuses."""
    if op not in _ORDERING:
        raise BadRequest(f"Unsupported operator '{op}'.", "invalidFilter")
    if attr.type == t.BOOLEAN:
        if op != "eq":
            raise BadRequest("Booleans can only be compared with eq or ne.", "invalidFilter")
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
