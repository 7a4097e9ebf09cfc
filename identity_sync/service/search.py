"""A search across resource types: ``POST /.search`` at the root (RFC 7644 §3.4.3).

It runs over the given types in order (Users, then Groups) and pages by index over their
concatenation. A filter naming an attribute that one type does not have simply matches nothing
of that type; it is ``400 invalidFilter`` only when no type knows it. The HTTP layer parses the
SearchRequest and renders what this returns (web/search.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from identity_sync.auth.tokens import Principal
from identity_sync.errors import BadRequest
from identity_sync.scim.registry import ResourceType
from identity_sync.service.resources import ListRequest, ResourceService, StoredResource


@dataclass(frozen=True, slots=True)
class RootPage:
    """One page of a root search: every type's matches counted, the page's resources by type."""

    total: int
    pages: list[tuple[ResourceType, list[StoredResource]]]


def search_all(resources: ResourceService, principal: Principal, types: Sequence[ResourceType],
               filter_text: str | None, start_index: int, count: int) -> RootPage:
    """``count`` resources from the ``start_index``-th (1-based) of ``types``' matches, in order."""
    totals: list[tuple[ResourceType, int]] = []
    refusals: list[BadRequest] = []
    for rt in types:
        try:
            totals.append((rt, resources.search(principal, rt, filter_text, ListRequest(count=0)).total or 0))
        except BadRequest as error:
            if error.scim_type != "invalidFilter":
                raise
            refusals.append(error)
    if refusals and not totals:
        raise refusals[0]
    pages: list[tuple[ResourceType, list[StoredResource]]] = []
    skip, wanted = start_index - 1, count
    for rt, total in totals:
        if wanted <= 0:
            break
        if skip >= total:
            skip -= total
            continue
        page = resources.search(principal, rt, filter_text, ListRequest(start_index=skip + 1, count=wanted))
        pages.append((rt, page.resources))
        wanted -= len(page.resources)
        skip = 0
    return RootPage(sum(total for _, total in totals), pages)
