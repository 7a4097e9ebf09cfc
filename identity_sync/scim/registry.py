"""Resource types and attribute-path resolution.

A resource document is stored in its canonical SCIM shape: core and common attributes at the top
level under their schema spelling, each extension's attributes in an object keyed by the
extension URN. :meth:`ResourceType.resolve` maps whatever spelling a client used — any letter
case, with or without a URN prefix, Entra's legacy ``urn:…:User.attr`` dot form, an extension
attribute named without its URN — to the one place in that document.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from identity_sync.errors import BadRequest
from identity_sync.scim import definitions as d
from identity_sync.scim.attributes import Attribute, Schema
from identity_sync.scim.filter_ast import AttrPath


@dataclass(frozen=True, slots=True)
class Resolved:
    """Where an attribute path points in a stored document.

    ``container`` is ``None`` for core/common attributes and the extension URN otherwise;
    ``sub`` is set when the path names a sub-attribute of a complex attribute.
    """

    container: str | None
    attribute: Attribute
    sub: Attribute | None = None

    @property
    def target(self) -> Attribute:
        return self.sub or self.attribute

    @property
    def index_path(self) -> str:
        """The lower-cased key under which :mod:`identity_sync.scim.index` files this value."""
        base = self.attribute.name.lower()
        if self.container:
            base = f"{index_prefix(self.container)}{base}"
        return f"{base}.{self.sub.name.lower()}" if self.sub else base


#: Short, stable prefixes for extension attributes in the value index (rows are stored per value,
#: so an 80-character URN in every row would double the index). Never change an existing one.
_INDEX_PREFIXES = {
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user": "enterprise:",
    "urn:ietf:params:scim:schemas:extension:globalrelay:2.0:user": "globalrelay:",
}


def index_prefix(schema_urn: str) -> str:
    return _INDEX_PREFIXES.get(schema_urn.lower()) or schema_urn.lower() + ":"


@dataclass(frozen=True)
class ResourceType:
    name: str
    endpoint: str
    description: str
    core: Schema
    extensions: tuple[Schema, ...] = ()

    @property
    def schemas(self) -> tuple[Schema, ...]:
        return (self.core, *self.extensions)

    def extension(self, urn: str) -> Schema | None:
        urn_key = urn.lower()
        for ext in self.extensions:
            if ext.id.lower() == urn_key:
                return ext
        return None

    def resolve(self, path: AttrPath, *, scim_type: str = "invalidPath") -> Resolved:
        """Resolve ``path`` or raise ``BadRequest(scim_type)`` naming the unknown attribute."""
        attr_name, sub_name, urn = path.attr, path.sub, path.urn
        container: str | None = None
        schema: Schema | None
        if urn is not None:
            if urn.lower() == self.core.id.lower():
                schema = self.core
            else:
                schema = self.extension(urn)
                if schema is None:
                    # Entra's pre-2018 dot form: urn:…:2.0:User.employeeNumber
                    legacy = self.extension(f"{urn}:{attr_name}")
                    if legacy is None or sub_name is None:
                        raise BadRequest(f"Unknown schema in path: {urn[:80]}", scim_type)
                    schema, attr_name, sub_name = legacy, sub_name, None
                container = schema.id
            attribute = self.common_attribute(attr_name) if schema is self.core else None
            attribute = attribute or schema.attribute(attr_name)
        else:
            attribute = self.common_attribute(attr_name) or self.core.attribute(attr_name)
            if attribute is None:
                # Lenient: an extension attribute named without its URN (`manager`, `department`).
                matches = [(ext, ext.attribute(attr_name)) for ext in self.extensions if ext.attribute(attr_name)]
                if len(matches) == 1:
                    container, attribute = matches[0][0].id, matches[0][1]
        if attribute is None:
            raise BadRequest(f"Unknown attribute: {_clip(attr_name)}", scim_type)
        sub = None
        if sub_name is not None:
            sub = attribute.sub(sub_name)
            if sub is None:
                raise BadRequest(f"Unknown sub-attribute: {_clip(attribute.name)}.{_clip(sub_name)}", scim_type)
        return Resolved(container, attribute, sub)

    def common_attribute(self, name: str) -> Attribute | None:
        key = name.lower()
        for attr in d.COMMON_ATTRIBUTES:
            if attr.name.lower() == key:
                return attr
        return None

    def to_resource_type(self, location: str) -> dict[str, Any]:
        return {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": self.name,
            "name": self.name,
            "endpoint": f"/{self.endpoint}",
            "description": self.description,
            "schema": self.core.id,
            "schemaExtensions": [{"schema": ext.id, "required": False} for ext in self.extensions],
            "meta": {"resourceType": "ResourceType", "location": location},
        }


def _clip(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


USER = ResourceType("User", "Users", "User Account", d.USER, (d.ENTERPRISE_USER, d.GLOBALRELAY_USER))
GROUP = ResourceType("Group", "Groups", "Group", d.GROUP)
RESOURCE_TYPES = (USER, GROUP)
ALL_SCHEMAS = (d.USER, d.ENTERPRISE_USER, d.GLOBALRELAY_USER, d.GROUP)


def canonical_key(value: str) -> str:
    """The comparison form of a ``caseExact: false`` string (RFC 7644 §7.8, after PRECIS
    UsernameCaseMapped, RFC 8265): fullwidth/halfwidth forms mapped to their ordinary letters, then
    lower-cased (not ``casefold``: ``ß`` stays distinct from ``ss``) and NFC-normalized.

    One function serves the unique index, ``eq`` filters and PATCH value matching, so the three
    can never disagree about which strings are "the same".
    """
    if value.isascii():
        return value.lower()
    mapped = "".join(
        unicodedata.normalize("NFKC", ch) if 0xFF00 <= ord(ch) <= 0xFFEF else ch for ch in value
    )
    return unicodedata.normalize("NFC", mapped.lower())
