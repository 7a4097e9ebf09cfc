"""``/ServiceProviderConfig``, ``/ResourceTypes`` and ``/Schemas`` (RFC 7643 §5–§7), generated from
the same definitions and settings that drive the service, so they cannot drift from what it does.
``tests/web/test_search.py`` and ``test_bulk.py`` check each advertised capability works."""

from __future__ import annotations

from typing import Any

from identity_sync.config import Settings
from identity_sync.errors import NotFound
from identity_sync.scim.registry import GROUP, USER, ResourceType
from identity_sync.web.render import list_response

#: The most operations one ``/Bulk`` request may carry (``web/bulk.py`` enforces it).
MAX_BULK_OPERATIONS = 1_000

#: The resource types this service serves.
SERVED: tuple[ResourceType, ...] = (USER, GROUP)
DOCS_URL = "https://github.com/identity-sync/identity-sync#readme"


def service_provider_config(settings: Settings, tenant_url: str) -> dict[str, Any]:
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": DOCS_URL,
        "patch": {"supported": True},
        "bulk": {"supported": True, "maxOperations": MAX_BULK_OPERATIONS, "maxPayloadSize": settings.max_body_bytes},
        "filter": {"supported": True, "maxResults": settings.max_page_size},
        "changePassword": {"supported": False},
        "sort": {"supported": True},
        "etag": {"supported": True},
        # RFC 9865 §4: both paging methods; cursors are stateless, so they never time out.
        "pagination": {"cursor": True, "index": True, "defaultPaginationMethod": "index",
                       "defaultPageSize": settings.default_page_size, "maxPageSize": settings.max_page_size},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "Authentication with a per-tenant bearer token (Authorization: Bearer <token>).",
            "specUri": "https://www.rfc-editor.org/rfc/rfc6750",
            "documentationUri": DOCS_URL,
            "primary": True,
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": f"{tenant_url}/ServiceProviderConfig"},
    }


def resource_types(tenant_url: str) -> dict[str, Any]:
    docs = [rt.to_resource_type(f"{tenant_url}/ResourceTypes/{rt.name}") for rt in SERVED]
    return list_response(docs, len(docs), 1)


def resource_type(tenant_url: str, name: str) -> dict[str, Any]:
    for rt in SERVED:
        if rt.name.lower() == name.lower():
            return rt.to_resource_type(f"{tenant_url}/ResourceTypes/{rt.name}")
    raise NotFound(f"No resource type '{name[:64]}'.")


def _schemas() -> list[Any]:
    seen: dict[str, Any] = {}
    for rt in SERVED:
        for schema in rt.schemas:
            seen.setdefault(schema.id, schema)
    return list(seen.values())


def schemas(tenant_url: str) -> dict[str, Any]:
    docs = [schema.to_schema(f"{tenant_url}/Schemas/{schema.id}") for schema in _schemas()]
    return list_response(docs, len(docs), 1)


def schema(tenant_url: str, urn: str) -> dict[str, Any]:
    for item in _schemas():
        if item.id.lower() == urn.lower():
            return item.to_schema(f"{tenant_url}/Schemas/{item.id}")
    raise NotFound(f"No schema '{urn[:100]}'.")
