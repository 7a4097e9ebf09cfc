"""SCIM attribute paths, as attribute mappings name them, to and from resource documents.

A mapping's target is a SCIM attribute path (the seed tutorial's attribute table):
``userName``, ``name.givenName``, ``emails[type eq "work"].value``,
``roles[primary eq "True"].value``, ``urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager``,
``urn:…:GlobalRelay:2.0:User:proxyAddresses``. Paths are parsed by the project's SCIM parser
(:func:`identity_sync.scim.filter.parse_patch_path`); this module only decides where in a JSON
document each one lives. It knows no schema, so it works for any target: a filtered path names
the element of a multi-valued attribute whose sub-attributes equal the filter's ``eq`` terms.

Shapes follow what Entra sends (entra-scim-requests.md §1.4 c, g):

* the work email carries ``"primary": true`` (Entra's create body);
* ``manager`` is a Reference: the value is the manager's target id, the document carries
  ``{"value": id}`` (provisioning-engine.md §1.6);
* extension attributes live under their schema URN, which is listed in ``schemas``;
* ``None`` values are skipped: Entra never provisions nulls (provisioning-engine.md §1.4).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from identity_sync.engine.model import Value
from identity_sync.errors import BadRequest
from identity_sync.scim.filter import parse_patch_path
from identity_sync.scim.filter_ast import And, Compare, Filter

__all__ = ["CORE_SCHEMAS", "ENDPOINTS", "Location", "build", "extract", "locate", "set_value"]

#: The core schema of each resource type the engine provisions.
CORE_SCHEMAS = {"User": "urn:ietf:params:scim:schemas:core:2.0:User",
                "Group": "urn:ietf:params:scim:schemas:core:2.0:Group"}
#: Endpoints under the Tenant URL (entra-scim-requests.md §1.1: Entra appends them to it).
ENDPOINTS = {"User": "Users", "Group": "Groups"}

_CORE_URN_PREFIX = "urn:ietf:params:scim:schemas:core:"
#: Reference-typed attributes: the mapped value is the referenced object's target id.
REFERENCE_ATTRIBUTES = frozenset({"manager"})
#: (attribute, type) pairs whose element Entra creates with ``"primary": true`` (§1.4 c).
_PRIMARY_BY_DEFAULT = frozenset({("emails", "work")})
#: Sub-attributes that label an element rather than carry its data (RFC 7643 §2.4).
_MARKERS = frozenset({"type", "primary"})


@dataclass(frozen=True, slots=True)
class Location:
    """Where one path points: attribute ``attr`` of the core schema (``urn`` None) or of extension
    ``urn``; ``element`` holds the ``eq`` terms of a filtered path (``{"type": "work"}``); ``sub``
    is the sub-attribute (``givenName`` of ``name.givenName``, ``value`` of ``emails[…].value``)."""

    path: str
    urn: str | None
    attr: str
    sub: str | None
    element: tuple[tuple[str, Any], ...] | None

    @property
    def filtered(self) -> bool:
        """Whether the path selects an element of a multi-valued attribute by a filter."""
        return self.element is not None


@functools.lru_cache(maxsize=4096)
def locate(path: str) -> Location:
    """Parse a mapping path; ``ValueError`` naming the path when it is not one this engine writes."""
    try:
        parsed = parse_patch_path(path)
    except BadRequest as exc:
        raise ValueError(f"attribute path {path!r}: {exc.detail}") from None
    urn = parsed.attr.urn
    if urn is not None and urn.lower().startswith(_CORE_URN_PREFIX):
        urn = None  # urn:…:core:2.0:User:userName is plain userName
    if parsed.filter is None:
        return Location(path, urn, parsed.attr.attr, parsed.attr.sub, None)
    if parsed.attr.sub is not None:
        raise ValueError(f"attribute path {path!r}: a filter applies to an attribute, not to a sub-attribute")
    if parsed.sub is None:
        raise ValueError(f"attribute path {path!r}: name a sub-attribute of the element, e.g. '.value'")
    return Location(path, urn, parsed.attr.attr, parsed.sub, tuple(_eq_terms(path, parsed.filter)))


def _eq_terms(path: str, node: Filter) -> list[tuple[str, Any]]:
    # Entra's mapping paths select an element with eq terms joined by "and" (§1.7 of
    # entra-scim-requests.md); anything else cannot say which element to create.
    if isinstance(node, And):
        return _eq_terms(path, node.left) + _eq_terms(path, node.right)
    if isinstance(node, Compare) and node.op == "eq" and node.path.sub is None and node.path.urn is None:
        return [(node.path.attr, node.value)]
    raise ValueError(f"attribute path {path!r}: only 'eq' terms joined by 'and' can select an element")


def build(resource_type: str, values: Mapping[str, Value]) -> dict[str, Any]:
    """The body of a POST creating a ``resource_type`` ("User" or "Group") with ``values`` (mapping
    path -> value; ``None`` values are left out). ``schemas`` lists the core schema and every
    extension a path used."""
    if resource_type not in CORE_SCHEMAS:
        raise ValueError(f"resource type {resource_type!r}: expected one of {', '.join(CORE_SCHEMAS)}")
    document: dict[str, Any] = {"schemas": [CORE_SCHEMAS[resource_type]]}
    if any(locate(path).urn is None and locate(path).attr.lower() == "members" for path in values):
        # Entra creates groups without members and adds them by PATCH (entra-scim-requests.md §1.5).
        raise ValueError("attribute path 'members': a group is created empty; use add_members")
    for path, value in values.items():
        if value is not None:
            set_value(document, path, value)
    return document


def set_value(document: dict[str, Any], path: str, value: Value) -> None:
    """Write ``value`` at ``path`` into ``document`` in place; ``None`` removes it (and an element of
    a multi-valued attribute left with only ``type``/``primary``). A new extension URN is added
    to ``schemas`` when the document has that list."""
    where = locate(path)
    container = document
    if where.urn is not None:
        key = _key(document, where.urn)
        if value is None and not isinstance(document.get(key), dict):
            return
        container = document.setdefault(key, {})
        schemas = document.get("schemas")
        if isinstance(schemas, list) and where.urn.lower() not in {str(s).lower() for s in schemas}:
            schemas.append(where.urn)
    attr = _key(container, where.attr)
    if where.element is None:
        _set_plain(container, attr, where, value)
    else:
        _set_element(container, attr, where, value)


def _set_plain(container: dict[str, Any], attr: str, where: Location, value: Value) -> None:
    if where.sub is None:
        if value is None:
            container.pop(attr, None)
        elif where.attr.lower() in REFERENCE_ATTRIBUTES:
            container[attr] = {"value": value}
        else:
            container[attr] = copy.copy(value)
        return
    parent = container.get(attr)
    if value is None:
        if isinstance(parent, dict):
            parent.pop(_key(parent, where.sub), None)
            if not parent:
                container.pop(attr)
        return
    if not isinstance(parent, dict):
        parent = container[attr] = {}
    parent[_key(parent, where.sub)] = copy.copy(value)


def _set_element(container: dict[str, Any], attr: str, where: Location, value: Value) -> None:
    assert where.sub is not None  # locate() refuses a filtered path without a sub-attribute
    elements = container.get(attr)
    if not isinstance(elements, list):
        if value is None:
            return  # nothing there to remove
        elements = []
    element = _find_element(elements, where)
    if value is None:
        if element is not None:
            element.pop(_key(element, where.sub), None)
            if all(k.lower() in _MARKERS for k in element):
                elements.remove(element)
        if not elements:
            container.pop(attr, None)
        return
    if element is None:
        element = {name: _literal_value(name, literal) for name, literal in where.element or ()}
        if (where.attr.lower(), str(element.get("type", "")).lower()) in _PRIMARY_BY_DEFAULT:
            element.setdefault("primary", True)
        elements.append(element)
    element[_key(element, where.sub)] = copy.copy(value)
    container[attr] = elements


def extract(resource: Mapping[str, Any], path: str) -> Value:
    """The value at ``path`` in ``resource`` (a document the target returned), ``None`` if absent.

    Names are matched case-insensitively (RFC 7643 §2.1); a Reference gives back its ``value``
    (the referenced target id), whether the target stored ``{"value": id}`` or a bare id.
    """
    where = locate(path)
    container: Any = resource
    if where.urn is not None:
        container = get_key(resource, where.urn)
    top = get_key(container, where.attr)
    if where.element is None:
        found = get_key(top, where.sub) if where.sub is not None else top
        if where.sub is None and where.attr.lower() in REFERENCE_ATTRIBUTES and isinstance(found, dict):
            found = get_key(found, "value")
    else:
        element = _find_element(top if isinstance(top, list) else [], where)
        found = get_key(element, where.sub or "")
    return None if found in ([], {}) else found


def _find_element(elements: list[Any], where: Location) -> dict[str, Any] | None:
    for element in elements:
        if isinstance(element, dict) and all(_equal(get_key(element, name), literal)
                                             for name, literal in where.element or ()):
            return element
    return None


def _equal(stored: Any, literal: Any) -> bool:
    # Entra writes `primary eq "True"` against a Boolean sub-attribute (§1.4 e), and `type`
    # values are case-insensitive strings (RFC 7643 caseExact false).
    if isinstance(stored, bool) and isinstance(literal, str):
        return literal.strip().lower() == ("true" if stored else "false")
    if isinstance(stored, str) and isinstance(literal, str):
        return stored.casefold() == literal.casefold()
    return bool(stored == literal)


def _literal_value(name: str, literal: Any) -> Any:
    # The element a filter creates gets JSON booleans for `primary`, whatever Entra's literal was.
    if name.lower() == "primary" and isinstance(literal, str) and literal.strip().lower() in ("true", "false"):
        return literal.strip().lower() == "true"
    return literal


def get_key(mapping: Any, key: str) -> Any:
    """``mapping[key]``, with the key matched case-insensitively as SCIM attribute names are (RFC 7643
    §2.1); ``None`` when absent or when ``mapping`` is not an object."""
    if not isinstance(mapping, dict):
        return None
    if key in mapping:
        return mapping[key]
    lowered = key.lower()
    return next((v for k, v in mapping.items() if k.lower() == lowered), None)


def _key(mapping: dict[str, Any], key: str) -> str:
    """The key ``mapping`` already uses for ``key`` (any case), else ``key``."""
    if key in mapping:
        return key
    lowered = key.lower()
    return next((k for k in mapping if k.lower() == lowered), key)
