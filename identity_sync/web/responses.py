"""SCIM responses: ``application/scim+json`` bodies serialized with orjson, and errors in the
RFC 7644 §3.12 shape — never HTML, never a traceback."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from identity_sync.errors import ScimError

SCIM_MEDIA_TYPE = "application/scim+json"


class ScimResponse(Response):
    media_type = SCIM_MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        return b"" if content is None else orjson.dumps(content)


def error_response(error: ScimError) -> ScimResponse:
    return ScimResponse(error.to_body(), status_code=error.status, headers=error.headers)
