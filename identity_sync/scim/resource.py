"""Turning what a client sent into the canonical stored document, and checking a document.

The canonical document keeps every value exactly as sent, but in the shape the schema declares:
attribute names in schema spelling, multi-valued attributes as arrays, booleans as booleans,
extension attributes under their URN. Leniency is deliberate and limited to the shapes real
clients send (Entra's ``"False"`` strings, a bare-string ``manager``, string-encoded role JSON,
``proxyAddresses`` as a string or ``[{"value": …}]``); anything else of the wrong type is a 400
``invalidValue`` that names the attribute. Read-only attributes (``id``, ``meta``, ``groups``) and
attributes we do not know (``password``, Microsoft's ``ADSCIM`` extras) are ignored, as RFC 7644
§3.3 allows, so that a client's full record is never refused for a field we do not keep.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import orjson

from identity_sync.errors import BadRequest
from identity_sync.scim import attributes as t
from identity_sync.scim.attributes import Attribute, Schema
from identity_sync.scim.registry import ResourceType

_TRUE_FALSE = {"true": True, "false": False}
#: Default of ``IDSYNC_ATTRIBUTE_MAX_VALUES``: the most values one multi-valued attribute may hold
#: (``emails``, ``proxyAddresses``…; a Group's ``members`` are rows, not values, and are not
#: counted). Every value is indexed for filtering, so an unbounded list is unbounded work per
#: write; real directories stay far below (Exchange caps ``proxyAddresses`` in the hundreds).
MAX_VALUES = 1_000
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]")


def is_empty(value: Any) -> bool:
    """RFC 7643 §2.5: null, an empty array and (our choice, as Entra clears with it) an empty
    string all mean "no value"."""
    return value is None or value == "" or value == [] or value == {}


def coerce(attr: Attribute, value: Any, *, label: str | None = None) -> Any:
    """``value`` as the canonical value of ``attr`` (an array for multi-valued attributes), or
    ``None`` when it carries no value. Raises ``BadRequest(invalidValue)``."""
    label = label or attr.name
    if is_empty(value):
        return None
    if attr.multi_valued:
        items = value if isinstance(value, list) else [value]
        out = [v for v in (_coerce_single(attr, item, label) for item in items) if v is not None]
        if attr.is_complex:
            _check_single_primary(out, label)
        return out or None
    if isinstance(value, list):
        # Legacy Entra manager shape [{"$ref": …, "value": id}] and one-element arrays.
        if len(value) != 1:
            raise BadRequest(f"Attribute '{label}' is single-valued; an array was given.")
        value = value[0]
    return _coerce_single(attr, value, label)


def _coerce_single(attr: Attribute, value: Any, label: str) -> Any:
    if is_empty(value):
        return None
    if attr.is_complex:
        return _coerce_complex(attr, value, label)
    if attr.multi_valued and isinstance(value, dict):
        # proxyAddresses as [{"value": "smtp:…"}]: Entra wraps each element of a multi-valued target.
        if set(k.lower() for k in value) - {"value", "primary", "type", "display"} or "value" not in {
            k.lower() for k in value
        }:
            raise BadRequest(f"Attribute '{label}' takes strings.")
        value = next(v for k, v in value.items() if k.lower() == "value")
        if is_empty(value):
            return None
    return coerce_simple(attr, value, label)


def _coerce_complex(attr: Attribute, value: Any, label: str) -> dict[str, Any] | None:
    if isinstance(value, str):
        decoded = _embedded_json(value)
        if decoded is not None:
            # Entra's app-role PATCH: {"value": "{\"id\":…,\"value\":\"Admin\",\"displayName\":\"Admin\"}"}
            value = decoded
        elif attr.multi_valued:
            # `"emails": ["x@y"]` is a client bug, not a dialect: wrapping it as {"value": …} would
            # store an untyped email the client never meant (the bare-id leniency is for manager).
            raise BadRequest(f"Attribute '{label}' must be an array of objects.")
        else:
            # A bare id for a reference-like complex attribute (Entra's manager).
            value = {"value": value}
    if not isinstance(value, dict):
        raise BadRequest(f"Attribute '{label}' must be an object.")
    if isinstance(value.get("value"), str):
        decoded = _embedded_json(value["value"])
        if decoded is not None:
            # Also with siblings ({"primary": false, "value": "{…}"}): they are kept, and the
            # document inside the string gives the rest.
            value = {**decoded, **{k: v for k, v in value.items() if k != "value"}}
    out: dict[str, Any] = {}
    for key, sub_value in value.items():
        sub = attr.sub(key)
        if sub is None and key.lower() == "displayname":
            sub = attr.sub("display")
        if sub is None or sub.mutability == "readOnly" or sub.name == "$ref":
            # `$ref` is derived from `value` when rendering, so a stale or foreign URI is never kept.
            continue
        coerced = coerce(sub, sub_value, label=f"{label}.{sub.name}")
        if coerced is not None:
            out[sub.name] = coerced
    return out or None


def _embedded_json(text: str) -> dict[str, Any] | None:
    stripped = text.strip()
    if not (stripped.startswith("{") and stripped.endswith("}")):
        return None
    try:
        decoded = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        return None
    return decoded if isinstance(decoded, dict) else None


def coerce_simple(attr: Attribute, value: Any, label: str) -> Any:
    kind = attr.type
    if kind == t.BOOLEAN:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE_FALSE:
            return _TRUE_FALSE[value.strip().lower()]
        raise BadRequest(f"Attribute '{label}' must be a boolean.")
    if kind in (t.INTEGER, t.DECIMAL):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadRequest(f"Attribute '{label}' must be a number.")
        if kind == t.INTEGER and not float(value).is_integer():
            raise BadRequest(f"Attribute '{label}' must be an integer.")
        return value
    if not isinstance(value, str):
        raise BadRequest(f"Attribute '{label}' must be a string.")
    if "\x00" in value:
        # PostgreSQL text cannot hold NUL and SQLite's LIKE stops at it: refused, never stored.
        raise BadRequest(f"Attribute '{label}' contains a NUL character.")
    if kind == t.DATETIME:
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise BadRequest(f"Attribute '{label}' must be an xsd:dateTime.") from None
    return value


def _check_single_primary(items: list[Any], label: str) -> None:
    if sum(1 for item in items if isinstance(item, dict) and item.get("primary") is True) > 1:
        raise BadRequest(f"At most one value of '{label}' may be primary.")


def check_value_count(attr: Attribute, value: Any, max_values: int, label: str | None = None) -> None:
    """Refuse (``400 invalidValue``) more than ``max_values`` values for a multi-valued attribute,
    before any of them is coerced: a 1 MiB body holds ~250,000 short strings."""
    if attr.multi_valued and isinstance(value, list) and len(value) > max_values:
        raise BadRequest(f"Attribute '{label or attr.name}' takes at most {max_values} values; "
                         f"{len(value)} were given.", "invalidValue")


def normalize(rt: ResourceType, body: Any, *, max_values: int = MAX_VALUES) -> dict[str, Any]:
    """The canonical document for a POST or PUT body (without ``id`` and ``meta``)."""
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.", "invalidSyntax")
    doc: dict[str, Any] = {}
    schemas = body.get("schemas")
    if schemas is not None and not (isinstance(schemas, list) and all(isinstance(s, str) for s in schemas)):
        raise BadRequest("'schemas' must be an array of URIs.", "invalidSyntax")
    for key, value in body.items():
        extension = rt.extension(key) if key.startswith(("urn:", "URN:")) else None
        if extension is not None:
            if is_empty(value):
                continue
            if not isinstance(value, dict):
                raise BadRequest(f"Extension '{extension.id}' must be an object.")
            ext_doc = _normalize_attrs(extension, value, max_values)
            if ext_doc:
                doc[extension.id] = ext_doc
            continue
        attr = rt.common_attribute(key) or rt.core.attribute(key)
        if attr is None or attr.mutability == "readOnly":
            continue
        check_value_count(attr, value, max_values)
        coerced = coerce(attr, value)
        if coerced is not None:
            doc[attr.name] = coerced
    check_document(rt, doc, max_values=max_values)
    return doc


def _normalize_attrs(schema: Schema, values: dict[str, Any], max_values: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        attr = schema.attribute(key)
        if attr is None or attr.mutability == "readOnly":
            continue
        check_value_count(attr, value, max_values)
        coerced = coerce(attr, value)
        if coerced is not None:
            out[attr.name] = coerced
    return out


def check_document(rt: ResourceType, doc: dict[str, Any], *, max_values: int = MAX_VALUES,
                   before: dict[str, Any] | None = None) -> None:
    """Invariants of a stored document: required attributes present, names without control
    characters (they would make two different-looking names equal or invisible), at most
    ``max_values`` values per multi-valued attribute. With ``before`` (a PATCH), a list that was
    already longer (stored before the cap existed) is refused only if it grew."""
    for attr in rt.core.attributes:
        if attr.required and is_empty(doc.get(attr.name)):
            raise BadRequest(f"Attribute '{attr.name}' is required.", "invalidValue")
        if attr.uniqueness == "server" and isinstance(doc.get(attr.name), str) and _CONTROL.search(doc[attr.name]):
            raise BadRequest(f"Attribute '{attr.name}' contains control or invisible characters.")
    for schema in rt.schemas:
        container = doc if schema is rt.core else doc.get(schema.id)
        if not isinstance(container, dict):
            continue
        old = (before if schema is rt.core else (before or {}).get(schema.id)) if before is not None else None
        for attr in schema.attributes:
            values = container.get(attr.name)
            if not attr.multi_valued or not isinstance(values, list) or len(values) <= max_values:
                continue
            previous = old.get(attr.name) if isinstance(old, dict) else None
            if isinstance(previous, list) and len(values) <= len(previous):
                continue
            label = attr.name if schema is rt.core else f"{schema.id}:{attr.name}"
            raise BadRequest(f"Attribute '{label}' takes at most {max_values} values.", "invalidValue")


def schemas_of(rt: ResourceType, doc: dict[str, Any]) -> list[str]:
    """The ``schemas`` array of a document: the core schema and each extension that has data."""
    return [rt.core.id, *(ext.id for ext in rt.extensions if ext.id in doc)]
