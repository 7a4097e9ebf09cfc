"""Test Connection, as Entra does it (entra-scim-requests.md §1.2, provisioning-engine.md §4.7).

Entra proves the Tenant URL and the credentials by querying a user and a group that cannot exist:
the configured matching attribute equal to a random GUID. A SCIM target answers ``200`` with an
empty ListResponse; a ``404`` there is one of Microsoft's quarantine reasons, a ``401``/``403`` is
"invalid credentials". Nothing is retried: the admin who clicked the button is waiting.
"""

from __future__ import annotations

import json
import uuid

from identity_sync.engine.client import errors
from identity_sync.engine.client.errors import ConnectionProblem, TargetError
from identity_sync.engine.client.transport import Transport

__all__ = ["probe"]

LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"

_KIND_BY_CODE = {
    errors.TLS_FAILURE: "tls",
    errors.UNREACHABLE: "unreachable",
    errors.TIMEOUT: "unreachable",
    errors.INTERNAL_SERVER_ERROR: "unreachable",
    errors.TOO_MANY_REQUESTS: "unreachable",
    errors.UNAUTHORIZED: "unauthorized",
    errors.INSUFFICIENT_RIGHTS: "forbidden",
}


async def probe(transport: Transport, *, user_attribute: str = "userName",
                          group_attribute: str = "displayName", retries: int | None = 0) -> None:
    """Return when the target answers both probes like a SCIM server; raise
    :class:`ConnectionProblem` naming the first thing that is wrong otherwise. Test Connection
    answers an admin at once (no retries); the check at the start of a cycle may retry a blip
    (``retries=None``: the transport's)."""
    probe = json.dumps(str(uuid.uuid4()))
    queries = (("Users", {"filter": f"{user_attribute} eq {probe}"}),
               ("Groups", {"excludedAttributes": "members", "filter": f"{group_attribute} eq {probe}"}))
    for endpoint, params in queries:
        try:
            response = await transport.request("GET", endpoint, params=params, allow=(404,), retries=retries)
            if response.status_code == 404:
                raise ConnectionProblem("not_found", f"GET /{endpoint} answered 404 instead of an empty ListResponse: "
                                                     "check the Tenant URL")
            body = transport.json_object("GET", endpoint, response)
        except TargetError as exc:
            raise ConnectionProblem(_KIND_BY_CODE.get(exc.error_code, "not_scim"), str(exc)) from None
        schemas = body.get("schemas")
        resources = body.get("Resources", [])
        if not (isinstance(schemas, list) and LIST_RESPONSE in schemas) or not isinstance(resources, list):
            raise ConnectionProblem("not_scim", f"GET /{endpoint} with a filter did not answer a SCIM ListResponse")
        if resources or body.get("totalResults") not in (0, None):
            # A random GUID matched: the target ignores filters, so matching would link wrong objects.
            raise ConnectionProblem("not_scim", f"GET /{endpoint} matched a random value: the target ignores the "
                                                "filter on " + (user_attribute if endpoint == "Users"
                                                                else group_attribute))
