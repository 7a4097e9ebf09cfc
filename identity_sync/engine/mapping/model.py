"""Attribute mappings (provisioning-engine.md §2.1): what each target attribute gets, when, and
which attributes match source objects to target objects.

The mapping file — what ``job create --mapping FILE``, ``job export`` and ``job import`` read and
write — is JSON::

    {"users": {"enabled": true, "actions": ["create", "update", "delete"],
               "scoping": [{"title": "Sales", "clauses": [{"attribute": "department",
                                                          "operator": "EQUALS", "value": "Sales"}]}],
               "mappings": [{"target": "userName", "source": "userPrincipalName", "matching": 1},
                            {"target": "active", "expression": "Not([IsSoftDeleted])"},
                            {"target": "title", "source": "jobTitle", "default": "Staff",
                             "flow": "create"}]},
     "groups": {...},
     "skipOutOfScopeDeletions": false}

A mapping is *Direct* (``source``), *Constant* (``constant``) or *Expression* (``expression``),
with an optional ``default`` (used on creation only, §1.4), ``flow`` ``always`` or ``create``
("Only during creation"), ``matching`` precedence (1 is tried first) and a ``type`` where the
target attribute is not a string (``Boolean``, ``Integer``, ``Reference``; known SCIM attributes
get theirs without saying). ``multiValued`` marks a list-valued target such as ``proxyAddresses``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from identity_sync.engine.jsonfile import ConfigError, LocatedJson, load_json_file, load_json_text
from identity_sync.engine.mapping.expressions import Expression, ExpressionError, parse_expression
from identity_sync.engine.model import ObjectType
from identity_sync.engine.scoping import ScopingError, ScopingFilter, parse_scoping_filters

AttributeType = Literal["String", "Boolean", "Integer", "Reference", "DateTime"]
ACTIONS = ("create", "update", "delete")
_TYPES = ("String", "Boolean", "Integer", "Reference", "DateTime")
_KINDS = ("source", "constant", "expression")
_KEYS = {"target", *_KINDS, "default", "flow", "matching", "type", "multiValued"}
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GLOBAL_RELAY = "urn:ietf:params:scim:schemas:extension:GlobalRelay:2.0:User"
# Types of the SCIM attributes whose type is not String, so that mapping files need not say them.
_KNOWN_TYPES: dict[str, AttributeType] = {"active": "Boolean", f"{ENTERPRISE}:manager": "Reference",
                                          "members": "Reference"}
_KNOWN_MULTI = {f"{GLOBAL_RELAY}:proxyAddresses", "members"}


@dataclass(frozen=True)
class AttributeMapping:
    target: str
    source: str | None = None
    constant: str | None = None
    expression: Expression | None = None
    default: str | None = None
    flow: Literal["always", "create"] = "always"
    matching: int | None = None
    type: AttributeType = "String"
    multi_valued: bool = False

    @property
    def kind(self) -> str:
        return "expression" if self.expression else "constant" if self.constant is not None else "direct"

    @property
    def source_attributes(self) -> frozenset[str]:
        if self.expression is not None:
            return self.expression.attributes
        return frozenset({self.source}) if self.source else frozenset()

    @property
    def redacted(self) -> bool:
        return bool(self.expression and self.expression.redacted)

    @property
    def is_reference(self) -> bool:
        return self.type == "Reference"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"target": self.target}
        if self.expression is not None:
            data["expression"] = self.expression.text
        elif self.constant is not None:
            data["constant"] = self.constant
        else:
            data["source"] = self.source
        if self.default is not None:
            data["default"] = self.default
        if self.flow != "always":
            data["flow"] = self.flow
        if self.matching is not None:
            data["matching"] = self.matching
        if self.type != _KNOWN_TYPES.get(self.target, "String"):
            data["type"] = self.type
        if self.multi_valued != (self.target in _KNOWN_MULTI):
            data["multiValued"] = self.multi_valued
        return data


@dataclass(frozen=True)
class ObjectMapping:
    object_type: ObjectType
    enabled: bool = True
    actions: frozenset[str] = frozenset(ACTIONS)
    mappings: tuple[AttributeMapping, ...] = ()
    scoping: tuple[ScopingFilter, ...] = ()

    @property
    def matching(self) -> list[AttributeMapping]:
        """Matching attributes in precedence order (§1.4)."""
        return sorted((m for m in self.mappings if m.matching is not None), key=lambda m: m.matching or 0)

    @property
    def resource_type(self) -> str:
        return "User" if self.object_type == "user" else "Group"

    def mapping_for(self, target: str) -> AttributeMapping | None:
        return next((m for m in self.mappings if m.target == target), None)

    def source_attributes(self) -> frozenset[str]:
        """Every source attribute the mappings and scoping filters read, plus those the engine itself
        reads (state, references): what a source must fetch for this mapping."""
        names = {"accountEnabled", "deletedDateTime", "manager" if self.object_type == "user" else "members"}
        for item in self.mappings:
            names |= item.source_attributes
        for scoping_filter in self.scoping:
            names |= {clause.attribute for clause in scoping_filter.clauses}
        return frozenset(names)

    def to_json(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "actions": [a for a in ACTIONS if a in self.actions],
                "scoping": [f.to_json() for f in self.scoping], "mappings": [m.to_json() for m in self.mappings]}


@dataclass(frozen=True)
class MappingConfig:
    users: ObjectMapping
    groups: ObjectMapping
    #: §4.2: objects leaving scope are not disabled (hard deletes still follow the Delete action).
    skip_out_of_scope_deletions: bool = False

    def for_type(self, object_type: ObjectType) -> ObjectMapping:
        return self.users if object_type == "user" else self.groups

    def to_json(self) -> dict[str, Any]:
        return {"users": self.users.to_json(), "groups": self.groups.to_json(),
                "skipOutOfScopeDeletions": self.skip_out_of_scope_deletions}


class MappingError(ConfigError):
    """A mapping document that cannot be used (one line: ``FILE:LINE:COL: path: problem``)."""


def load_mapping_file(path: Path) -> MappingConfig:
    try:
        return parse_mapping(load_json_file(path))
    except MappingError:
        raise
    except ConfigError as exc:
        raise MappingError(str(exc)) from None


def read_mapping_file(path: Path) -> dict[str, Any]:
    """A mapping file's document, validated (``job import``, ``--mapping``); errors name the
    file, line and column, in one line."""
    try:
        located = load_json_file(path)
    except ConfigError as exc:
        raise MappingError(str(exc)) from None
    parse_mapping(located)
    return located.value


def read_mapping_text(text: str, origin: str) -> dict[str, Any]:
    """A mapping document given as text (the console's import form), validated exactly as a file
    is; errors name ``origin``, the line and the column."""
    try:
        located = load_json_text(text, origin)
    except ConfigError as exc:
        raise MappingError(str(exc)) from None
    parse_mapping(located)
    if not isinstance(located.value, dict):  # parse_mapping refused it already; for the type checker
        raise MappingError(f"{origin}: a mapping document is a JSON object")
    return located.value


def load_mapping_document(data: Any, origin: str = "mapping") -> MappingConfig:
    """A mapping from an already-parsed document (the job's stored copy)."""
    import json

    return parse_mapping(load_json_text(json.dumps(data, indent=1), origin))


@cache
def default_mapping_document() -> dict[str, Any]:
    """The seed's Global Relay mapping (default_mapping.json, documented in docs/default-mapping.md)."""
    import json

    text = resources.files("identity_sync.engine.mapping").joinpath("default_mapping.json").read_text("utf-8")
    return json.loads(text)


def default_mapping() -> MappingConfig:
    return load_mapping_document(default_mapping_document(), "default_mapping.json")


def parse_mapping(doc: LocatedJson) -> MappingConfig:
    data = doc.value
    if not isinstance(data, dict):
        raise _error(doc, "", "a mapping document is a JSON object with 'users' and 'groups'")
    _unknown_keys(doc, "", data, {"users", "groups", "skipOutOfScopeDeletions"})
    skip = data.get("skipOutOfScopeDeletions", False)
    if not isinstance(skip, bool):
        raise _error(doc, "skipOutOfScopeDeletions", "must be true or false")
    users = _object_mapping(doc, "users", "user", data.get("users"))
    groups = _object_mapping(doc, "groups", "group", data.get("groups"))
    return MappingConfig(users, groups, skip)


def _object_mapping(doc: LocatedJson, where: str, object_type: ObjectType, data: Any) -> ObjectMapping:
    if data is None:
        if object_type == "user":
            raise _error(doc, where, "the users mapping is required")
        return ObjectMapping(object_type, enabled=False)
    if not isinstance(data, dict):
        raise _error(doc, where, "must be an object")
    _unknown_keys(doc, where, data, {"enabled", "actions", "scoping", "mappings"})
    enabled = data.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _error(doc, f"{where}.enabled", "must be true or false")
    if object_type == "user" and not enabled:
        raise _error(doc, f"{where}.enabled", "users cannot be turned off (groups can), as in Entra")
    actions = data.get("actions", list(ACTIONS))
    if not isinstance(actions, list) or any(a not in ACTIONS for a in actions):
        raise _error(doc, f"{where}.actions", f"a list of {', '.join(ACTIONS)}")
    try:
        scoping = tuple(parse_scoping_filters(data.get("scoping") or [], f"{where}.scoping"))
    except ScopingError as exc:
        # Its message starts with the JSON location of the clause: point the file position there.
        location, _, problem = str(exc).partition(": ")
        raise _error(doc, location, problem) from None
    raw = data.get("mappings")
    if not isinstance(raw, list) or not raw:
        raise _error(doc, f"{where}.mappings", "a non-empty list of attribute mappings")
    mappings = tuple(_attribute_mapping(doc, f"{where}.mappings[{i}]", item) for i, item in enumerate(raw))
    seen: dict[str, int] = {}
    for index, mapping in enumerate(mappings):
        if mapping.target in seen:
            raise _error(doc, f"{where}.mappings[{index}].target",
                         f"'{mapping.target}' is mapped twice (also {where}.mappings[{seen[mapping.target]}])")
        seen[mapping.target] = index
    result = ObjectMapping(object_type, enabled, frozenset(actions), mappings, scoping)
    if enabled and not result.matching:
        raise _error(doc, f"{where}.mappings", "no matching attribute: mark one with \"matching\": 1 (§1.4)")
    if object_type == "group" and enabled and not result.mapping_for("displayName"):
        raise _error(doc, f"{where}.mappings", "groups need a displayName mapping")
    return result


def _attribute_mapping(doc: LocatedJson, where: str, data: Any) -> AttributeMapping:
    if not isinstance(data, dict):
        raise _error(doc, where, "an attribute mapping is an object with 'target' and one of "
                                 "source/constant/expression")
    _unknown_keys(doc, where, data, _KEYS)
    target = data.get("target")
    if not isinstance(target, str) or not target.strip():
        raise _error(doc, f"{where}.target", "the target attribute (a SCIM attribute path) is required")
    _check_target_path(doc, f"{where}.target", target)
    kinds = [k for k in _KINDS if k in data]
    if len(kinds) != 1:
        raise _error(doc, where, "give exactly one of 'source' (Direct), 'constant' or 'expression'")
    kind = kinds[0]
    value = data[kind]
    if not isinstance(value, str) or (kind != "constant" and not value.strip()):
        raise _error(doc, f"{where}.{kind}", "must be a non-empty string")
    expression = None
    if kind == "expression":
        try:
            expression = parse_expression(value)
        except ExpressionError as exc:
            raise _error(doc, f"{where}.expression", f"column {exc.column}: {exc.message}", exc.column) from None
    default = data.get("default")
    if default is not None and not isinstance(default, str):
        raise _error(doc, f"{where}.default", "must be a string")
    flow = data.get("flow", "always")
    if flow not in ("always", "create"):
        raise _error(doc, f"{where}.flow", "'always' or 'create' (Only during creation)")
    matching = data.get("matching")
    if matching is not None and (not isinstance(matching, int) or isinstance(matching, bool) or matching < 1):
        raise _error(doc, f"{where}.matching", "the matching precedence, an integer from 1")
    attr_type = data.get("type", _KNOWN_TYPES.get(target, "String"))
    if attr_type not in _TYPES:
        raise _error(doc, f"{where}.type", f"one of {', '.join(_TYPES)}")
    multi = data.get("multiValued", target in _KNOWN_MULTI)
    if not isinstance(multi, bool):
        raise _error(doc, f"{where}.multiValued", "must be true or false")
    if matching is not None and (attr_type == "Reference" or multi):
        raise _error(doc, f"{where}.matching", "references and multi-valued attributes cannot match objects")
    return AttributeMapping(target=target, source=value if kind == "source" else None,
                            constant=value if kind == "constant" else None, expression=expression,
                            default=default, flow=flow, matching=matching, type=attr_type, multi_valued=multi)


def _check_target_path(doc: LocatedJson, where: str, target: str) -> None:
    from identity_sync.engine.client import documents

    if target.lower() == "id":
        raise _error(doc, where, "'id' is the target's own key and cannot be mapped (§2.1)")
    try:
        # The SCIM client's own reading of a path: what it cannot write is refused here, when the
        # mapping is loaded, not in the middle of a cycle.
        documents.locate(target)
    except ValueError as exc:
        raise _error(doc, where, f"not a SCIM attribute path the engine can write: {exc}") from None


def _unknown_keys(doc: LocatedJson, where: str, data: dict[str, Any], allowed: set[str]) -> None:
    for key in data:
        if key not in allowed:
            hint = difflib.get_close_matches(key, sorted(allowed), n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise _error(doc, f"{where}.{key}" if where else key, f"unknown key{suggestion}")


def _error(doc: LocatedJson, path: str, message: str, column: int | None = None) -> MappingError:
    return MappingError(str(doc.error(path, message, column)))
