"""From a source object to the target values its mapping asks for (§1.4 "Evaluate"), and from
two sets of target values to the changes that make one the other (§1.4 "Export": only
attributes whose value differs travel, ``FlowWhenChanged``).

References (``manager``, group ``members``) are computed as *source anchors*; the cycle turns them
into target ids once the referenced objects exist there (§1.6).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from identity_sync.engine.mapping.expressions import (
    IGNORE_FLOW,
    CaseInsensitiveAttributes,
    EvaluationContext,
    ExpressionError,
)
from identity_sync.engine.mapping.model import AttributeMapping, ObjectMapping
from identity_sync.engine.model import Change, SourceObject, Value

#: How a redacted value is shown in provisioning logs (Entra's Redact(), §2.3).
REDACTED = "[Redact]"
_REDACTED_PREFIX = "redacted-sha256:"


class MappingEvaluationError(Exception):
    """A mapping that cannot be evaluated for one object (a per-object failure, not a job failure)."""

    def __init__(self, target: str, message: str, *, error_code: str = "AttributeMappingFailed") -> None:
        super().__init__(f"{target}: {message}")
        self.target = target
        #: The provisioning log's error code (§1.7: SchemaPropertyCanOnlyAcceptValue, DuplicateSourceEntries…).
        self.error_code = error_code


@dataclass(frozen=True, slots=True)
class Computed:
    """The target values of one object: path → value (references still as source anchors)."""

    values: dict[str, Value]
    #: Paths whose values are redacted in logs and stored only as digests.
    redacted: frozenset[str]
    #: Paths of Reference type (their values are source anchors).
    references: frozenset[str]


def source_attributes(obj: SourceObject, *, soft_deleted: bool) -> dict[str, Value]:
    """The attributes expressions see: the source's, plus Entra's computed ones (§1.4, §2.2):
    ``IsSoftDeleted`` (out of scope, disabled or soft-deleted), ``objectId`` (the anchor)."""
    attributes = dict(obj.attributes)
    attributes["IsSoftDeleted"] = soft_deleted
    attributes.setdefault("objectId", obj.anchor)
    return attributes


def compute_values(mapping: ObjectMapping, attributes: Mapping[str, Value], context: EvaluationContext, *,
                   creating: bool) -> Computed:
    values: dict[str, Value] = {}
    redacted: set[str] = set()
    references: set[str] = set()
    # One case-insensitive index per object, shared by Direct mappings and expressions: Entra's
    # attribute names ignore case, and the default mapping names columns most exports lack.
    if not isinstance(attributes, CaseInsensitiveAttributes):
        attributes = CaseInsensitiveAttributes(attributes)
    for item in mapping.mappings:
        if item.flow == "create" and not creating:
            continue
        if item.expression is not None:
            try:
                value = item.expression.evaluate(attributes, context)
            except ExpressionError as exc:
                raise MappingEvaluationError(item.target, str(exc)) from None
            if value is IGNORE_FLOW:
                continue
        elif item.constant is not None:
            value = item.constant
        else:
            assert item.source is not None
            value = attributes.get(item.source)
            if value is None:
                value = attributes.folded(item.source.casefold())
        if item.is_reference:
            references.add(item.target)  # also when null: a removed manager must be removed (§1.6)
        value = coerce(item, value)
        if value is None and creating and item.default is not None:
            value = coerce(item, item.default)  # "Default value if null": creation only (§2.1)
        if value is None:
            continue  # null values are not provisioned (§1.4)
        values[item.target] = value
        if item.redacted:
            redacted.add(item.target)
    return Computed(values, frozenset(redacted), frozenset(references))


def coerce(item: AttributeMapping, value: Any) -> Value:
    """A computed value in the target attribute's type; ``None`` for null or empty."""
    if value is None or value == "" or value == []:
        return None
    if item.multi_valued:
        items = value if isinstance(value, list) else [value]
        seen: dict[str, None] = {}
        for element in items:
            text = _text(element)
            if text:
                seen.setdefault(text, None)
        return list(seen) or None
    if isinstance(value, list):
        if len(value) > 1:
            # Entra's SchemaPropertyCanOnlyAcceptValue (§1.7): several values for a single-valued attribute.
            raise MappingEvaluationError(item.target, f"{len(value)} values for a single-valued attribute",
                                         error_code="SchemaPropertyCanOnlyAcceptValue")
        value = value[0]
    if item.type == "Boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise MappingEvaluationError(item.target, f"{value!r} is not a Boolean")
    if item.type == "Integer":
        if isinstance(value, bool):
            raise MappingEvaluationError(item.target, f"{value!r} is not an integer")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise MappingEvaluationError(item.target, f"{value!r} is not an integer") from None
    return _text(value)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def stored_form(values: Mapping[str, Value], redacted: frozenset[str]) -> dict[str, Value]:
    """What the connector data store keeps of exported values: redacted ones only as digests."""
    return {path: (_redaction_digest(value) if path in redacted else value) for path, value in values.items()}


def digest(stored: Mapping[str, Value]) -> str:
    """A fingerprint of exported values: equal digests, nothing to send."""
    return hashlib.sha256(orjson.dumps(_canonical(stored), option=orjson.OPT_SORT_KEYS)).hexdigest()


def diff(desired: Mapping[str, Value], current: Mapping[str, Value], *, references: frozenset[str],
         redacted: frozenset[str], multi_valued: frozenset[str]) -> list[Change]:
    """The changes that turn ``current`` into ``desired``. An attribute missing from ``desired`` is
    left alone (Entra never clears values, §1.4) — except references, whose removal is sent."""
    changes = [Change(path, value) for path, value in desired.items()
               if not same(current.get(path), value, redacted=path in redacted, multi=path in multi_valued)]
    changes += [Change(path, None) for path in references
                if path not in desired and current.get(path) not in (None, "", [])]
    return changes


def same(current: Value, desired: Value, *, redacted: bool = False, multi: bool = False) -> bool:
    if redacted and isinstance(current, str) and current.startswith(_REDACTED_PREFIX):
        return current == _redaction_digest(desired)
    if multi:
        return sorted(_as_list(current)) == sorted(_as_list(desired))
    if isinstance(desired, bool) and isinstance(current, str):
        return current.strip().lower() == str(desired).lower()
    return current == desired


def _as_list(value: Value) -> list[str]:
    if value is None:
        return []
    return [str(x) for x in (value if isinstance(value, list) else [value])]


def shown(path: str, value: Value, redacted: frozenset[str]) -> Value:
    """A value as logs show it."""
    if value is None:
        return None
    return REDACTED if path in redacted else value


def _redaction_digest(value: Value) -> str:
    return _REDACTED_PREFIX + hashlib.sha256(orjson.dumps(_canonical(value))).hexdigest()


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return sorted(_canonical(v) for v in value)
    return value
