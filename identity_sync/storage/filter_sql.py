"""Compiling a filter AST to a SQL condition over ``resources``.

Every attribute term becomes an index lookup in ``attr_values`` (``tenant_id, path, key``), so a
query costs the same at 1,000 and at 1,000,000 users. Values are always bound parameters; the
keys they are compared with are already in comparison form (``scim/index.py``), so case rules
never depend on the database's collation. ``id`` and ``meta`` timestamps map to columns.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from identity_sync.clock import format_timestamp
from identity_sync.errors import BadRequest
from identity_sync.scim import attributes as t
from identity_sync.scim.attributes import Attribute
from identity_sync.scim.filter_ast import And, AttrPath, Compare, Filter, Literal, Not, Or, Present, ValuePath
from identity_sync.scim.index import value_key
from identity_sync.scim.registry import Resolved, ResourceType
from identity_sync.storage.tables import attr_values, memberships, resources

_META_COLUMNS = {"created": resources.c.created_at, "lastmodified": resources.c.last_modified}
# Low-cardinality discriminators: a poor choice of anchor for an indexed element lookup.
_DISCRIMINATORS = frozenset({"type", "primary"})
# Multi-valued attributes that are not stored in the document but in the memberships relation.
_RELATIONS = frozenset({"members", "groups"})


def compile_filter(rt: ResourceType, tenant_id: str, node: Filter) -> ColumnElement[bool]:
    return _Compiler(rt, tenant_id).compile(node)


def is_selective(node: Filter) -> bool:
    """Whether the filter contains, at its top level, an attribute term that is itself an index
    lookup (``userName eq "x"``, ``emails[type eq "work"].value eq "y"``): the query should then
    be driven by that lookup rather than by a scan of the tenant's resources."""
    if isinstance(node, And):
        return is_selective(node.left) or is_selective(node.right)
    if isinstance(node, Compare):
        return node.op != "ne" and node.value is not None
    return isinstance(node, ValuePath)


class _Compiler:
    def __init__(self, rt: ResourceType, tenant_id: str) -> None:
        self.rt = rt
        self.tenant_id = tenant_id

    def compile(self, node: Filter) -> ColumnElement[bool]:
        if isinstance(node, And):
            return sa.and_(self.compile(node.left), self.compile(node.right))
        if isinstance(node, Or):
            return sa.or_(self.compile(node.left), self.compile(node.right))
        if isinstance(node, Not):
            return sa.not_(self.compile(node.inner))
        if isinstance(node, ValuePath):
            return self._value_path(node)
        return self._term(node)

    # -- plain terms ---------------------------------------------------------------------------

    def _term(self, node: Compare | Present) -> ColumnElement[bool]:
        resolved = self._resolve(node.path)
        attr = resolved.attribute
        if attr.name == "id":
            return self._column_term(resources.c.id, attr, node)
        if attr.name in _RELATIONS and resolved.container is None:
            return self._relation(attr, resolved.sub.name if resolved.sub else "value", node)
        if attr.name == "meta":
            return self._meta_term(resolved, node)
        if attr.is_complex and resolved.sub is None:
            # `manager eq "id"`, `emails eq "x"`: a complex attribute compares by its `value`.
            value_sub = attr.sub("value")
            if isinstance(node, Present):
                paths = [Resolved(resolved.container, attr, sub).index_path for sub in attr.sub_attributes]
                return resources.c.id.in_(self._lookup(sa.and_(attr_values.c.path.in_(paths))))
            if value_sub is None:
                raise BadRequest(f"Attribute '{attr.name}' cannot be compared directly.", "invalidFilter")
            resolved = Resolved(resolved.container, attr, value_sub)
        target = resolved.target
        if isinstance(node, Present):
            return resources.c.id.in_(self._lookup(attr_values.c.path == resolved.index_path))
        if node.value is None:
            present = resources.c.id.in_(self._lookup(attr_values.c.path == resolved.index_path))
            if node.op in ("eq", "ne"):
                return sa.not_(present) if node.op == "eq" else present
            raise BadRequest("null can only be compared with eq or ne.", "invalidFilter")
        if node.op == "ne":
            return sa.not_(self._term(Compare(node.path, "eq", node.value)))
        condition = self._key_condition(attr_values.c.key, target, node.op, node.value)
        return resources.c.id.in_(self._lookup(sa.and_(attr_values.c.path == resolved.index_path, condition)))

    def _lookup(self, condition: ColumnElement[bool]) -> sa.Select[Any]:
        return sa.select(attr_values.c.resource_id).where(attr_values.c.tenant_id == self.tenant_id, condition)

    def _column_term(self, column: Any, attr: Attribute, node: Compare | Present) -> ColumnElement[bool]:
        if isinstance(node, Present):
            return column.is_not(None)
        if node.value is None:
            return column.is_(None) if node.op == "eq" else column.is_not(None)
        if node.op == "ne":
            return column != str(node.value)
        return self._key_condition(column, attr, node.op, node.value)

    def _meta_term(self, resolved: Resolved, node: Compare | Present) -> ColumnElement[bool]:
        sub = resolved.sub
        if sub is None:
            raise BadRequest("Filter on a meta sub-attribute such as meta.lastModified.", "invalidFilter")
        if sub.name == "resourceType":
            if isinstance(node, Present):
                return sa.true()
            matches = isinstance(node.value, str) and node.value.lower() == self.rt.name.lower()
            equal = sa.true() if matches else sa.false()
            return equal if node.op == "eq" else sa.not_(equal) if node.op == "ne" else _unsupported(node)
        column = _META_COLUMNS.get(sub.name.lower())
        if column is None:
            raise BadRequest(f"Filtering on meta.{sub.name} is not supported.", "invalidFilter")
        if isinstance(node, Compare) and isinstance(node.value, str):
            node = Compare(node.path, node.op, _timestamp_literal(node.value))
        return self._column_term(column, sub, node)

    def _key_condition(self, column: Any, attr: Attribute, op: str, literal: Literal) -> ColumnElement[bool]:
        if attr.type == t.BOOLEAN:
            if op not in ("eq", "ne"):
                raise BadRequest("Booleans can only be compared with eq or ne.", "invalidFilter")
            if isinstance(literal, str) and literal.strip().lower() in ("true", "false"):
                literal = literal.strip().lower() == "true"
            if not isinstance(literal, bool):
                return sa.false()
        key = value_key(attr, literal)
        if op == "eq":
            return column == key
        if op == "co":
            return column.contains(key, autoescape=True)
        if op == "sw":
            return column.startswith(key, autoescape=True)
        if op == "ew":
            return column.endswith(key, autoescape=True)
        if op == "gt":
            return column > key
        if op == "ge":
            return column >= key
        if op == "lt":
            return column < key
        if op == "le":
            return column <= key
        raise BadRequest(f"Unsupported operator '{op}'.", "invalidFilter")

    # -- value paths: attr[inner] --------------------------------------------------------------

    def _value_path(self, node: ValuePath) -> ColumnElement[bool]:
        resolved = self._resolve(node.path)
        attr = resolved.attribute
        if attr.name in _RELATIONS and resolved.container is None and isinstance(node.inner, (Compare, Present)):
            inner = node.inner
            if inner.path.urn is None and inner.path.sub is None:
                return self._relation(attr, inner.path.attr, inner)
        if not attr.is_complex or resolved.sub is not None:
            raise BadRequest(f"'{attr.name}' cannot take a value filter.", "invalidFilter")
        terms = _conjuncts(node.inner)
        anchor_term = _choose_anchor(attr, terms) if terms is not None else None
        anchor = attr_values.alias("anchor")
        prefix = Resolved(resolved.container, attr).index_path
        if anchor_term is not None:
            rest = [term for term in terms or [] if term is not anchor_term]
            where = [self._element_term(anchor, attr, prefix, anchor_term, correlated=False)]
            where += [self._element_term(anchor, attr, prefix, term, correlated=True) for term in rest]
        else:
            sub_paths = [f"{prefix}.{sub.name.lower()}" for sub in attr.sub_attributes]
            where = [anchor.c.path.in_(sub_paths), self._element_filter(anchor, attr, prefix, node.inner)]
        subquery = sa.select(anchor.c.resource_id).where(anchor.c.tenant_id == self.tenant_id, *where)
        return resources.c.id.in_(subquery)

    def _element_filter(self, anchor: Any, attr: Attribute, prefix: str, node: Filter) -> ColumnElement[bool]:
        if isinstance(node, And):
            return sa.and_(*(self._element_filter(anchor, attr, prefix, n) for n in (node.left, node.right)))
        if isinstance(node, Or):
            return sa.or_(*(self._element_filter(anchor, attr, prefix, n) for n in (node.left, node.right)))
        if isinstance(node, Not):
            return sa.not_(self._element_filter(anchor, attr, prefix, node.inner))
        if isinstance(node, ValuePath):
            raise BadRequest("Value filters cannot be nested.", "invalidFilter")
        return self._element_term(anchor, attr, prefix, node, correlated=True)

    def _element_term(
        self, anchor: Any, attr: Attribute, prefix: str, node: Compare | Present, *, correlated: bool
    ) -> ColumnElement[bool]:
        sub = attr.sub(node.path.attr) if node.path.sub is None and node.path.urn is None else None
        if sub is None:
            raise BadRequest(f"Unknown sub-attribute in value filter: {attr.name}.{node.path.attr[:40]}",
                             "invalidFilter")
        path = f"{prefix}.{sub.name.lower()}"
        negate = isinstance(node, Compare) and (node.op == "ne" or node.value is None and node.op == "eq")
        if isinstance(node, Compare) and node.value is not None and node.op != "ne":
            value_condition: ColumnElement[bool] | None = self._key_condition(
                attr_values.c.key if correlated else anchor.c.key, sub, node.op, node.value)
        elif isinstance(node, Compare) and node.op == "ne" and node.value is not None:
            value_condition = self._key_condition(attr_values.c.key, sub, "eq", node.value)
            correlated = True
        else:
            value_condition = None
        if not correlated:
            conditions = [anchor.c.path == path]
            if value_condition is not None:
                conditions.append(value_condition)
            return sa.and_(*conditions)
        exists = sa.exists().where(
            attr_values.c.resource_id == anchor.c.resource_id,
            attr_values.c.element == anchor.c.element,
            attr_values.c.path == path,
            *([value_condition] if value_condition is not None else []),
        )
        return sa.not_(exists) if negate else exists

    def _relation(self, attr: Attribute, sub_name: str, node: Compare | Present) -> ColumnElement[bool]:
        """``members`` of a Group and ``groups`` of a User live in the ``memberships`` relation:
        ``members[value eq "u"]``, ``members.value eq "u"``, Entra's historic ``members eq "u"``,
        ``groups.value eq "g"`` — each one indexed lookup."""
        own, other = (memberships.c.group_id, memberships.c.member_id) if attr.name == "members" else (
            memberships.c.member_id, memberships.c.group_id)
        related = sa.select(own).where(memberships.c.tenant_id == self.tenant_id)
        if isinstance(node, Present):
            return resources.c.id.in_(related)
        if sub_name.lower() != "value" or node.op not in ("eq", "ne") or not isinstance(node.value, str):
            raise BadRequest(f"'{attr.name}' can be filtered with value eq/ne or pr only.", "invalidFilter")
        match = resources.c.id.in_(related.where(other == node.value))
        return match if node.op == "eq" else sa.not_(match)

    def _resolve(self, path: AttrPath) -> Resolved:
        return self.rt.resolve(path, scim_type="invalidFilter")


def _conjuncts(node: Filter) -> list[Compare | Present] | None:
    if isinstance(node, And):
        left, right = _conjuncts(node.left), _conjuncts(node.right)
        return None if left is None or right is None else left + right
    if isinstance(node, (Compare, Present)):
        return [node]
    return None


def _choose_anchor(attr: Attribute, terms: list[Compare | Present]) -> Compare | Present | None:
    """The term whose index lookup is most selective: an equality on a value-like sub-attribute
    (``value eq "x"``) rather than on ``type`` or ``primary`` (which match nearly every row)."""
    def rank(term: Compare | Present) -> int:
        if not isinstance(term, Compare) or term.value is None or term.op == "ne":
            return 9
        discriminator = term.path.attr.lower() in _DISCRIMINATORS
        return (0 if term.op == "eq" else 2) + (1 if discriminator else 0)

    best = min(terms, key=rank)
    return best if rank(best) < 9 else None


def _timestamp_literal(text: str) -> str:
    try:
        return format_timestamp(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise BadRequest("A dateTime literal is required here.", "invalidFilter") from None


def _unsupported(node: Compare | Present) -> ColumnElement[bool]:
    raise BadRequest(f"Unsupported operator for meta.resourceType: {getattr(node, 'op', 'pr')}", "invalidFilter")
