"""The engine's SCIM client: the only way the engine reaches a target.

It sends the requests Entra's provisioning service sends (entra-scim-requests.md §1.4, §1.5) in
one of three dialects (:mod:`identity_sync.engine.client.dialects`), over a bounded, retrying
transport (:mod:`identity_sync.engine.client.transport`).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote

from identity_sync.engine.client import connection, documents, errors
from identity_sync.engine.client.auth import Auth
from identity_sync.engine.client.dialects import get_dialect, patch_body, whole_attribute_operations
from identity_sync.engine.client.errors import TargetError
from identity_sync.engine.client.transport import Sleep, Transport
from identity_sync.engine.model import Change, Value

__all__ = ["ScimClient"]


class ScimClient:
    """SCIM requests to one Tenant URL; use it as ``async with ScimClient(...) as client``.

    ``base_url`` is the Tenant URL as an admin types it (a trailing slash and a query string such
    as ``?aadOptscim062020`` are fine); ``dialect`` is one of ``DIALECTS``; at most
    ``max_in_flight`` requests are on the wire at once; each waits ``timeout`` seconds and is
    retried ``max_retries`` times when that can help; member changes travel
    ``members_per_request`` per PATCH. ``verify`` is an ``ssl.SSLContext`` for a private CA (the
    system's trust store otherwise); ``sleep`` and ``clock`` exist for tests of the waits.
    """

    def __init__(self, base_url: str, auth: Auth, dialect: str = "entra", max_in_flight: int = 8,
                 timeout: float = 30.0, max_retries: int = 5, members_per_request: int = 100, *,
                 verify: ssl.SSLContext | bool = True, sleep: Sleep = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if members_per_request < 1:
            raise ValueError("members_per_request: must be at least 1")
        self.dialect = get_dialect(dialect)
        self.members_per_request = members_per_request
        self._transport = Transport(base_url, auth, max_in_flight=max_in_flight, timeout=timeout,
                                    max_retries=max_retries, verify=verify, sleep=sleep, clock=clock)

    async def __aenter__(self) -> ScimClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (``async with`` does it)."""
        await self._transport.aclose()

    @property
    def base_url(self) -> str:
        """The Tenant URL requests are made under (without its flags)."""
        return self._transport.base_url

    @property
    def requests_sent(self) -> Counter[str]:
        """SCIM requests put on the wire, by method (retries included, token requests not)."""
        return self._transport.requests_sent

    async def find(self, resource_type: str, attribute: str, value: Value) -> list[dict[str, Any]]:
        """The resources whose ``attribute`` equals ``value``: ``GET /Users?filter=attribute eq "value"``
        (entra-scim-requests.md §1.4 a); groups are read without members (§1.5)."""
        endpoint = _endpoint(resource_type)
        # Any mapping path may be a matching attribute, `emails[type eq "work"].value` included (§1.4 a).
        documents.locate(attribute)
        if value is None or not isinstance(value, (str, bool, int)):
            raise ValueError(f"filter value for {attribute}: expected a string, a boolean or an integer")
        # json.dumps escapes quotes and backslashes the way a SCIM filter string literal needs.
        params = {"filter": f"{attribute} eq {json.dumps(value, ensure_ascii=False)}"}
        if resource_type == "Group":
            params = {"excludedAttributes": "members", **params}
        response = await self._transport.request("GET", endpoint, params=params)
        body = self._transport.json_object("GET", endpoint, response)
        resources = body.get("Resources", [])
        total = body.get("totalResults")
        hidden = isinstance(total, int) and total > 0 and not resources  # matched, but not shown: never create
        if hidden or not isinstance(resources, list) or not all(isinstance(r, dict) for r in resources):
            raise TargetError(f"GET /{endpoint}: the answer to a filter is not a ListResponse "
                              f"({errors.SERVICE_INCOMPATIBLE})", status=response.status_code,
                              error_code=errors.SERVICE_INCOMPATIBLE, job_level=True)
        return resources

    async def scan(self, resource_type: str, attributes: Sequence[str] | None, *, page_size: int = 1_000,
                   params: Mapping[str, str] | None = None) -> AsyncIterator[list[dict[str, Any]]]:
        """Every resource of a type with only ``attributes`` (and ``id``; ``None``: whole), page by
        page (index paging, RFC 7644 §3.4.2.4); ``params`` adds query parameters (a ``filter``,
        ``excludedAttributes``). Raises :class:`IncompleteListing` when the target cannot show that
        it gave *all* of them — no ``totalResults``, a total that moved, a page short of the total,
        a page that repeats what was listed (a service that ignores ``startIndex`` would be asked the
        same page forever) — so that a caller never takes an incomplete listing for "not there".
        Pages are yielded as they come: 100,000 resources are never held at once."""
        endpoint = _endpoint(resource_type)
        seen: set[str] = set()
        start, total = 1, None
        base = dict(params or {})
        if attributes is not None:
            base["attributes"] = ",".join(attributes)
        while True:
            query = {**base, "startIndex": str(start), "count": str(page_size)}
            response = await self._transport.request("GET", endpoint, params=query)
            body = self._transport.json_object("GET", endpoint, response)
            page, page_total = body.get("Resources", []), body.get("totalResults")
            if not isinstance(page_total, int) or not isinstance(page, list) or total not in (None, page_total):
                raise IncompleteListing(f"GET /{endpoint}: no stable totalResults")
            total = page_total
            if not all(isinstance(r, dict) and isinstance(r.get("id"), str) and r["id"] for r in page):
                raise IncompleteListing(f"GET /{endpoint}: a listed resource without an id")
            fresh = [r for r in page if r["id"] not in seen]
            seen.update(r["id"] for r in fresh)
            yield fresh
            if len(seen) >= total:
                if len(seen) > total:
                    raise IncompleteListing(f"GET /{endpoint}: more resources than totalResults")
                return
            if not page:
                raise IncompleteListing(f"GET /{endpoint}: the listing stopped before totalResults")
            if not fresh:
                raise IncompleteListing(f"GET /{endpoint}: startIndex {start} repeated resources already listed")
            start += len(page)

    async def get(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        """The resource with this target id, ``None`` when the target answers 404."""
        path = _item(resource_type, resource_id)
        params = {"excludedAttributes": "members"} if resource_type == "Group" else None
        response = await self._transport.request("GET", path, params=params, allow=(404,), one_object=True)
        if response.status_code == 404:
            return None
        return self._transport.json_object("GET", path, response)

    async def create(self, resource_type: str, values: Mapping[str, Value]) -> dict[str, Any]:
        """POST a new resource built from mapping paths; returns what the target created (with ``id``)."""
        endpoint = _endpoint(resource_type)
        response = await self._transport.request("POST", endpoint, body=documents.build(resource_type, values))
        created = self._transport.json_object("POST", endpoint, response)
        if not isinstance(created.get("id"), str) or not created["id"]:
            raise TargetError(f"POST /{endpoint}: {response.status_code} without the new resource's id "
                              f"({errors.SERVICE_INCOMPATIBLE})", status=response.status_code,
                              error_code=errors.SERVICE_INCOMPATIBLE, job_level=True)
        return created

    async def update(self, resource_type: str, resource_id: str, changes: Sequence[Change]) -> None:
        """PATCH ``changes`` in the dialect's shape; no changes, no request."""
        if not changes:
            return
        path = _item(resource_type, resource_id)
        operations = self.dialect.operations(changes)
        try:
            await self._transport.request("PATCH", path, body=patch_body(operations), one_object=True)
        except TargetError as exc:
            if not self._element_missing(exc, changes):
                raise
            # rfc: a filtered replace whose element is missing is noTarget (RFC 7644 §3.5.2.3);
            # read the resource and replace the whole multi-valued attribute instead.
            current = await self.get(resource_type, resource_id)
            if current is None:
                raise TargetError(f"PATCH /{path}: the resource is gone ({errors.INVALID_ANCHOR})", status=404,
                                  error_code=errors.INVALID_ANCHOR, job_level=False) from exc
            operations = whole_attribute_operations(self.dialect, changes, current)
            await self._transport.request("PATCH", path, body=patch_body(operations), one_object=True)

    def _element_missing(self, exc: TargetError, changes: Sequence[Change]) -> bool:
        return (self.dialect.name == "rfc" and exc.status == 400 and exc.error_code == errors.SCHEMA_ATTRIBUTE_NOT_FOUND
                and (exc.scim_type or "").lower() == "notarget"
                and any(documents.locate(c.path).filtered for c in changes))

    async def delete(self, resource_type: str, resource_id: str) -> None:
        """DELETE the resource; a 404 is success (the export is idempotent: it is already gone)."""
        await self._transport.request("DELETE", _item(resource_type, resource_id), allow=(404,), one_object=True)

    async def add_members(self, group_id: str, member_ids: Sequence[str]) -> None:
        """Add members to a group, ``members_per_request`` per PATCH (entra-scim-requests.md §1.5)."""
        path = _item("Group", group_id)
        for batch in self._batches(member_ids):
            await self._transport.request("PATCH", path, body=patch_body(self.dialect.add_members(batch)),
                                          one_object=True)

    async def remove_members(self, group_id: str, member_ids: Sequence[str]) -> None:
        """Remove exactly these members, ``members_per_request`` per PATCH, in the dialect's shape."""
        path = _item("Group", group_id)
        for batch in self._batches(member_ids):
            await self._transport.request("PATCH", path, body=patch_body(self.dialect.remove_members(batch)),
                                          one_object=True)

    def _batches(self, member_ids: Sequence[str]) -> Iterator[list[str]]:
        # One batch after the other, never concurrently: targets lock a group per PATCH, and some
        # (scim2-server) rewrite the whole group each time.
        unique = list(dict.fromkeys(member_ids))
        for member in unique:
            if not isinstance(member, str) or not member:
                raise ValueError(f"member id {member!r}: expected a non-empty string")
        for start in range(0, len(unique), self.members_per_request):
            yield unique[start:start + self.members_per_request]

    async def test_connection(self, user_attribute: str = "userName", group_attribute: str = "displayName",
                              *, retries: int | None = 0) -> None:
        """Entra's Test Connection: ``None`` when the target works, else
        :class:`~identity_sync.engine.client.errors.ConnectionProblem`."""
        await connection.probe(self._transport, user_attribute=user_attribute, group_attribute=group_attribute,
                               retries=retries)


class IncompleteListing(Exception):
    """A listing of the target that cannot be shown to be complete."""


def _endpoint(resource_type: str) -> str:
    try:
        return documents.ENDPOINTS[resource_type]
    except KeyError:
        raise ValueError(f"resource type {resource_type!r}: expected one of "
                         f"{', '.join(documents.ENDPOINTS)}") from None


def _item(resource_type: str, resource_id: str) -> str:
    if not isinstance(resource_id, str) or not resource_id:
        raise ValueError(f"{resource_type} id {resource_id!r}: expected a non-empty string")
    return f"{_endpoint(resource_type)}/{quote(resource_id, safe='')}"
