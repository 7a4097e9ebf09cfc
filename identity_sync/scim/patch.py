"""RFC 7644 §3.5.2 PATCH, with the dialects Entra and Okta really send.

One engine for every client (the design rule of docs/entra-scim-requests.md §2):

* ``op`` is matched case-insensitively (Entra's ``Add``/``Replace``/``Remove``);
* boolean attributes accept ``"True"``/``"False"``;
* a path-less ``add``/``replace`` interprets each key of its value as a path, so Entra's
  ``{"name.givenName": …, "urn:…:enterprise:2.0:User:employeeNumber": …}`` and Okta's
  ``{"active": false}`` land where they belong;
* a filtered path (``emails[type eq "work"].value``) that matches nothing creates the element
  from the filter's ``eq`` terms;
* ``remove`` of a multi-valued attribute *with* a value removes exactly those values (Entra's
  default member-removal dialect) — only a bare ``remove`` empties the attribute;
* ``replace`` with ``""`` or ``null`` clears the attribute.

Operations are applied in order to a copy of the document; the caller stores the result only if
every operation succeeded, so a request is atomic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from identity_sync.errors import BadRequest
from identity_sync.pacing import pause
from identity_sync.scim.attributes import Attribute
from identity_sync.scim.evaluate import comparable, equality_terms, matches_element
from identity_sync.scim.filter import PatchPath, parse_patch_path
from identity_sync.scim.filter_ast import Filter
from identity_sync.scim.registry import Resolved, ResourceType
from identity_sync.scim.resource import MAX_VALUES, check_document, check_value_count, coerce, is_empty

PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
_OPS = frozenset({"add", "replace", "remove"})
_IGNORED_KEYS = frozenset({"schemas", "id", "meta"})
#: Sub-attributes that label an element of a multi-valued attribute rather than carry its data.
_MARKERS = frozenset({"type", "primary"})


@dataclass(frozen=True, slots=True)
class Operation:
    op: str
    path: str | None
    value: Any


def parse_operations(body: Any, *, max_operations: int) -> list[Operation]:
    """The operations of a PatchOp request body, validated for shape only."""
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a PatchOp JSON object.", "invalidSyntax")
    raw = next((v for k, v in body.items() if k.lower() == "operations"), None)
    # RFC 7644 §3.5.2 asks for "one or more" operations, but the Microsoft SCIM Validator (which
    # gallery apps must pass) sends an empty array and expects success: it changes nothing, so
    # it is answered as a PATCH that changes nothing.
    if not isinstance(raw, list):
        raise BadRequest("'Operations' must be an array.", "invalidSyntax")
    if len(raw) > max_operations:
        raise BadRequest(f"At most {max_operations} operations are allowed in one PATCH.", "tooMany")
    operations = []
    for item in raw:
        if not isinstance(item, dict):
            raise BadRequest("Each operation must be an object.", "invalidSyntax")
        fields = {k.lower(): v for k, v in item.items()}
        op = fields.get("op")
        if not isinstance(op, str) or op.lower() not in _OPS:
            raise BadRequest("'op' must be one of add, replace, remove.", "invalidSyntax")
        path = fields.get("path")
        if path is not None and not isinstance(path, str):
            raise BadRequest("'path' must be a string.", "invalidPath")
        operations.append(Operation(op.lower(), path.strip() if path and path.strip() else None, fields.get("value")))
    return operations


def apply_operations(rt: ResourceType, doc: dict[str, Any], operations: list[Operation], *,
                     max_values: int = MAX_VALUES) -> dict[str, Any]:
    """A new document: ``doc`` with ``operations`` applied in order. ``doc`` is not modified.
    A multi-valued attribute may not grow past ``max_values`` values (``400 invalidValue``)."""
    # A deep copy through JSON: a document holds JSON values only, and this costs a sixth of
    # copy.deepcopy (which was a tenth of an Entra PATCH's CPU time).
    result = orjson.loads(orjson.dumps(doc))
    for operation in operations:
        pause()  # up to 1,000 operations: let other tenants' requests run between them
        _apply_operation(rt, result, operation, max_values)
    check_document(rt, result, max_values=max_values, before=doc)
    return result


def _apply_operation(rt: ResourceType, doc: dict[str, Any], operation: Operation, max_values: int) -> None:
    op, value = operation.op, operation.value
    if operation.path is None:
        if op == "remove":
            raise BadRequest("A remove operation needs a path.", "noTarget")
        if not isinstance(value, dict):
            raise BadRequest("An operation without a path needs an object value.", "invalidValue")
        for key, item in value.items():
            if key.lower() in _IGNORED_KEYS:
                continue  # Okta repeats the group's id in its path-less replace.
            _apply_path(rt, doc, op, key, item, max_values)
        return
    _apply_path(rt, doc, op, operation.path, value, max_values)


def _apply_path(rt: ResourceType, doc: dict[str, Any], op: str, path_text: str, value: Any,
                max_values: int) -> None:
    extension = rt.extension(path_text) if path_text[:4].lower() == "urn:" else None
    if extension is not None:
        # The whole extension object, e.g. {"urn:…:enterprise:2.0:User": {"department": "X"}}.
        if op == "remove":
            doc.pop(extension.id, None)
            return
        if not isinstance(value, dict):
            raise BadRequest(f"'{extension.id}' takes an object.", "invalidValue")
        for key, item in value.items():
            if key.lower() not in _IGNORED_KEYS:  # clients may repeat "schemas" inside the object
                _apply_path(rt, doc, op, f"{extension.id}:{key}", item, max_values)
        return
    path = parse_patch_path(path_text)
    resolved = rt.resolve(path.attr, scim_type="invalidPath")
    if resolved.target.mutability == "readOnly" or resolved.attribute.mutability == "readOnly":
        raise BadRequest(f"Attribute '{resolved.attribute.name}' is read-only.", "mutability")
    parent = doc.setdefault(resolved.container, {}) if resolved.container else doc
    _apply_resolved(parent, op, resolved, path, value, max_values)
    if resolved.container and not doc[resolved.container]:
        del doc[resolved.container]


def _apply_resolved(parent: dict[str, Any], op: str, resolved: Resolved, path: PatchPath, value: Any,
                    max_values: int) -> None:
    attr = resolved.attribute
    if path.filter is not None:
        if not attr.is_complex:
            raise BadRequest(f"Attribute '{attr.name}' has no sub-attributes to filter on.", "invalidPath")
        sub = attr.sub(path.sub) if path.sub else None
        if path.sub and sub is None:
            raise BadRequest(f"Unknown sub-attribute: {attr.name}.{path.sub[:40]}", "invalidPath")
        if sub is not None and sub.mutability == "readOnly":
            raise BadRequest(f"Attribute '{attr.name}.{sub.name}' is read-only.", "mutability")
        _apply_filtered(parent, op, attr, path.filter, sub, value)
    elif resolved.sub is not None:
        _apply_sub(parent, op, attr, resolved.sub, value)
    else:
        _apply_attribute(parent, op, attr, value, max_values)
    if is_empty(parent.get(attr.name)):
        parent.pop(attr.name, None)


def _apply_attribute(parent: dict[str, Any], op: str, attr: Attribute, value: Any, max_values: int) -> None:
    check_value_count(attr, value, max_values)
    current = parent.get(attr.name)
    if op == "remove":
        if attr.multi_valued and not is_empty(value) and current:
            # Entra: {"op":"Remove","path":"members","value":[{"value":"id"}]} removes only those.
            parent[attr.name] = _without(attr, current, coerce(attr, value) or [])
        else:
            parent.pop(attr.name, None)
        return
    new = coerce(attr, value)
    if new is None:
        if op == "replace":
            parent.pop(attr.name, None)
        return
    if attr.multi_valued:
        if op == "replace" or not current:
            parent[attr.name] = _dedupe(attr, new)
        else:
            parent[attr.name] = _merge_values(attr, current, new)
    elif attr.is_complex and isinstance(current, dict):
        # RFC 7644 §3.5.2.1/.3: sub-attributes not given are left unchanged.
        parent[attr.name] = {**current, **new}
    else:
        parent[attr.name] = new


def _apply_sub(parent: dict[str, Any], op: str, attr: Attribute, sub: Attribute, value: Any) -> None:
    new = None if op == "remove" else coerce(sub, value, label=f"{attr.name}.{sub.name}")
    if attr.multi_valued:
        # `emails.value` without a filter addresses every element (RFC 7644 §3.5.2).
        elements = parent.get(attr.name) or []
        if not elements and new is not None:
            parent[attr.name] = [{sub.name: new}]
            return
        for element in elements:
            _set_or_clear(element, sub.name, new)
        parent[attr.name] = [e for e in elements if e]
        return
    if new is None and op == "add":
        return
    element = parent.get(attr.name)
    if element is None:
        if new is None:
            return
        element = parent[attr.name] = {}
    _set_or_clear(element, sub.name, new)


def _apply_filtered(
    parent: dict[str, Any], op: str, attr: Attribute, node: Filter, sub: Attribute | None, value: Any
) -> None:
    current = parent.get(attr.name)
    elements: list[Any] = (current if isinstance(current, list) else [current]) if current else []
    matched = [e for e in elements if matches_element(attr, e, node)]
    matched_ids = {id(e) for e in matched}  # identity, not equality: two equal elements are two elements
    fixed = equality_terms(attr, node) or {}
    if op == "remove":
        if sub is None:
            kept = [e for e in elements if id(e) not in matched_ids]
        else:
            for element in matched:
                element.pop(sub.name, None)
            # Only an element this operation emptied may go; the others were not touched.
            kept = [e for e in elements if id(e) not in matched_ids or _has_data(e, _filler(fixed, sub))]
        _store_elements(parent, attr, kept)
        return
    if sub is not None:
        new = coerce(sub, value, label=f"{attr.name}.{sub.name}")
        touched = matched
        if not matched:
            if new is None:
                return
            if not fixed:
                raise BadRequest(f"No value of '{attr.name}' matches the path filter.", "noTarget")
            touched = [{**fixed, sub.name: new}]
            elements.append(touched[0])
        for element in matched:
            _set_or_clear(element, sub.name, new)
        # Only a matched element may have been emptied: `emails[value eq "a"].display` must not
        # drop the other emails (their keys minus the filter's are just as few).
        elements = [e for e in elements if id(e) not in matched_ids or _has_data(e, _filler(fixed, sub))]
    else:
        new_element = coerce(attr, value)
        replacement = (new_element[0] if isinstance(new_element, list) else new_element) if new_element else None
        # The replacement takes the place of the first matched element, so a client comparing
        # the array element by element (Entra) sees only the value it changed.
        position = next((i for i, e in enumerate(elements) if id(e) in matched_ids), len(elements))
        if matched:
            elements = [e for e in elements if id(e) not in matched_ids]
        touched = []
        if replacement is not None:
            touched = [{**fixed, **replacement}]
            elements.insert(position, touched[0])
    _primary_wins(attr, elements, prefer=touched)
    _store_elements(parent, attr, elements)


def _filler(fixed: dict[str, Any], cleared: Attribute) -> dict[str, Any]:
    """The keys of an element that do not count as its data once ``cleared`` was removed: the
    filter's own terms when the element's ``value`` went (``emails[type eq "work"].value`` → ""),
    none otherwise (removing the ``display`` of ``emails[value eq "a"]`` leaves an email)."""
    return fixed if cleared.name == "value" else {}


def _has_data(element: Any, fixed: dict[str, Any]) -> bool:
    """Whether an element still carries data once a sub-attribute was cleared. An element left
    with only the keys its filter fixed or the markers ``type``/``primary`` (``{"type": "work",
    "primary": true}`` after Entra clears the primary work email with ``""``) is gone: keeping it
    would show Entra an email without a value, which it re-PATCHes every cycle."""
    if not isinstance(element, dict):
        return element is not None
    return bool(set(element) - set(fixed) - _MARKERS)


def _store_elements(parent: dict[str, Any], attr: Attribute, elements: list[Any]) -> None:
    if attr.multi_valued:
        parent[attr.name] = elements
    else:
        parent[attr.name] = elements[0] if elements else None


def _set_or_clear(element: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        element.pop(key, None)
    else:
        element[key] = value


def _same(attr: Attribute, stored: Any, given: Any) -> bool:
    """Whether ``stored`` is the value ``given`` names: for complex values every sub-attribute
    given must match (so ``{"value": id}`` identifies a member or an email)."""
    if isinstance(given, dict) and isinstance(stored, dict):
        for key, wanted in given.items():
            sub = attr.sub(key)
            if sub is None or comparable(sub, stored.get(key)) != comparable(sub, wanted):
                return False
        return True
    return _identity(attr, stored) == _identity(attr, given)


def _without(attr: Attribute, current: list[Any], doomed: list[Any]) -> list[Any]:
    """``current`` without every element that one of ``doomed`` names (:func:`_same`), in time
    linear in both lists: the doomed values are hashed, grouped by the set of sub-attributes
    they name (a handful: Entra names ``value``, sometimes ``type``), and each stored element is
    looked up once per group. Comparing each pair instead made a remove of n of n values cost
    n² comparisons — seconds of one worker's CPU for a 1 MiB body."""
    by_names: dict[tuple[str, ...], set[Any]] = {}
    simple: set[Any] = set()
    odd: list[Any] = []  # unhashable or mixed shapes (never produced by coerce): compared pairwise
    for given in doomed:
        if isinstance(given, dict):
            subs = [sub for sub in map(attr.sub, given) if sub is not None]
            if len(subs) != len(given):
                continue  # names a sub-attribute the attribute lacks: matches nothing
            names = tuple(given)
            wanted = _hashable(tuple(comparable(sub, given[key]) for sub, key in zip(subs, names, strict=True)))
            if wanted is _UNHASHABLE:
                odd.append(given)
            else:
                by_names.setdefault(names, set()).add(wanted)
            continue
        key = _hashable(_identity(attr, given))
        if key is _UNHASHABLE:
            odd.append(given)
        else:
            simple.add(key)
    # Every name was checked above: only groups whose sub-attributes all exist were kept.
    groups = [(names, [sub for sub in map(attr.sub, names) if sub is not None], wanted)
              for names, wanted in by_names.items()]

    def named(stored: Any) -> bool:
        if isinstance(stored, dict):
            for names, subs, wanted in groups:
                found = _hashable(tuple(comparable(sub, stored.get(key)) for sub, key in zip(subs, names, strict=True)))
                if found is not _UNHASHABLE and found in wanted:
                    return True
        elif simple and _hashable(_identity(attr, stored)) in simple:
            return True
        return any(_same(attr, stored, given) for given in odd)

    return [item for item in current if not named(item)]


def _canonical_form(value: Any) -> bytes:
    """A hashable form of a JSON value in which equal values are equal (for set lookups)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


#: What :func:`_hashable` returns for a value that cannot be a dictionary key.
_UNHASHABLE: Any = object()


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return _UNHASHABLE
    return value


def _identity(attr: Attribute, value: Any) -> Any:
    """What makes a value of ``attr`` the same element as another for ``add`` and ``remove``."""
    return value if attr.exact_element_identity else comparable(attr, value)


def _dedupe(attr: Attribute, values: list[Any]) -> list[Any]:
    return _merge_values(attr, [], values)


def _merge_values(attr: Attribute, current: list[Any], new: list[Any]) -> list[Any]:
    """``add`` to a multi-valued attribute: append, but a value equal to one already there
    (by the attribute's case rule, and for objects of the same ``type``) takes the first such
    one's place instead of duplicating it.

    Linear: the elements are indexed by identity (and by identity and type) as they are merged,
    so each new value is one lookup — comparing each new value with every element made an add of
    4,000 emails cost 8 million comparisons (issue 11)."""
    merged = list(current)
    sub = attr.sub("value") if attr.is_complex else attr
    if sub is None:  # e.g. addresses: no value identifies an element, every value is added
        merged.extend(new)
    else:
        first_by_key: dict[Any, int] = {}  # identity -> first position (a plain new value matches any type)
        first_by_key_and_type: dict[tuple[Any, Any], int] = {}  # (identity, type) -> first position

        def remember(position: int, element: Any) -> None:
            raw = element.get("value") if isinstance(element, dict) else element
            key = _hashable(_identity(sub, raw))
            if raw is None or key is _UNHASHABLE:
                return
            first_by_key.setdefault(key, position)
            if isinstance(element, dict) and _hashable(element.get("type")) is not _UNHASHABLE:
                first_by_key_and_type.setdefault((key, element.get("type")), position)

        for position, element in enumerate(merged):
            remember(position, element)
        for value in new:
            raw = value.get("value") if isinstance(value, dict) else value
            key = _hashable(_identity(sub, raw)) if raw is not None else _UNHASHABLE
            if isinstance(value, dict):
                kind = _hashable(value.get("type"))
                found = (first_by_key_and_type.get((key, kind))
                         if key is not _UNHASHABLE and kind is not _UNHASHABLE else None)
            else:
                found = first_by_key.get(key) if key is not _UNHASHABLE else None
            if found is not None:
                merged[found] = {**merged[found], **value} if isinstance(value, dict) else value
            else:
                merged.append(value)
                remember(len(merged) - 1, value)
    if attr.is_complex:
        _primary_wins(attr, merged, prefer=[v for v in new if isinstance(v, dict) and v.get("primary") is True])
    return merged


def _primary_wins(attr: Attribute, elements: list[Any], prefer: list[Any]) -> None:
    """RFC 7644 §3.5.2: setting ``primary`` on one value clears it on the others."""
    primaries = [e for e in elements if isinstance(e, dict) and e.get("primary") is True]
    if len(primaries) <= 1:
        return
    # One pass, not primaries × prefer comparisons: a filtered replace can set `primary` on every
    # element at once. Equal (not only identical) elements count, as merged values are copies.
    preferred_ids = {id(p) for p in prefer}
    preferred_forms = {_canonical_form(p) for p in prefer}
    winner = next((e for e in reversed(primaries) if id(e) in preferred_ids or _canonical_form(e) in preferred_forms),
                  primaries[-1])
    for element in primaries:
        if element is not winner:
            element["primary"] = False
