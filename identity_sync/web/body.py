"""Reading a request body safely: a size cap enforced while streaming (413 before more than the
limit is read), the media types SCIM clients use, and a nesting-depth cap so that a small hostile
body cannot exhaust the stack later."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from identity_sync.errors import BadRequest, PayloadTooLarge, ScimError

_ACCEPTED = ("application/scim+json", "application/json", "text/json")


async def read_body(request: Request, *, max_bytes: int) -> bytes:
    """The raw body, refused with 413 as soon as it passes ``max_bytes`` (the rest is never read)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"The request body exceeds {max_bytes} bytes.")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"The request body exceeds {max_bytes} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: bytes, content_type: str | None, *, max_depth: int) -> Any:
    """The JSON document of a request body. Called only after authentication, so an
    unauthenticated caller learns nothing but 401 whatever it sends."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type and media_type not in _ACCEPTED and not media_type.endswith("+json"):
        raise ScimError("Send the body as application/scim+json.", status=415)
    if not raw.strip():
        raise BadRequest("The request body is empty.", "invalidSyntax")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("The request body is not valid JSON.", "invalidSyntax") from None
    # A document cannot nest deeper than it has brackets: counting them (in C) spares the walk of
    # almost every body, an Entra user's included.
    if raw.count(b"{") + raw.count(b"[") > max_depth and _depth_exceeds(body, max_depth):
        raise BadRequest(f"The JSON body nests objects and arrays deeper than {max_depth} levels.", "invalidSyntax")
    return body


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether objects/arrays nest deeper than ``limit`` (scalars do not count as a level)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, (dict, list)):
            continue
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False
