"""``POST /Bulk`` (RFC 7644 §3.7): many operations in one request, each applied as if sent alone.

* Each operation is its own transaction (RFC 7644 §3.7 does not make a bulk request atomic): a
  failed operation leaves the others applied and reports its own SCIM error.
* ``bulkId``: a ``POST`` names the resource it creates; any later or earlier operation may refer
  to it as ``"bulkId:<id>"`` — in its ``path`` (``/Groups/bulkId:g1``) or as any string value of
  its ``data`` (a group member, a manager). An operation whose reference is not created yet is
  deferred until it is; one whose reference never resolves (unknown, failed or circular) fails
  with ``409 invalidValue`` (RFC 7644 §3.7.3 answers unresolvable references with 409).
* ``failOnErrors``: after that many failed operations the rest are not attempted (and not listed).
* Limits, advertised in ``ServiceProviderConfig``: at most :data:`MAX_OPERATIONS` operations
  and ``max_body_bytes`` of payload (``413`` otherwise, before anything is applied).

Operations are answered in request order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from identity_sync.auth.tokens import Principal
from identity_sync.errors import BadRequest, PayloadTooLarge, ScimError
from identity_sync.scim.registry import ResourceType
from identity_sync.service.resources import etag
from identity_sync.storage.resources import StoredResource
from identity_sync.web import discovery
from identity_sync.web.render import location
from identity_sync.web.responses import ScimResponse

if TYPE_CHECKING:
    from identity_sync.web.app import Handlers

BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
BULK_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
MAX_OPERATIONS = discovery.MAX_BULK_OPERATIONS
_PREFIX = "bulkId:"


class _Unresolved(Exception):
    """The operation names a bulkId that has not been created (yet)."""


async def bulk(h: Handlers, request: Request) -> Response:
    body = await h.body(request)
    tenant_url = h.tenant_url(request)

    def action(principal: Principal) -> dict[str, Any]:
        data = body.parsed()
        operations, fail_on_errors = _validate(data)
        return _Run(h, principal, tenant_url).execute(operations, fail_on_errors)

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


class _Run:
    def __init__(self, h: Handlers, principal: Principal, tenant_url: str) -> None:
        self.h, self.principal, self.tenant_url = h, principal, tenant_url
        self.created: dict[str, str] = {}  # bulkId -> id
        self.failed_ids: set[str] = set()

    def execute(self, operations: list[dict[str, Any]], fail_on_errors: int | None) -> dict[str, Any]:
        results: dict[int, dict[str, Any]] = {}
        pending = list(range(len(operations)))
        errors = 0
        while pending and (fail_on_errors is None or errors < fail_on_errors):
            deferred = []
            for index in pending:
                if fail_on_errors is not None and errors >= fail_on_errors:
                    break
                try:
                    results[index] = self.one(operations[index])
                except _Unresolved:
                    deferred.append(index)
                    continue
                if int(results[index]["status"]) >= 400:
                    errors += 1
            if len(deferred) == len(pending):  # no progress: the references can never resolve
                for index in deferred:
                    if fail_on_errors is not None and errors >= fail_on_errors:
                        break
                    error = ScimError("A bulkId this operation refers to was not created (unknown, failed "
                                      "or circular).", scim_type="invalidValue", status=409)
                    results[index] = self.failure(operations[index], error)
                    errors += 1
                break
            pending = deferred
        return {"schemas": [BULK_RESPONSE], "Operations": [results[i] for i in sorted(results)]}

    def one(self, op: dict[str, Any]) -> dict[str, Any]:
        try:
            method = op.get("method")
            if not isinstance(method, str) or method.upper() not in ("POST", "PUT", "PATCH", "DELETE"):
                raise BadRequest("'method' must be POST, PUT, PATCH or DELETE.", "invalidSyntax")
            method = method.upper()
            rt, resource_id = self.target(op.get("path"), method)
            data = self.resolve(op.get("data"))
            version = op.get("version") if isinstance(op.get("version"), str) else None
            bulk_id = op.get("bulkId")
            if method == "POST":
                if not isinstance(bulk_id, str) or not bulk_id:
                    raise BadRequest("A POST operation needs a 'bulkId'.", "invalidSyntax")
                stored = self.h.resources.create(self.principal, rt, data)
                self.created[bulk_id] = stored.id
                return self.success(op, "POST", rt, stored, 201)
            assert resource_id is not None
            if method == "DELETE":
                self.h.resources.delete(self.principal, rt, resource_id, version)
                return {"method": "DELETE", "location": location(self.tenant_url, rt, resource_id), "status": "204"}
            if method == "PUT":
                stored = self.h.resources.replace(self.principal, rt, resource_id, data, version)
            else:
                stored = self.h.resources.patch(self.principal, rt, resource_id, data, version)
            return self.success(op, method, rt, stored, 200)
        except ScimError as error:
            return self.failure(op, error)

    def target(self, path: Any, method: str) -> tuple[ResourceType, str | None]:
        if not isinstance(path, str):
            raise BadRequest("'path' must be a string such as /Users or /Users/{id}.", "invalidPath")
        parts = path.strip("/").split("/")
        rt = next((rt for rt in discovery.SERVED if rt.endpoint.lower() == parts[0].lower()), None)
        if rt is None or len(parts) > 2 or (method == "POST") != (len(parts) == 1):
            raise BadRequest(f"'{path[:80]}' is not a valid path for {method}.", "invalidPath")
        return rt, self.resolve(parts[1]) if len(parts) == 2 else None

    def resolve(self, value: Any) -> Any:
        """``value`` with every ``"bulkId:x"`` string replaced by the id created for ``x``."""
        if isinstance(value, str) and value.startswith(_PREFIX):
            found = self.created.get(value[len(_PREFIX):])
            if found is None:
                raise _Unresolved(value)
            return found
        if isinstance(value, dict):
            return {key: self.resolve(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        return value

    def success(self, op: dict[str, Any], method: str, rt: ResourceType, stored: StoredResource,
                status: int) -> dict[str, Any]:
        result: dict[str, Any] = {"method": method}
        if isinstance(op.get("bulkId"), str):
            result["bulkId"] = op["bulkId"]
        result.update(location=location(self.tenant_url, rt, stored.id), version=etag(stored.version),
                      status=str(status))
        return result

    def failure(self, op: dict[str, Any], error: ScimError) -> dict[str, Any]:
        result: dict[str, Any] = {"method": op.get("method") if isinstance(op.get("method"), str) else None}
        if isinstance(op.get("bulkId"), str):
            result["bulkId"] = op["bulkId"]
        result.update(status=str(error.status), response=error.to_body())
        return result
