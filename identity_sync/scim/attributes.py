"""RFC 7643 §2.2 / §7 attribute characteristics, as data.

An :class:`Attribute` describes one attribute of a schema. The whole protocol layer (input
normalization, PATCH, filters, the index of searchable values, `/Schemas`) is driven by these
definitions, so that one table decides how a value is typed, compared and returned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STRING = "string"
BOOLEAN = "boolean"
DECIMAL = "decimal"
INTEGER = "integer"
DATETIME = "dateTime"
REFERENCE = "reference"
COMPLEX = "complex"
BINARY = "binary"


@dataclass(frozen=True)
class Attribute:
    name: str
    type: str = STRING
    multi_valued: bool = False
    description: str = ""
    required: bool = False
    case_exact: bool = False
    mutability: str = "readWrite"  # readOnly | readWrite | immutable | writeOnly
    returned: str = "default"  # always | never | default | request
    uniqueness: str = "none"  # none | server | global
    canonical_values: tuple[str, ...] = ()
    reference_types: tuple[str, ...] = ()
    sub_attributes: tuple[Attribute, ...] = ()
    #: PATCH ``add``/``remove`` tell the values apart by their exact text, although filters compare
    #: them by ``case_exact``: Exchange proxy addresses differ from each other by the case of
    #: their prefix alone (``SMTP:`` the primary address, ``smtp:`` an alias of the same mailbox).
    exact_element_identity: bool = False
    _subs_by_key: dict[str, Attribute] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._subs_by_key.update({sub.name.lower(): sub for sub in self.sub_attributes})

    @property
    def is_complex(self) -> bool:
        return self.type == COMPLEX

    def sub(self, name: str) -> Attribute | None:
        """The sub-attribute called ``name`` (case-insensitive), if any."""
        return self._subs_by_key.get(name.lower())

    def to_schema(self) -> dict[str, Any]:
        """The attribute as RFC 7643 §7 describes it in ``/Schemas``."""
        doc: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "multiValued": self.multi_valued,
            "description": self.description,
            "required": self.required,
            "caseExact": self.case_exact,
            "mutability": self.mutability,
            "returned": self.returned,
            "uniqueness": self.uniqueness,
        }
        if self.canonical_values:
            doc["canonicalValues"] = list(self.canonical_values)
        if self.reference_types:
            doc["referenceTypes"] = list(self.reference_types)
        if self.sub_attributes:
            doc["subAttributes"] = [sub.to_schema() for sub in self.sub_attributes]
        return doc


@dataclass(frozen=True)
class Schema:
    """One schema (core or extension): its URN and its top-level attributes."""

    id: str
    name: str
    description: str
    attributes: tuple[Attribute, ...]
    _by_key: dict[str, Attribute] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_key.update({attr.name.lower(): attr for attr in self.attributes})

    def attribute(self, name: str) -> Attribute | None:
        return self._by_key.get(name.lower())

    def to_schema(self, location: str) -> dict[str, Any]:
        return {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": [attr.to_schema() for attr in self.attributes],
            "meta": {"resourceType": "Schema", "location": location},
        }
