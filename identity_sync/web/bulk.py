"""``POST /Bulk`` (RFC 7644 §3.7): many operations in one request, each applied as if sent alone.
The operations are executed by ``service/bulk.py`` (transactions, ``bulkId`` references,
``failOnErrors``); this module checks the BulkRequest and renders the BulkResponse.

* Limits, advertised in ``ServiceProviderConfig``: at most :data:`MAX_OPERATIONS` operations
  and ``max_body_bytes`` of payload (``413`` otherwise, before anything is applied).

Operations are answered in request order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from identity_sync.auth.tokens import Principal
from identity_sync.errors import BadRequest, PayloadTooLarge
from identity_sync.service.bulk import BulkRun, Outcome
from identity_sync.service.resources import etag
from identity_sync.web import discovery
from identity_sync.web.render import location
from identity_sync.web.responses import ScimResponse

if TYPE_CHECKING:
    from identity_sync.web.app import Handlers

BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
BULK_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
MAX_OPERATIONS = discovery.MAX_BULK_OPERATIONS


async def bulk(h: Handlers, request: Request) -> Response:
    body = await h.body(request)
    tenant_url = h.tenant_url(request)

    def action(principal: Principal) -> dict[str, Any]:
        data = body.parsed()
        operations, fail_on_errors = _validate(data)
        outcomes = BulkRun(h.resources, principal, discovery.SERVED).execute(operations, fail_on_errors)
        return {"schemas": [BULK_RESPONSE], "Operations": [_rendered(o, tenant_url) for o in outcomes]}

    return ScimResponse(await h.call(request, action))


def _validate(data: Any) -> tuple[list[dict[str, Any]], int | None]:
    if not isinstance(data, dict) or BULK_REQUEST not in (data.get("schemas") or []):
        raise BadRequest(f"A BulkRequest is a JSON object whose 'schemas' contains {BULK_REQUEST}.",
                         "invalidSyntax")
    operations = data.get("Operations")
    if not isinstance(operations, list) or not all(isinstance(op, dict) for op in operations):
        raise BadRequest("'Operations' must be an array of objects.", "invalidSyntax")
    if len(operations) > MAX_OPERATIONS:
        raise PayloadTooLarge(f"A bulk request carries at most {MAX_OPERATIONS} operations.")
    fail_on_errors = data.get("failOnErrors")
    if fail_on_errors is not None and (isinstance(fail_on_errors, bool) or not isinstance(fail_on_errors, int)
                                       or fail_on_errors < 1):
        raise BadRequest("'failOnErrors' must be a positive integer.", "invalidValue")
    return operations, fail_on_errors


def _rendered(outcome: Outcome, tenant_url: str) -> dict[str, Any]:
    """One operation's entry of the BulkResponse."""
    op = outcome.op
    if outcome.error is not None:
        failed: dict[str, Any] = {"method": op.get("method") if isinstance(op.get("method"), str) else None}
        if isinstance(op.get("bulkId"), str):
            failed["bulkId"] = op["bulkId"]
        failed.update(status=str(outcome.error.status), response=outcome.error.to_body())
        return failed
    assert outcome.rt is not None and outcome.resource_id is not None
    if outcome.stored is None:  # DELETE
        return {"method": outcome.method, "location": location(tenant_url, outcome.rt, outcome.resource_id),
                "status": str(outcome.status)}
    result: dict[str, Any] = {"method": outcome.method}
    if isinstance(op.get("bulkId"), str):
        result["bulkId"] = op["bulkId"]
    result.update(location=location(tenant_url, outcome.rt, outcome.stored.id), version=etag(outcome.stored.version),
                  status=str(outcome.status))
    return result
