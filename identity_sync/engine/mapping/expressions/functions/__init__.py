"""Every function of the language (provisioning-engine.md §2.3), grouped by family, in one table."""

from __future__ import annotations

from types import MappingProxyType

from identity_sync.engine.mapping.expressions.functions import (
    conversions,
    dates,
    generators,
    letters,
    logic,
    multivalued,
    replace,
    strings,
)
from identity_sync.engine.mapping.expressions.functions.registry import FunctionSpec

_FAMILIES = (conversions, dates, generators, letters, logic, multivalued, replace, strings)

#: Function name (case-sensitive, as Entra) → its specification.
FUNCTIONS: MappingProxyType[str, FunctionSpec] = MappingProxyType(
    {spec.name: spec for family in _FAMILIES for spec in family.FUNCTIONS}
)

__all__ = ["FUNCTIONS", "FunctionSpec"]
