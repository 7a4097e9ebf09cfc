"""Conformance suites: the requests Microsoft Entra ID and Okta really send (as catalogued in
docs/entra-scim-requests.md), replayed through the real HTTP app, plus a full attribute
round-trip for the Global Relay Identity Sync mapping table.

Shared vocabulary for those suites lives here."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote_plus

from tests.conftest import ScimClient

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GLOBALRELAY = "urn:ietf:params:scim:schemas:extension:GlobalRelay:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
SCIM_JSON = "application/scim+json"


def patch_body(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


def fetch(scim: ScimClient, user_id: str) -> dict[str, Any]:
    """GET /Users/{id}, which must succeed."""
    response = scim.get(f"/Users/{user_id}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(SCIM_JSON)
    return response.json()


def query(scim: ScimClient, raw_query: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """GET /Users?<raw_query> with the query string sent byte for byte as given (so a test
    controls the encoding: Entra's ``+``/``%22``, Okta's ``%20``); must answer 200 ListResponse."""
    response = scim.get(f"/Users?{raw_query}", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(SCIM_JSON)
    body = response.json()
    assert body["schemas"] == [LIST_RESPONSE]
    return body


def ids(list_response: dict[str, Any]) -> list[str]:
    return [resource["id"] for resource in list_response["Resources"]]


def assert_scim_error(response: Any, status: int, scim_type: str | None = None) -> dict[str, Any]:
    """A SCIM error body (RFC 7644 §3.12) with ``status`` as a string, never HTML."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(SCIM_JSON)
    body = response.json()
    assert body["schemas"] == [ERROR]
    assert body["status"] == str(status)
    assert isinstance(body.get("detail"), str) and body["detail"]
    if scim_type is not None:
        assert body.get("scimType") == scim_type, body
    return body


def entra_filter(expression: str) -> str:
    """``filter=…`` form-encoded the way Entra sends it: spaces as ``+``, quotes as ``%22``."""
    return "filter=" + quote_plus(expression, safe="")
