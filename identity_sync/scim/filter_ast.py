"""The SCIM filter AST (RFC 7644 §3.4.2.2), shared by the parser, the SQL compiler and the
in-memory evaluator.

Nodes are frozen dataclasses so that they can be compared in tests and cached. Attribute
paths keep the spelling the client used; resolving them against the schema (case-insensitive
names, URN prefixes, extension lookup) is the job of :mod:`identity_sync.scim.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Literal values a comparison may carry. ``None`` is the JSON ``null`` literal.
Literal = str | bool | int | float | None

COMPARISON_OPERATORS = frozenset({"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"})


@dataclass(frozen=True, slots=True)
class AttrPath:
    """``[urn ":"] attr ["." sub]``, e.g. ``name.givenName`` or
    ``urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value``.

    ``urn`` is ``None`` when the client gave no schema prefix.
    """

    urn: str | None
    attr: str
    sub: str | None = None


@dataclass(frozen=True, slots=True)
class Compare:
    """``path op value``; ``op`` is one of :data:`COMPARISON_OPERATORS`, lower-cased."""

    path: AttrPath
    op: str
    value: Literal


@dataclass(frozen=True, slots=True)
class Present:
    """``path pr``."""

    path: AttrPath


@dataclass(frozen=True, slots=True)
class And:
    left: Filter
    right: Filter


@dataclass(frozen=True, slots=True)
class Or:
    left: Filter
    right: Filter


@dataclass(frozen=True, slots=True)
class Not:
    inner: Filter


@dataclass(frozen=True, slots=True)
class ValuePath:
    """``attr[inner]``: ``inner`` is evaluated against each element of the multi-valued (or
    complex) attribute ``path``; its own paths are relative to that element (``type``, ``value``).
    """

    path: AttrPath
    inner: Filter


Filter = Compare | Present | And | Or | Not | ValuePath
