"""The target side of a cycle: matching (§1.4 "Match") and the writes, through the SCIM client
only. A preview runs the same code with the writes recorded instead of sent (reads still go to
the target, so that "create" and "update" are told apart as a real cycle would)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from identity_sync.engine.client import ScimClient, TargetError, documents
from identity_sync.engine.client.scim_client import IncompleteListing
from identity_sync.engine.mapping.model import ObjectMapping
from identity_sync.engine.model import Change, Value

PREVIEW_ID = "(new)"


@dataclass
class MatchResult:
    """The "Match" step: the target object found (or none), and what each attribute found."""

    resource: dict[str, Any] | None
    details: list[str]
    #: Set when no matching attribute had a value (Entra's ``ImportSkipped``).
    no_value: bool = False
    #: Set when an attribute found several objects (``DuplicateTargetEntries``).
    duplicates: int = 0


class Target:
    def __init__(self, client: ScimClient, *, preview: bool = False) -> None:
        self.client = client
        self.preview = preview
        #: Writes a preview would have sent, by method.
        self.withheld: Counter[str] = Counter()
        #: resource type → matching path → lower-cased values present in the target (see ``read_index``).
        self._present: dict[str, dict[str, set[str]]] = {}

    async def read_index(self, mapping: ObjectMapping) -> bool:
        """Read the matching attributes of every target object of the mapping's type up front, for
        an initial cycle with many objects to match: a value absent from a *complete* listing is
        not in the target, so its object is created without a query of its own (100,000 queries
        fewer for a new directory). A value present is still matched by Entra's query (§1.4), so
        the listing only ever saves queries, never decides a match. False when the target could
        not list everything (then every object is queried, as Entra does)."""
        paths = [m.target for m in mapping.matching]
        attributes = sorted({path.split("[", 1)[0] for path in paths})
        present: dict[str, set[str]] = {path: set() for path in paths}
        try:
            async for page in self.client.scan(mapping.resource_type, attributes):
                for resource in page:
                    for path in paths:
                        value = documents.extract(resource, path)
                        if isinstance(value, (str, int, bool)):
                            present[path].add(str(value).lower())
        except IncompleteListing:
            return False
        self._present[mapping.resource_type] = present
        return True

    async def match(self, mapping: ObjectMapping, values: dict[str, Value]) -> MatchResult:
        """Each matching attribute in precedence order, one ``eq`` query each; the first that
        finds something decides (§1.4)."""
        details: list[str] = []
        tried = False
        for item in mapping.matching:
            value = values.get(item.target)
            if value is None or isinstance(value, list):
                details.append(f"{item.target}: no value, not used")
                continue
            tried = True
            present = self._present.get(mapping.resource_type, {}).get(item.target)
            if present is not None and str(value).lower() not in present:
                details.append(f"{item.target} eq {value!r}: 0 matches (not in the target's listing)")
                continue
            found = await self.client.find(mapping.resource_type, item.target, str(value))
            details.append(f"{item.target} eq {value!r}: {len(found)} match(es)")
            if len(found) > 1:
                return MatchResult(None, details, duplicates=len(found))
            if found:
                return MatchResult(found[0], details)
        return MatchResult(None, details, no_value=not tried)

    def _withheld(self, method: str) -> bool:
        """In a preview, count the write instead of sending it."""
        if self.preview:
            self.withheld[method] += 1
        return self.preview

    async def get(self, resource_type: str, target_id: str) -> dict[str, Any] | None:
        return await self.client.get(resource_type, target_id)

    async def create(self, resource_type: str, values: dict[str, Value]) -> str:
        if self._withheld("POST"):
            return PREVIEW_ID
        created = await self.client.create(resource_type, values)
        target_id = created.get("id")
        if not isinstance(target_id, str) or not target_id:
            raise TargetError("the created resource has no id", status=201, error_code="ServiceIncompatible",
                              job_level=False, detail="the created resource has no id")
        return target_id

    async def update(self, resource_type: str, target_id: str, changes: list[Change]) -> None:
        if not changes:
            return
        if self._withheld("PATCH"):
            return
        await self.client.update(resource_type, target_id, changes)

    async def delete(self, resource_type: str, target_id: str) -> None:
        if self._withheld("DELETE"):
            return
        await self.client.delete(resource_type, target_id)

    async def add_members(self, group_id: str, member_ids: list[str]) -> None:
        if not member_ids:
            return
        if self._withheld("PATCH"):
            return
        await self.client.add_members(group_id, member_ids)

    async def remove_members(self, group_id: str, member_ids: list[str]) -> None:
        if not member_ids:
            return
        if self._withheld("PATCH"):
            return
        await self.client.remove_members(group_id, member_ids)


def current_values(resource: dict[str, Any], paths: list[str]) -> dict[str, Value]:
    """The values a target object holds at the paths a mapping writes (for the diff of an initial
    cycle, which compares with the target itself rather than with what was last exported)."""
    values: dict[str, Value] = {}
    for path in paths:
        value = documents.extract(resource, path)
        if value is not None:
            values[path] = value
    return values
