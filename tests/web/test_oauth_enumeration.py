"""Cross-tenant enumeration: every route × method of the app (read from its routing table, so
routes added later are covered too) with tenant B's ids and tenant A's credentials — a static
token and an OAuth access token. Only 401/403/404 come back, and no row of B changes."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from starlette.routing import Route

from identity_sync.config import Settings
from identity_sync.service.clients import ClientService
from identity_sync.service.tenants import TenantService
from identity_sync.storage.db import Database
from identity_sync.storage.tenants import get_tenant
from tests.conftest import ScimClient
from tests.web.test_oauth_credentials import token_for

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
#: Routes that are not a tenant's data: they answer anyone the same (``/admin``: the web console,
#: which sends anyone without an operator's session to its login form; ``/metrics`` unless a metrics
#: token is set: tests/observability).
PUBLIC = {"/healthz", "/readyz", "/metrics", "/.well-known/jwks.json", "/scim/v2/{tenant}/oauth/jwks",
          "/scim/v2/{tenant}/oauth/token", "/admin"}


def _snapshot(db: Database, tenant_id: str) -> list[Any]:
    with db.read() as conn:
        rows = []
        for query in ("SELECT id, doc, version, deleted_at, last_modified FROM resources WHERE tenant_id = :t "
                      "ORDER BY id", "SELECT group_id, member_id FROM memberships WHERE tenant_id = :t "
                      "ORDER BY group_id, member_id", "SELECT resource_id, path, element, key FROM attr_values "
                      "WHERE tenant_id = :t ORDER BY resource_id, path, element"):
            rows += [tuple(map(str, r)) for r in conn.execute(sa.text(query), {"t": tenant_id}).all()]
        return rows


def _body(path: str, b_user: str, b_group: str) -> Any:
    members = [{"value": b_user}, {"value": b_group}]
    if "/Groups" in path:
        return {"schemas": [GROUP_SCHEMA, PATCH_SCHEMA], "displayName": "stolen", "members": members,
                "Operations": [{"op": "add", "path": "members", "value": members},
                               {"op": "replace", "path": "displayName", "value": "stolen"}]}
    return {"schemas": [USER_SCHEMA, PATCH_SCHEMA], "userName": "mallory@b.example", "id": b_user,
            "manager": {"value": b_user},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"manager": {"value": b_user}},
            "Operations": [{"op": "replace", "path": "displayName", "value": "stolen"},
                           {"op": "add", "path": "members", "value": members}],
            "Resources": [], "filter": f'id eq "{b_user}"',
            "Operations_bulk": [{"method": "DELETE", "path": f"/Users/{b_user}"}]}


@pytest.mark.parametrize("credential", ["static token", "OAuth access token"])
def test_tenant_a_cannot_reach_tenant_b(scim: ScimClient, other_scim: ScimClient, tenants: TenantService,
                                        settings: Settings, credential: str) -> None:
    a, b = scim, other_scim
    if credential == "OAuth access token":
        a = ScimClient(scim.http, "acme", token_for(scim, ClientService(tenants.db, settings).create_client("acme")))
    a.create_user("alice@a.example")
    b_user = b.create_user("bob@b.example", displayName="Bob")
    b_group = b.post("/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "B team",
                                 "members": [{"value": b_user["id"]}]}).json()
    with tenants.db.read() as conn:
        b_id = get_tenant(conn, "globex")["id"]
    before = _snapshot(tenants.db, b_id)
    routes = [r for r in a.http.app.routes if isinstance(r, Route) and r.path not in PUBLIC]
    assert len(routes) >= 9
    seen = []
    for route in routes:
        for method in sorted((route.methods or set()) - {"HEAD"}):
            ids = {"id": b_user["id"] if "Users" in route.path else b_group["id"], "name": "User",
                   "urn": USER_SCHEMA}
            path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m, ids=ids: ids.get(m.group(1), "x"), route.path)
            body = _body(route.path, b_user["id"], b_group["id"]) if method in ("POST", "PUT", "PATCH") else None
            headers = {"Authorization": f"Bearer {a.token}"}
            if body is not None:
                headers["Content-Type"] = "application/scim+json"
            for tenant in ("globex", "acme"):  # B's URL with A's credential; A's URL with B's ids
                url = re.sub(r"^/scim/v2/[^/]+", f"/scim/v2/{tenant}", path)
                response = a.http.request(method, url, headers=headers,
                                          content=orjson.dumps(body) if body is not None else None)
                seen.append((method, url, response.status_code))
                for secret in ("bob@b.example", "Bob", "B team"):
                    assert secret not in response.text, (method, url, response.text)
                if tenant == "globex":
                    assert response.status_code in (401, 403, 404), (method, url, response.text)
                elif "{id}" in route.path:
                    assert response.status_code in (400, 401, 403, 404), (method, url, response.text)
                else:
                    # A collection on A's own URL: allowed, but B's ids must not be reachable through it.
                    assert response.status_code < 500, (method, url, response.text)
    assert _snapshot(tenants.db, b_id) == before
    assert any(s == 401 for _, u, s in seen if "/globex/" in u)
    assert b.get(f"/Users/{b_user['id']}").json()["meta"]["version"] == b_user["meta"]["version"]
