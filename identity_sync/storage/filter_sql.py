"""Compiling a filter AST to a parameterized SQL condition over ``resources r``.

Every attribute term becomes an index lookup in ``attr_values`` (``tenant_id, path, key``), so a
query costs the same at 1,000 and at 1,000,000 users. Values are always bound parameters; the
keys they are compared with are already in comparison form (``scim/index.py``), so case rules
never depend on the database's collation. ``id`` and ``meta`` timestamps map to columns; a
Group's ``members`` and a User's ``groups`` map to the ``memberships`` relation.

Why SQL text and not SQLAlchemy expressions: this runs on every list request, and building and
compiling Core expressions cost 0.3-0.9 ms per query on this machine — more than the query itself.
The text is assembled only from fixed fragments and table/column names; every value goes through
:meth:`Sql.param`, so nothing a client sends can reach the SQL text.
"""

from __future__ import annotations

from identity_sync.errors import BadRequest
from identity_sync.scim import attributes as t
from identity_sync.scim.attributes import Attribute
from identity_sync.scim.evaluate import timestamp_literal
from identity_sync.scim.filter_ast import And, AttrPath, Compare, Filter, Literal, Not, Or, Present, ValuePath
from identity_sync.scim.index import value_key
from identity_sync.scim.registry import Resolved, ResourceType
from identity_sync.storage.sqltext import Sql

_META_COLUMNS = {"created": "r.created_at", "lastmodified": "r.last_modified"}
# Low-cardinality discriminators: a poor choice of anchor for an indexed element lookup.
_DISCRIMINATORS = frozenset({"type", "primary"})
# Multi-valued attributes that are not stored in the document but in the memberships relation.
_RELATIONS = frozenset({"members", "groups"})
_COMPARATORS = {"eq": "=", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def compile_filter(sql: Sql, rt: ResourceType, node: Filter) -> str:
    """The condition for ``node``; expects the tenant id bound as ``tenant`` in ``sql``."""
    return _Compiler(rt, sql).compile(node)


def is_selective(node: Filter) -> bool:
    """Whether the filter contains, at its top level, an attribute term that is itself an index
    lookup (``userName eq "x"``, ``emails[type eq "work"].value eq "y"``): the query should then
    be driven by that lookup rather than by a scan of the tenant's resources."""
    if isinstance(node, And):
        return is_selective(node.left) or is_selective(node.right)
    if isinstance(node, Compare):
        return node.op != "ne" and node.value is not None
    return isinstance(node, ValuePath)


def like_pattern(op: str, key: str) -> str:
    escaped = key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return {"co": f"%{escaped}%", "sw": f"{escaped}%", "ew": f"%{escaped}"}[op]


class _Compiler:
    def __init__(self, rt: ResourceType, sql: Sql) -> None:
        self.rt = rt
        self.sql = sql
        self.tenant = sql.placeholder("tenant")

    def compile(self, node: Filter) -> str:
        if isinstance(node, And):
            return f"({self.compile(node.left)} AND {self.compile(node.right)})"
        if isinstance(node, Or):
            return f"({self.compile(node.left)} OR {self.compile(node.right)})"
        if isinstance(node, Not):
            return f"NOT ({self.compile(node.inner)})"
        if isinstance(node, ValuePath):
            return self._value_path(node)
        return self._term(node)

    # -- plain terms ---------------------------------------------------------------------------

    def _term(self, node: Compare | Present) -> str:
        resolved = self._resolve(node.path)
        attr = resolved.attribute
        if attr.name == "id":
            return self._column_term("r.id", attr, node)
        if attr.name in _RELATIONS and resolved.container is None:
            return self._relation(attr, resolved.sub.name if resolved.sub else "value", node)
        if attr.name == "meta":
            return self._meta_term(resolved, node)
        if attr.is_complex and resolved.sub is None:
            # `manager eq "id"`, `emails eq "x"`: a complex attribute compares by its `value`.
            if isinstance(node, Present):
                paths = ", ".join(self.sql.param(Resolved(resolved.container, attr, sub).index_path)
                                  for sub in attr.sub_attributes)
                return self._lookup(f"path IN ({paths})")
            value_sub = attr.sub("value")
            if value_sub is None:
                raise BadRequest(f"Attribute '{attr.name}' cannot be compared directly.", "invalidFilter")
            resolved = Resolved(resolved.container, attr, value_sub)
        path = resolved.index_path
        if isinstance(node, Present):
            return self._lookup(f"path = {self.sql.param(path)}")
        if node.value is None:
            present = self._lookup(f"path = {self.sql.param(path)}")
            if node.op in ("eq", "ne"):
                return f"NOT {present}" if node.op == "eq" else present
            raise BadRequest("null can only be compared with eq or ne.", "invalidFilter")
        if node.op == "ne":
            return f"NOT {self._term(Compare(node.path, 'eq', node.value))}"
        condition = self._key_condition("key", resolved.target, node.op, node.value)
        return self._lookup(f"path = {self.sql.param(path)} AND {condition}")

    def _lookup(self, condition: str) -> str:
        return f"r.id IN (SELECT resource_id FROM attr_values WHERE tenant_id = {self.tenant} AND {condition})"

    def _column_term(self, column: str, attr: Attribute, node: Compare | Present) -> str:
        """A term on a column every live resource has (``id``, ``meta.created``…)."""
        if isinstance(node, Present):
            return "1 = 1"
        if node.value is None:
            if node.op not in ("eq", "ne"):
                raise BadRequest("null can only be compared with eq or ne.", "invalidFilter")
            return "1 = 0" if node.op == "eq" else "1 = 1"
        if node.op == "ne":
            return f"NOT ({self._key_condition(column, attr, 'eq', node.value)})"
        return self._key_condition(column, attr, node.op, node.value)

    def _meta_term(self, resolved: Resolved, node: Compare | Present) -> str:
        sub = resolved.sub
        if sub is None:
            raise BadRequest("Filter on a meta sub-attribute such as meta.lastModified.", "invalidFilter")
        if sub.name == "resourceType":
            if isinstance(node, Present):
                return "1 = 1"
            if node.op not in ("eq", "ne"):
                raise BadRequest(f"Unsupported operator for meta.resourceType: {node.op}", "invalidFilter")
            matches = isinstance(node.value, str) and node.value.lower() == self.rt.name.lower()
            return "1 = 1" if matches == (node.op == "eq") else "1 = 0"
        column = _META_COLUMNS.get(sub.name.lower())
        if column is None:
            raise BadRequest(f"Filtering on meta.{sub.name} is not supported.", "invalidFilter")
        if isinstance(node, Compare):
            node = Compare(node.path, node.op, timestamp_literal(node.op, node.value))
        return self._column_term(column, sub, node)

    def _key_condition(self, column: str, attr: Attribute, op: str, literal: Literal) -> str:
        if attr.type == t.BOOLEAN:
            if op not in ("eq", "ne"):
                raise BadRequest("Booleans can only be compared with eq or ne.", "invalidFilter")
            if isinstance(literal, str) and literal.strip().lower() in ("true", "false"):
                literal = literal.strip().lower() == "true"
            if not isinstance(literal, bool):
                return "1 = 0"
        key = value_key(attr, literal)
        if op == "eq":
            return f"{column} = {self.sql.param(key)}"
        if op in _COMPARATORS:
            # Code-point order, as SQLite's BINARY collation and the evaluator: a locale
            # collation would make `gt` depend on the server's configuration.
            collate = ' COLLATE "C"' if self.sql.dialect == "postgresql" else ""
            return f"{column}{collate} {_COMPARATORS[op]} {self.sql.param(key)}"
        if op in ("co", "sw", "ew"):
            return f"{column} LIKE {self.sql.param(like_pattern(op, key))} ESCAPE '\\'"
        raise BadRequest(f"Unsupported operator '{op}'.", "invalidFilter")

    def _relation(self, attr: Attribute, sub_name: str, node: Compare | Present) -> str:
        """``members`` of a Group and ``groups`` of a User live in the ``memberships`` relation:
        ``members[value eq "u"]``, ``members.value eq "u"``, Entra's historic ``members eq "u"``,
        ``groups.value eq "g"`` — each one indexed lookup."""
        own, other = ("group_id", "member_id") if attr.name == "members" else ("member_id", "group_id")
        related = f"SELECT {own} FROM memberships WHERE tenant_id = {self.tenant}"
        if isinstance(node, Present):
            return f"r.id IN ({related})"
        if sub_name.lower() != "value" or node.op not in ("eq", "ne") or not isinstance(node.value, str):
            raise BadRequest(f"'{attr.name}' can be filtered with value eq/ne or pr only.", "invalidFilter")
        match = f"r.id IN ({related} AND {other} = {self.sql.param(node.value)})"
        return match if node.op == "eq" else f"NOT {match}"

    # -- value paths: attr[inner] --------------------------------------------------------------

    def _value_path(self, node: ValuePath) -> str:
        resolved = self._resolve(node.path)
        attr = resolved.attribute
        if attr.name in _RELATIONS and resolved.container is None:
            inner = node.inner
            if not isinstance(inner, (Compare, Present)) or inner.path.urn is not None or inner.path.sub is not None:
                raise BadRequest(f"'{attr.name}[…]' takes one value eq/ne or pr term.", "invalidFilter")
            return self._relation(attr, inner.path.attr, inner)
        if not attr.is_complex or resolved.sub is not None:
            raise BadRequest(f"'{attr.name}' cannot take a value filter.", "invalidFilter")
        prefix = Resolved(resolved.container, attr).index_path
        anchor = self.sql.alias()
        terms = _conjuncts(node.inner)
        anchor_term = _choose_anchor(terms) if terms is not None else None
        if anchor_term is not None:
            where = [self._element_term(anchor, attr, prefix, anchor_term, correlated=False)]
            where += [self._element_term(anchor, attr, prefix, term, correlated=True)
                      for term in terms or [] if term is not anchor_term]
        else:
            sub_paths = ", ".join(self.sql.param(f"{prefix}.{sub.name.lower()}") for sub in attr.sub_attributes)
            where = [f"{anchor}.path IN ({sub_paths})", self._element_filter(anchor, attr, prefix, node.inner)]
        return (f"r.id IN (SELECT {anchor}.resource_id FROM attr_values {anchor} "
                f"WHERE {anchor}.tenant_id = {self.tenant} AND {' AND '.join(where)})")

    def _element_filter(self, anchor: str, attr: Attribute, prefix: str, node: Filter) -> str:
        if isinstance(node, (And, Or)):
            joiner = " AND " if isinstance(node, And) else " OR "
            parts = (self._element_filter(anchor, attr, prefix, n) for n in (node.left, node.right))
            return f"({joiner.join(parts)})"
        if isinstance(node, Not):
            return f"NOT ({self._element_filter(anchor, attr, prefix, node.inner)})"
        if isinstance(node, ValuePath):
            raise BadRequest("Value filters cannot be nested.", "invalidFilter")
        return self._element_term(anchor, attr, prefix, node, correlated=True)

    def _element_term(self, anchor: str, attr: Attribute, prefix: str, node: Compare | Present, *,
                      correlated: bool) -> str:
        sub = attr.sub(node.path.attr) if node.path.sub is None and node.path.urn is None else None
        if sub is None:
            raise BadRequest(f"Unknown sub-attribute in value filter: {attr.name}.{node.path.attr[:40]}",
                             "invalidFilter")
        path = self.sql.param(f"{prefix}.{sub.name.lower()}")
        if isinstance(node, Compare) and node.value is None and node.op not in ("eq", "ne"):
            raise BadRequest("null can only be compared with eq or ne.", "invalidFilter")
        if not correlated:  # the anchor term itself: an indexed lookup on the anchor row
            assert isinstance(node, Compare) and node.value is not None
            return f"{anchor}.path = {path} AND {self._key_condition(f'{anchor}.key', sub, node.op, node.value)}"
        other = self.sql.alias()
        # `ne "x"` is "no x here" and `eq null` is "absent": both negate; `ne null` means present.
        negate = isinstance(node, Compare) and (node.op == "ne") == (node.value is not None)
        condition = ""
        if isinstance(node, Compare) and node.value is not None:
            condition = " AND " + self._key_condition(f"{other}.key", sub, "eq" if node.op == "ne" else node.op,
                                                      node.value)
        exists = (f"EXISTS (SELECT 1 FROM attr_values {other} WHERE {other}.tenant_id = {anchor}.tenant_id "
                  f"AND {other}.resource_id = {anchor}.resource_id "
                  f"AND {other}.element = {anchor}.element AND {other}.path = {path}{condition})")
        return f"NOT {exists}" if negate else exists

    def _resolve(self, path: AttrPath) -> Resolved:
        return self.rt.resolve(path, scim_type="invalidFilter")


def _conjuncts(node: Filter) -> list[Compare | Present] | None:
    if isinstance(node, And):
        left, right = _conjuncts(node.left), _conjuncts(node.right)
        return None if left is None or right is None else left + right
    if isinstance(node, (Compare, Present)):
        return [node]
    return None


def _choose_anchor(terms: list[Compare | Present]) -> Compare | None:
    """The term whose index lookup is most selective: an equality on a value-like sub-attribute
    (``value eq "x"``) rather than on ``type`` or ``primary`` (which match nearly every row)."""
    def rank(term: Compare | Present) -> int:
        if not isinstance(term, Compare) or term.value is None or term.op == "ne":
            return 9
        discriminator = term.path.attr.lower() in _DISCRIMINATORS
        return (0 if term.op == "eq" else 2) + (1 if discriminator else 0)

    best = min(terms, key=rank)
    return best if rank(best) < 9 and isinstance(best, Compare) else None

