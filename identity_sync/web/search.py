"""Queries: ``GET /Users`` and ``GET /Groups`` with their parameters, and ``POST /.search``
(RFC 7644 §3.4.3) per resource type and at the root.

Both forms take the same parameters — ``filter``, ``sortBy``, ``sortOrder``, ``startIndex``,
``count``, ``cursor`` (RFC 9865), ``attributes``, ``excludedAttributes`` — and give the same
answer: ``POST /.search`` exists so that a filter with personal data need not travel in a URL
(and end up in proxy logs).

At the root a search runs over Users and then Groups (``service/search.py``): a filter naming an
attribute that one type does not have simply matches nothing of that type (``400 invalidFilter``
only when no type knows it), ``attributes`` are applied per type the same way (here), and paging
is by index over the concatenation. ``sortBy`` and cursors are refused there (``400``): one order across types with
different attributes has no meaning a client could rely on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from identity_sync.auth.tokens import Principal
from identity_sync.config import Settings
from identity_sync.errors import BadRequest
from identity_sync.pacing import pause
from identity_sync.scim.registry import ResourceType
from identity_sync.service.resources import ListRequest
from identity_sync.service.search import search_all
from identity_sync.web import discovery
from identity_sync.web.render import LIST_SCHEMA, Projection, check_name_count, list_response, render
from identity_sync.web.responses import ScimResponse

if TYPE_CHECKING:
    from identity_sync.web.app import Handlers

SEARCH_REQUEST = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
#: The largest ``startIndex`` honoured (2^53 - 1: exact in every JSON parser); larger ones give the
#: same empty page.
MAX_START_INDEX = 2**53 - 1


class Query:
    """The parameters of one list or search request, validated."""

    def __init__(self, params: Mapping[str, Any], settings: Settings) -> None:
        self.filter = _text(params, "filter")
        self.max_names = settings.attribute_list_max_names
        self.attributes = _names(params, "attributes", self.max_names)
        self.excluded = _names(params, "excludedAttributes", self.max_names)
        self.sort_by = _text(params, "sortBy") or None
        order = (_text(params, "sortOrder") or "ascending").lower()
        if order not in ("ascending", "descending"):
            raise BadRequest("sortOrder is 'ascending' or 'descending'.", "invalidValue")
        self.descending = order == "descending"
        # Clamped, not refused: RFC 7644 §3.4.2.4 answers a startIndex past the results with an
        # empty page and a count past the maximum with the maximum. The bound keeps the offset a
        # 64-bit integer for the database and a JSON-safe integer in the response.
        self.start_index = min(max(1, _int(params, "startIndex", 1)), MAX_START_INDEX)
        count = _int(params, "count", settings.default_page_size)
        self.count = min(max(0, count), settings.max_page_size)
        cursor = params.get("cursor")
        if cursor is not None and not isinstance(cursor, str):
            raise BadRequest("'cursor' must be a string.", "invalidValue")
        self.cursor: str | None = cursor

    def list_request(self) -> ListRequest:
        return ListRequest(start_index=self.start_index, count=self.count, sort_by=self.sort_by,
                           descending=self.descending, cursor=self.cursor, filter_text=self.filter or "")

    def projection(self, rt: ResourceType, *, lenient: bool = False) -> Projection:
        include, exclude = self.attributes, self.excluded
        if lenient:  # at the root: keep only what this resource type has
            include, exclude = _known(rt, include), _known(rt, exclude)
            if self.attributes and not include:
                include = "id"
        return Projection(rt, include, exclude, max_names=self.max_names)


async def list_resources(h: Handlers, request: Request, rt: ResourceType) -> Response:
    return await _search(h, request, rt, Query(request.query_params, h.settings))


async def search(h: Handlers, request: Request, rt: ResourceType | None) -> Response:
    """``POST /{Users|Groups}/.search`` and ``POST /.search``."""
    body = await h.body(request)

    def parsed(principal: Principal) -> Any:
        data = body.parsed()
        if not isinstance(data, dict):
            raise BadRequest("A SearchRequest is a JSON object.", "invalidSyntax")
        schemas = data.get("schemas")
        if schemas is not None and SEARCH_REQUEST not in (schemas if isinstance(schemas, list) else []):
            raise BadRequest(f"'schemas' must contain {SEARCH_REQUEST}.", "invalidSyntax")
        return data

    data = await h.call(request, parsed)
    query = Query(data, h.settings)
    if rt is not None:
        return await _search(h, request, rt, query)
    return await _root_search(h, request, query)


async def _search(h: Handlers, request: Request, rt: ResourceType, query: Query) -> Response:
    projection = query.projection(rt)
    list_request = query.list_request()
    tenant_url = h.tenant_url(request)

    def action(principal: Principal) -> tuple[int | None, list[dict[str, Any]], str | None]:
        page = h.resources.search(principal, rt, query.filter, list_request)
        related = h.with_related(principal, rt, page.resources, projection)
        # Rendered here, in the worker thread under the tenant's concurrency slot, not on the
        # event loop that every tenant's requests share.
        return page.total, [_paced(render(rt, stored, tenant_url, projection)) for stored in related], page.next_cursor

    total, docs, next_cursor = await h.call(request, action)
    if query.cursor is None:
        return ScimResponse(list_response(docs, total or 0, query.start_index))
    body: dict[str, Any] = {"schemas": [LIST_SCHEMA]}
    if total is not None:
        body["totalResults"] = total
    body["itemsPerPage"] = len(docs)
    if next_cursor:
        body["nextCursor"] = next_cursor
    body["Resources"] = docs
    return ScimResponse(body)


async def _root_search(h: Handlers, request: Request, query: Query) -> Response:
    if query.sort_by or query.cursor is not None:
        raise BadRequest("A search at the root takes no sortBy or cursor; search /Users or /Groups.",
                         "invalidValue")
    projections = {rt.name: query.projection(rt, lenient=True) for rt in discovery.SERVED}

    tenant_url = h.tenant_url(request)

    def action(principal: Principal) -> tuple[int, list[dict[str, Any]]]:
        found = search_all(h.resources, principal, discovery.SERVED, query.filter, query.start_index, query.count)
        docs: list[dict[str, Any]] = []
        for rt, resources in found.pages:
            related = h.with_related(principal, rt, resources, projections[rt.name])
            docs += [render(rt, stored, tenant_url, projections[rt.name]) for stored in related]
        return found.total, docs

    total, docs = await h.call(request, action)
    return ScimResponse(list_response(docs, total, query.start_index))


def _paced(doc: dict[str, Any]) -> dict[str, Any]:
    """A yield point per rendered resource (up to 1,000 per page): identity_sync/pacing.py."""
    pause()
    return doc


def _text(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"'{name}' must be a string.", "invalidValue")
    return value


def _names(params: Mapping[str, Any], name: str, max_names: int) -> str | None:
    """``attributes`` as a comma-separated string (query) or an array of strings (SearchRequest),
    refused past ``max_names`` names before any is resolved."""
    value = params.get(name)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        if len(value) > max_names:
            raise BadRequest(f"'{name}' names at most {max_names} attributes; {len(value)} were given.",
                             "invalidValue")
        text: str | None = ",".join(value)
    else:
        text = _text(params, name)
    check_name_count(text, max_names, name)
    return text


def _int(params: Mapping[str, Any], name: str, default: int) -> int:
    value = params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise BadRequest(f"'{name}' must be an integer.", "invalidValue")


def _known(rt: ResourceType, names: str | None) -> str | None:
    if not names:
        return names
    kept = []
    for name in names.split(","):
        try:
            Projection(rt, name, None)
        except BadRequest:
            continue
        kept.append(name)
    return ",".join(kept) or None
