"""Checking a filter against a resource type, once, for every consumer.

A parsed filter (``filter_ast``) says what the client wrote; :func:`check_filter` decides whether
it means anything for this resource type and, if so, what: every path resolved against the schema,
a complex attribute compared directly replaced by its ``value``, a ``meta`` timestamp literal put
in stored form. The SQL compiler (``storage/filter_sql.py``) and the in-memory evaluator
(``scim/evaluate.py``) both take its result and refuse nothing themselves, so the two can no longer
disagree about which filters are ``400 invalidFilter`` or with which message (they used to carry a
copy of each rule; tests/scim/test_filter_check.py feeds both the same bad filters).

Every term is checked, whatever the data and whichever side of an ``or`` it is on, before any row
is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal as TypingLiteral

from identity_sync.errors import BadRequest
from identity_sync.scim import attributes as t
from identity_sync.scim.attributes import Attribute
from identity_sync.scim.filter_ast import And, Compare, Filter, Literal, Not, Or, Present, ValuePath
from identity_sync.scim.registry import Resolved, ResourceType

#: Multi-valued attributes kept in the memberships relation, not in the document.
RELATIONS = frozenset({"members", "groups"})
#: ``meta`` sub-attributes that are columns of every resource.
META_TIMES = frozenset({"created", "lastmodified"})
#: The operator of a presence test (``pr``), so that every term has one.
PRESENT = "pr"

#: What a term tests: ``id`` (the column), ``meta_type`` (``meta.resourceType``, known without
#: reading the row), ``meta_time`` (``meta.created``/``lastModified`` columns), ``relation``
#: (``members``/``groups``), ``any`` (a complex attribute present through any sub-attribute) or
#: ``value`` (an attribute or sub-attribute of the document, through the value index).
TermKind = TypingLiteral["id", "meta_type", "meta_time", "relation", "any", "value"]


@dataclass(frozen=True, slots=True)
class Term:
    """``path op value`` or ``path pr`` (``op == "pr"``) on a whole resource, checked."""

    kind: TermKind
    resolved: Resolved
    op: str
    value: Literal = None

    @property
    def present(self) -> bool:
        return self.op == PRESENT


@dataclass(frozen=True, slots=True)
class ElementTerm:
    """``sub op value`` or ``sub pr`` inside ``attr[…]``: ``sub`` is a sub-attribute of ``attr``."""

    sub: Attribute
    op: str
    value: Literal = None

    @property
    def present(self) -> bool:
        return self.op == PRESENT


@dataclass(frozen=True, slots=True)
class AllOf:
    left: Checked
    right: Checked


@dataclass(frozen=True, slots=True)
class AnyOf:
    left: Checked
    right: Checked


@dataclass(frozen=True, slots=True)
class Negated:
    inner: Checked


@dataclass(frozen=True, slots=True)
class Elements:
    """``attr[inner]``: some element of the complex attribute satisfies ``inner``, whose terms are
    :class:`ElementTerm` (combined with :class:`AllOf`, :class:`AnyOf`, :class:`Negated`)."""

    resolved: Resolved
    inner: Checked


Checked = Term | ElementTerm | Elements | AllOf | AnyOf | Negated


def check_filter(rt: ResourceType, node: Filter) -> Checked:
    """``node`` checked for ``rt``; raises ``BadRequest(invalidFilter)`` for the first term (left
    to right) that cannot be evaluated."""
    if isinstance(node, And):
        return AllOf(check_filter(rt, node.left), check_filter(rt, node.right))
    if isinstance(node, Or):
        return AnyOf(check_filter(rt, node.left), check_filter(rt, node.right))
    if isinstance(node, Not):
        return Negated(check_filter(rt, node.inner))
    if isinstance(node, ValuePath):
        return _value_path(rt, node)
    return _term(rt, node)


def _term(rt: ResourceType, node: Compare | Present) -> Term:
    resolved = rt.resolve(node.path, scim_type="invalidFilter")
    attr = resolved.attribute
    op, value = (PRESENT, None) if isinstance(node, Present) else (node.op, node.value)
    if attr.name == "id":
        return Term("id", resolved, op, _value(attr, op, value))
    if attr.name in RELATIONS and resolved.container is None:
        return _relation(resolved, resolved.sub.name if resolved.sub else "value", op, value)
    if attr.name == "meta":
        return _meta(resolved, op, value)
    if attr.is_complex and resolved.sub is None:
        if op == PRESENT:
            return Term("any", resolved, op)
        value_sub = attr.sub("value")
        if value_sub is None:
            raise BadRequest(f"Attribute '{attr.name}' cannot be compared directly.", "invalidFilter")
        resolved = Resolved(resolved.container, attr, value_sub)  # `emails eq "x"`: by its value
    return Term("value", resolved, op, _value(resolved.target, op, value))


def _value(attr: Attribute, op: str, value: Literal) -> Literal:
    """``value`` if ``attr op value`` can be compared (what every kind of term shares)."""
    if op == PRESENT:
        return None
    if value is None and op not in ("eq", "ne"):
        raise BadRequest("null can only be compared with eq or ne.", "invalidFilter")
    if value is not None and attr.type == t.BOOLEAN and op not in ("eq", "ne"):
        raise BadRequest("Booleans can only be compared with eq or ne.", "invalidFilter")
    return value


def _relation(resolved: Resolved, sub_name: str, op: str, value: Literal) -> Term:
    if op != PRESENT and (sub_name.lower() != "value" or op not in ("eq", "ne") or not isinstance(value, str)):
        raise BadRequest(f"'{resolved.attribute.name}' can be filtered with value eq/ne or pr only.", "invalidFilter")
    return Term("relation", resolved, op, value)


def _meta(resolved: Resolved, op: str, value: Literal) -> Term:
    sub = resolved.sub
    if sub is None:
        raise BadRequest("Filter on a meta sub-attribute such as meta.lastModified.", "invalidFilter")
    if sub.name == "resourceType":
        if op not in (PRESENT, "eq", "ne"):
            raise BadRequest(f"Unsupported operator for meta.resourceType: {op}", "invalidFilter")
        return Term("meta_type", resolved, op, value)
    if sub.name.lower() not in META_TIMES:
        raise BadRequest(f"Filtering on meta.{sub.name} is not supported.", "invalidFilter")
    if op == PRESENT:
        return Term("meta_time", resolved, op)
    return Term("meta_time", resolved, op, _value(sub, op, timestamp_literal(op, value)))


def _value_path(rt: ResourceType, node: ValuePath) -> Term | Elements:
    resolved = rt.resolve(node.path, scim_type="invalidFilter")
    attr = resolved.attribute
    if attr.name in RELATIONS and resolved.container is None:
        inner = node.inner
        if not isinstance(inner, (Compare, Present)) or inner.path.urn is not None or inner.path.sub is not None:
            raise BadRequest(f"'{attr.name}[…]' takes one value eq/ne or pr term.", "invalidFilter")
        op, value = (PRESENT, None) if isinstance(inner, Present) else (inner.op, inner.value)
        return _relation(resolved, inner.path.attr, op, value)
    if not attr.is_complex or resolved.sub is not None:
        raise BadRequest(f"'{attr.name}' cannot take a value filter.", "invalidFilter")
    return Elements(resolved, _element_filter(attr, node.inner))


def _element_filter(attr: Attribute, node: Filter) -> Checked:
    if isinstance(node, And):
        return AllOf(_element_filter(attr, node.left), _element_filter(attr, node.right))
    if isinstance(node, Or):
        return AnyOf(_element_filter(attr, node.left), _element_filter(attr, node.right))
    if isinstance(node, Not):
        return Negated(_element_filter(attr, node.inner))
    if isinstance(node, ValuePath):
        raise BadRequest("Value filters cannot be nested.", "invalidFilter")
    sub = attr.sub(node.path.attr) if node.path.sub is None and node.path.urn is None else None
    if sub is None:
        raise BadRequest(f"Unknown sub-attribute in value filter: {attr.name}.{node.path.attr[:40]}",
                         "invalidFilter")
    if isinstance(node, Present):
        return ElementTerm(sub, PRESENT)
    return ElementTerm(sub, node.op, _value(sub, node.op, node.value))


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
