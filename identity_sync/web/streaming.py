"""Streaming a group with all its members.

A group may have hundreds of thousands of members. Its full representation is written to the
client member page by member page (keyset pagination in the database, 1,000 at a time), so the
server never holds the whole list — neither as rows, nor as objects, nor as JSON bytes. Each page
is read in its own short transaction: a membership change made while a large group is being
streamed may or may not be in the response, as with any paged read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import anyio.to_thread
import orjson
from starlette.responses import StreamingResponse

from identity_sync.auth.tokens import Principal
from identity_sync.scim.registry import GROUP
from identity_sync.service.resources import ResourceService, StoredResource, etag
from identity_sync.web.render import Projection, member, render
from identity_sync.web.responses import SCIM_MEDIA_TYPE

PAGE = 1000


def can_stream(projection: Projection) -> bool:
    """Members are streamed whole; a response asking for single member sub-attributes
    (``attributes=members.value``) is built in memory instead."""
    return projection.returns("members") and not projection.selects_sub_attribute_of("members")


def group_response(service: ResourceService, principal: Principal, stored: StoredResource, tenant_url: str,
                   projection: Projection) -> StreamingResponse:
    shell = render(GROUP, replace(stored, related={"members": []}), tenant_url, projection)
    shell.pop("members", None)
    head = orjson.dumps(shell)[:-1] + b',"members":['

    async def body() -> AsyncIterator[bytes]:
        yield head
        after, first = "", True
        while True:
            page = await anyio.to_thread.run_sync(service.member_page, principal, stored.id, after, PAGE)
            if page:
                chunk = b",".join(orjson.dumps(member(tenant_url, member_id, kind)) for member_id, kind in page)
                yield chunk if first else b"," + chunk
                first = False
            if len(page) < PAGE:
                break
            after = page[-1][0]
        yield b"]}"

    return StreamingResponse(body(), media_type=SCIM_MEDIA_TYPE, headers={"ETag": etag(stored.version)})

