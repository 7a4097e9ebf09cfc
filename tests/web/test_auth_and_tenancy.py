"""Authentication and tenant isolation over HTTP.

Every route answers every kind of bad credential with the same 401 (SCIM error body,
``WWW-Authenticate``, no data), and a valid token only ever reaches its own tenant's data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.testclient import TestClient

from identity_sync.errors import ERROR_SCHEMA
from identity_sync.service.tenants import TenantService
from identity_sync.storage.tables import credentials
from tests.conftest import SCIM_JSON, ScimClient

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
SEARCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
BULK_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
ERROR_KEYS = {"schemas", "status", "scimType", "detail"}


@dataclass
class World:
    """Tenant ``acme`` (the target), its user, and one credential for each way of being wrong."""

    acme: ScimClient
    globex: ScimClient
    user: dict[str, Any]
    headers: dict[str, dict[str, str]]
    group: dict[str, Any]


@pytest.fixture
def world(scim: ScimClient, other_scim: ScimClient, tenants: TenantService) -> World:
    user = scim.create_user("alice@example.com", displayName="Alice Secret")
    revoked = tenants.create_token("acme")
    tenants.revoke_token("acme", revoked.credential_id)
    expired = tenants.create_token("acme", expires_in_days=1)
    with tenants.db.write() as conn:  # a day later, as it were
        conn.execute(credentials.update().where(credentials.c.id == expired.credential_id)
                     .values(expires_at="2000-01-01T00:00:00.000000Z"))
    disabled = tenants.create_tenant("initech")
    tenants.set_status("initech", "disabled")
    # A token of a tenant that is disabled, presented at that tenant's own URL, is covered too:
    # see test_a_disabled_tenants_token_is_refused_on_its_own_url.
    headers = {
        "missing header": {},
        "empty header": {"Authorization": ""},
        "empty bearer": {"Authorization": "Bearer "},
        "bearer alone": {"Authorization": "Bearer"},
        "wrong scheme": {"Authorization": f"Basic {scim.token}"},
        "unknown token": {"Authorization": "Bearer idsync_" + "A" * 43},
        "token with a typo": {"Authorization": f"Bearer {scim.token[:-1]}"},
        "revoked token": {"Authorization": f"Bearer {revoked.token}"},
        "expired token": {"Authorization": f"Bearer {expired.token}"},
        "token of a disabled tenant": {"Authorization": f"Bearer {disabled.token}"},
        "another tenant's token": {"Authorization": f"Bearer {other_scim.token}"},
        "oversized bearer value": {"Authorization": "Bearer " + scim.token * 100},
    }
    group = scim.post("/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "Secret Team",
                                  "members": [{"value": user["id"]}]}).json()
    return World(scim, other_scim, user, headers, group)


def _user_body(user_name: str) -> dict[str, Any]:
    return {"schemas": [USER_SCHEMA], "userName": user_name, "displayName": "Changed"}


_PATCH_BODY = {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "path": "displayName", "value": "X"}]}

Route = Callable[[World], tuple[str, str, Any]]
ROUTES: dict[str, Route] = {
    "GET /Users": lambda w: ("GET", "/Users", None),
    "GET /Users?filter": lambda w: ("GET", '/Users?filter=userName eq "alice@example.com"', None),
    "POST /Users": lambda w: ("POST", "/Users", _user_body("mallory@example.com")),
    "GET /Users/{id}": lambda w: ("GET", f"/Users/{w.user['id']}", None),
    "PUT /Users/{id}": lambda w: ("PUT", f"/Users/{w.user['id']}", _user_body("alice@example.com")),
    "PATCH /Users/{id}": lambda w: ("PATCH", f"/Users/{w.user['id']}", _PATCH_BODY),
    "DELETE /Users/{id}": lambda w: ("DELETE", f"/Users/{w.user['id']}", None),
    "GET /Groups": lambda w: ("GET", "/Groups", None),
    "POST /Groups": lambda w: ("POST", "/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "Mallory's"}),
    "GET /Groups/{id}": lambda w: ("GET", f"/Groups/{w.group['id']}", None),
    "PUT /Groups/{id}": lambda w: ("PUT", f"/Groups/{w.group['id']}", {"schemas": [GROUP_SCHEMA],
                                                                        "displayName": "Renamed"}),
    "PATCH /Groups/{id}": lambda w: ("PATCH", f"/Groups/{w.group['id']}", _PATCH_BODY),
    "DELETE /Groups/{id}": lambda w: ("DELETE", f"/Groups/{w.group['id']}", None),
    "POST /.search": lambda w: ("POST", "/.search", {"schemas": [SEARCH_SCHEMA], "filter": "displayName pr"}),
    "POST /Users/.search": lambda w: ("POST", "/Users/.search", {"schemas": [SEARCH_SCHEMA]}),
    "POST /Bulk": lambda w: ("POST", "/Bulk", {"schemas": [BULK_SCHEMA], "Operations": [
        {"method": "POST", "path": "/Users", "bulkId": "m", "data": _user_body("mallory@example.com")}]}),
    "GET /Me": lambda w: ("GET", "/Me", None),
    "GET /ServiceProviderConfig": lambda w: ("GET", "/ServiceProviderConfig", None),
    "GET /Schemas": lambda w: ("GET", "/Schemas", None),
    "GET /Schemas/{urn}": lambda w: ("GET", f"/Schemas/{USER_SCHEMA}", None),
    "GET /ResourceTypes": lambda w: ("GET", "/ResourceTypes", None),
    "GET /ResourceTypes/{name}": lambda w: ("GET", "/ResourceTypes/User", None),
}
CREDENTIALS = [
    "missing header", "empty header", "empty bearer", "bearer alone", "wrong scheme", "unknown token",
    "token with a typo", "revoked token", "expired token", "token of a disabled tenant", "another tenant's token",
    "oversized bearer value",
]


def _send(client: ScimClient, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    """Send with exactly ``headers`` as credentials (the client's own token is removed)."""
    import orjson

    content = orjson.dumps(body) if body is not None else None
    merged = {"Content-Type": SCIM_JSON} if body is not None else {}
    merged.update(headers)
    return client.http.request(method, client.base + path, content=content, headers=merged)


def assert_unauthorized(response: Any, *secrets: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith(SCIM_JSON)
    assert response.headers["www-authenticate"].lower().startswith("bearer")
    body = response.json()
    assert set(body) <= ERROR_KEYS
    assert body["schemas"] == [ERROR_SCHEMA]
    assert body["status"] == "401"
    for secret in secrets:
        assert secret not in response.text


@pytest.mark.parametrize("route", list(ROUTES))
def test_every_bad_credential_gets_the_same_401_and_changes_nothing(world: World, route: str) -> None:
    method, path, body = ROUTES[route](world)
    before = world.acme.get(f"/Users/{world.user['id']}").json()
    group_before = world.acme.get(f"/Groups/{world.group['id']}").json()
    answers = {}

    for credential in CREDENTIALS:
        response = _send(world.acme, method, path, body, world.headers[credential])

        try:
            assert_unauthorized(response, world.user["id"], "alice", "Alice Secret", "mallory",
                                world.acme.token, world.globex.token)
        except AssertionError as exc:
            raise AssertionError(f"{route} with {credential}: {exc}") from None
        answers[credential] = (response.text, response.headers["www-authenticate"])

    assert world.acme.get(f"/Users/{world.user['id']}").json() == before
    assert world.acme.get(f"/Groups/{world.group['id']}").json() == group_before
    assert [u["userName"] for u in world.acme.find("userName pr")] == ["alice@example.com"]
    assert world.acme.get("/Groups").json()["totalResults"] == 1
    # A caller presenting a token learns nothing about why it failed: revoked, expired, unknown,
    # foreign or disabled all read the same.
    presented = {answers[c] for c in CREDENTIALS if c.endswith("token") or c.startswith("token")}
    assert len(presented) == 1, presented
    assert len(set(answers.values())) <= 2


def test_a_valid_token_is_accepted_on_every_route(world: World) -> None:
    for route, build in ROUTES.items():
        if route.startswith("DELETE"):
            continue
        method, path, body = build(world)
        response = world.acme.request(method, path, json=body)
        # /Me is 404 for every credential (docs/conformance.md); a group PATCH answers 204.
        expected = (404,) if route == "GET /Me" else (200, 201, 204)
        assert response.status_code in expected, (route, response.text)
    assert world.acme.delete(f"/Users/{world.user['id']}").status_code == 204


def test_a_disabled_tenants_token_is_refused_on_its_own_url(http: TestClient, tenants: TenantService) -> None:
    issued = tenants.create_tenant("hooli")
    client = ScimClient(http, "hooli", issued.token)
    assert client.get("/Users").status_code == 200

    tenants.set_status("hooli", "disabled")
    assert_unauthorized(client.get("/Users"), issued.token)

    tenants.set_status("hooli", "active")
    assert client.get("/Users").status_code == 200


def test_a_revoked_token_stops_working_at_once_while_another_live_token_keeps_working(
        scim: ScimClient, tenants: TenantService) -> None:
    second = tenants.create_token("acme")
    second_client = ScimClient(scim.http, "acme", second.token)
    assert scim.get("/Users").status_code == 200
    assert second_client.get("/Users").status_code == 200

    tenants.revoke_token("acme", second.credential_id)

    assert_unauthorized(second_client.get("/Users"), second.token)
    assert scim.get("/Users").status_code == 200


def test_a_token_for_an_unknown_tenant_url_is_401_not_404(scim: ScimClient) -> None:
    response = scim.http.get("/scim/v2/nonexistent/Users", headers={"Authorization": f"Bearer {scim.token}"})
    assert_unauthorized(response, scim.token)


# -- tenant isolation -----------------------------------------------------------------------------


def test_another_tenants_user_ids_are_not_found_and_the_user_is_left_untouched(
        scim: ScimClient, other_scim: ScimClient) -> None:
    theirs = other_scim.create_user("bob@globex.example", displayName="Bob")
    mine = scim.create_user("bob@acme.example")
    before = other_scim.get(f"/Users/{theirs['id']}")
    path = f"/Users/{theirs['id']}"

    attempts = {
        "GET": scim.get(path),
        "PUT": scim.put(path, _user_body("bob@globex.example")),
        "PATCH": scim.patch(path, _PATCH_BODY),
        "PUT with If-Match *": scim.put(path, _user_body("bob@globex.example"), headers={"If-Match": "*"}),
        "DELETE": scim.delete(path),
        "DELETE with If-Match *": scim.delete(path, headers={"If-Match": "*"}),
    }

    for name, response in attempts.items():
        assert response.status_code == 404, (name, response.text)
        body = response.json()
        assert body["schemas"] == [ERROR_SCHEMA] and body["status"] == "404"
        assert "bob@globex.example" not in response.text and "Bob" not in response.text
    after = other_scim.get(f"/Users/{theirs['id']}")
    assert after.status_code == 200
    assert after.json() == before.json()
    assert after.headers["etag"] == before.headers["etag"]
    assert after.json()["meta"]["version"] == theirs["meta"]["version"]
    # Nor does the other tenant's user appear in this tenant's lists or filters.
    assert [u["id"] for u in scim.find("userName pr")] == [mine["id"]]
    assert scim.find('userName eq "bob@globex.example"') == []
    assert [u["id"] for u in other_scim.find("userName pr")] == [theirs["id"]]


def test_one_tenants_token_on_another_tenants_url_is_401(scim: ScimClient, other_scim: ScimClient) -> None:
    theirs = other_scim.create_user("carol@globex.example")
    trespasser = ScimClient(scim.http, other_scim.tenant, scim.token)

    for response in (
        trespasser.get("/Users"),
        trespasser.get(f"/Users/{theirs['id']}"),
        trespasser.post("/Users", _user_body("mallory@example.com")),
        trespasser.patch(f"/Users/{theirs['id']}", _PATCH_BODY),
        trespasser.delete(f"/Users/{theirs['id']}"),
        trespasser.get("/ServiceProviderConfig"),
    ):
        assert_unauthorized(response, theirs["id"], "carol", scim.token)
    assert other_scim.get(f"/Users/{theirs['id']}").json()["meta"]["version"] == theirs["meta"]["version"]
    assert [u["userName"] for u in other_scim.find("userName pr")] == ["carol@globex.example"]


def test_the_same_user_name_may_exist_in_two_tenants(scim: ScimClient, other_scim: ScimClient) -> None:
    mine = scim.create_user("shared@example.com")
    theirs = other_scim.create_user("shared@example.com")
    assert mine["id"] != theirs["id"]
    assert [u["id"] for u in scim.find('userName eq "shared@example.com"')] == [mine["id"]]
    assert [u["id"] for u in other_scim.find('userName eq "shared@example.com"')] == [theirs["id"]]


@pytest.mark.parametrize("body", [b"{not json", b"[" * 5000, b'{"userName": 42}'])
def test_an_unauthenticated_caller_gets_401_whatever_its_body_contains(http, body: bytes) -> None:
    """The body is parsed only after authentication: no 400/415 tells a stranger anything."""

    response = http.post("/scim/v2/acme/Users", content=body,
                         headers={"Content-Type": "text/plain", "Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert response.json()["status"] == "401"
