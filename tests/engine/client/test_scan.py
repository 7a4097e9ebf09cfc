"""Listing the target (``ScimClient.scan``) for an initial cycle's matching index: a listing that
cannot be shown complete is refused, so that "not in the listing" is never taken for "not there"
on a partial read (invariant 1 of docs/engine.md, on the target side)."""

from __future__ import annotations

import pytest

from identity_sync.engine.client import BearerToken, ScimClient
from identity_sync.engine.client.scim_client import IncompleteListing
from tests.engine.client.scripted import json_reply, scripted, sequence

pytestmark = pytest.mark.anyio
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"


def _page(ids: list[str], total: int | None) -> dict[str, object]:
    body: dict[str, object] = {"schemas": [LIST], "Resources": [{"id": i, "userName": f"{i}@x"} for i in ids]}
    if total is not None:
        body["totalResults"] = total
    return body


async def _scan(*pages: dict[str, object]) -> list[str]:
    with scripted(sequence(*(json_reply(p) for p in pages))) as server:
        async with ScimClient(server.url, BearerToken("t")) as client:
            return [r["id"] async for page in client.scan("User", ["userName"], page_size=2) for r in page]


async def test_a_complete_listing_is_read_page_by_page() -> None:
    assert await _scan(_page(["a", "b"], 3), _page(["c"], 3)) == ["a", "b", "c"]
    assert await _scan(_page([], 0)) == []


@pytest.mark.parametrize("pages", [
    [_page(["a", "b"], None)],  # no totalResults
    [_page(["a", "b"], 4), _page(["c"], 5)],  # the total moved while reading
    [_page(["a", "b"], 4), _page([], 4)],  # stopped before the announced total
    [_page(["a", "b"], 1)],  # more than announced
], ids=["no total", "total moved", "stopped short", "more than total"])
async def test_a_listing_that_cannot_be_shown_complete_is_refused(pages: list[dict[str, object]]) -> None:
    with pytest.raises(IncompleteListing):
        await _scan(*pages)


async def test_a_repeated_resource_across_pages_is_counted_once() -> None:
    assert await _scan(_page(["a", "b"], 3), _page(["b", "c"], 3)) == ["a", "b", "c"]
