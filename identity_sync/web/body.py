"""Reading a request body safely: a size cap enforced while streaming (413 before more than the
limit is read), the media types SCIM clients use, and a nesting-depth cap so that a small hostile
body cannot exhaust the stack later."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from identity_sync.errors import BadRequest, PayloadTooLarge, ScimError

_ACCEPTED = ("application/scim+json", "application/json", "text/json")


async def read_json(request: Request, *, max_bytes: int, max_depth: int) -> Any:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type not in _ACCEPTED and not content_type.endswith("+json"):
        raise ScimError("Send the body as application/scim+json.", status=415)
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
    raw = b"".join(chunks)
    if not raw.strip():
        raise BadRequest("The request body is empty.", "invalidSyntax")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("The request body is not valid JSON.", "invalidSyntax") from None
    if _depth_exceeds(body, max_depth):
        raise BadRequest(f"The JSON body is nested deeper than {max_depth} levels.", "invalidSyntax")
    return body


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False
