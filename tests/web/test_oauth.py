"""The OAuth 2.0 client credentials flow exactly as Entra performs it ("Header", "Body", "Both"),
then SCIM calls with the issued token; RFC 6749 §5.2 errors; secret and key rotation."""

from __future__ import annotations

import base64
import time
from typing import Any

import jwt
import pytest
from starlette.testclient import TestClient

from identity_sync.config import Settings
from identity_sync.service.clients import ClientService, IssuedClient
from identity_sync.service.tenants import TenantService
from identity_sync.storage.db import Database
from identity_sync.web.app import create_app
from tests.conftest import ScimClient

FORM = "application/x-www-form-urlencoded"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@pytest.fixture
def client(scim: ScimClient, settings: Settings, tenants: TenantService) -> IssuedClient:
    return ClientService(tenants.db, settings).create_client("acme")


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def entra_token_request(http: TestClient, tenant: str, issued: IssuedClient, how: str, scope: str | None = None,
                        secret: str | None = None) -> Any:
    """The request Entra's provisioning service sends for each "How credentials are sent" choice."""
    secret = secret or issued.client_secret
    form = {"grant_type": "client_credentials"}
    headers = {"Content-Type": FORM, "Accept": "application/json"}
    if how in ("Header", "Both"):
        headers["Authorization"] = basic(issued.client_id, secret)
    if how in ("Body", "Both"):
        form.update(client_id=issued.client_id, client_secret=secret)
    if scope:
        form["scope"] = scope
    return http.post(f"/scim/v2/{tenant}/oauth/token", data=form, headers=headers)


@pytest.mark.parametrize("how", ["Header", "Body", "Both"])
def test_entra_client_credentials_then_scim_calls(scim: ScimClient, client: IssuedClient, how: str) -> None:
    response = entra_token_request(scim.http, "acme", client, how)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["scope"] == "scim:read scim:write"
    # What Entra then does: Test Connection, create, match, disable, delete — with the token.
    entra = ScimClient(scim.http, "acme", body["access_token"])
    probe = entra.get("/Users", params={"filter": 'userName eq "5c2b7f3e-probe"'})
    assert probe.status_code == 200 and probe.json()["totalResults"] == 0
    user = entra.create_user("ada@contoso.com", active=True)
    assert entra.find('userName eq "ADA@contoso.com"')[0]["id"] == user["id"]
    patched = entra.patch(f"/Users/{user['id']}", {"schemas": [PATCH_SCHEMA], "Operations": [
        {"op": "Replace", "path": "active", "value": "False"}]})
    assert patched.status_code == 200 and patched.json()["active"] is False
    assert entra.get("/ServiceProviderConfig").status_code == 200
    assert entra.delete(f"/Users/{user['id']}").status_code == 204
    # The static token of the tenant keeps working alongside.
    assert scim.get(f"/Users/{user['id']}").status_code == 404


def test_the_access_token_is_a_short_lived_jwt_bound_to_the_tenant_and_verifiable_with_the_jwks(
        scim: ScimClient, client: IssuedClient) -> None:
    token = entra_token_request(scim.http, "acme", client, "Header").json()["access_token"]
    jwks = scim.http.get("/.well-known/jwks.json").json()
    assert jwks == scim.http.get("/scim/v2/acme/oauth/jwks").json()
    assert all("d" not in key and "p" not in key for key in jwks["keys"])  # public keys only
    header = jwt.get_unverified_header(token)
    key = jwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == header["kid"]))
    claims = jwt.decode(token, key, algorithms=["RS256"], options={"verify_aud": False})
    assert claims["iss"] == "identity-sync" and claims["sub"] == client.client_id
    assert claims["aud"].startswith("urn:identity-sync:tenant:")
    assert claims["exp"] - claims["iat"] == 3600
    # Presented at another tenant's URL, it is worth nothing.
    TenantService(scim.http.app.state.db).create_tenant("globex")
    other = scim.http.get("/scim/v2/globex/Users", headers={"Authorization": f"Bearer {token}"})
    assert other.status_code == 401


def test_the_token_lifetime_is_a_setting_within_one_to_six_hours(db: Database, settings: Settings) -> None:
    longer = settings.model_copy(update={"oauth_token_lifetime_seconds": 21_600})
    TenantService(db).create_tenant("acme")
    issued = ClientService(db, longer).create_client("acme")
    with TestClient(create_app(longer, db)) as http:
        assert entra_token_request(http, "acme", issued, "Body").json()["expires_in"] == 21_600
    for bad in (3_599, 21_601, 60):
        with pytest.raises(ValueError):
            Settings(oauth_token_lifetime_seconds=bad)


@pytest.mark.parametrize("scope, granted", [
    ("scim", "scim:read scim:write"), ("scim:read", "scim:read"), ("scim:read scim:write", "scim:read scim:write")])
def test_an_optional_scope_narrows_the_token(scim: ScimClient, client: IssuedClient, scope: str, granted: str) -> None:
    response = entra_token_request(scim.http, "acme", client, "Both", scope=scope)
    assert response.status_code == 200 and response.json()["scope"] == granted


def _oauth_error(response: Any, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) <= {"error", "error_description", "error_uri"} and body["error"] == error
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Basic")


def test_token_endpoint_errors_follow_rfc6749(scim: ScimClient, client: IssuedClient, tenants: TenantService,
                                              settings: Settings) -> None:
    url = "/scim/v2/acme/oauth/token"
    http = scim.http
    ok = {"grant_type": "client_credentials", "client_id": client.client_id, "client_secret": client.client_secret}
    _oauth_error(entra_token_request(http, "acme", client, "Header", secret="idsyncs_wrong"), 401, "invalid_client")
    _oauth_error(entra_token_request(http, "acme", client, "Body", secret="idsyncs_wrong"), 401, "invalid_client")
    _oauth_error(http.post(url, data={"grant_type": "client_credentials"}), 401, "invalid_client")
    _oauth_error(http.post(url, data={**ok, "client_id": "idsc_unknown"}), 401, "invalid_client")
    # "Both" with values that disagree
    _oauth_error(http.post(url, data={**ok, "client_secret": "other"},
                           headers={"Authorization": basic(client.client_id, client.client_secret)}),
                 401, "invalid_client")
    _oauth_error(http.post(url, content=b"grant_type=client_credentials", headers={
        "Content-Type": FORM, "Authorization": "Basic !!notbase64"}), 401, "invalid_client")
    _oauth_error(http.post(url, data={**ok, "grant_type": "password"}), 400, "unsupported_grant_type")
    _oauth_error(http.post(url, data={k: v for k, v in ok.items() if k != "grant_type"}), 400, "invalid_request")
    _oauth_error(http.post(url, json=ok), 400, "invalid_request")
    _oauth_error(http.post(url, content=b"grant_type=client_credentials&grant_type=client_credentials",
                           headers={"Content-Type": FORM}), 400, "invalid_request")
    _oauth_error(http.post(url, data={**ok, "scope": "root"}), 400, "invalid_scope")
    reader = ClientService(tenants.db, settings).create_client("acme", frozenset({"scim:read"}))
    _oauth_error(entra_token_request(http, "acme", reader, "Body", scope="scim:write"), 400, "invalid_scope")
    _oauth_error(http.post(url, content=b"x" * 10_000, headers={"Content-Type": FORM}), 413, "invalid_request")
    # The client belongs to acme: at another tenant's token endpoint it does not exist.
    tenants.create_tenant("globex")
    _oauth_error(entra_token_request(http, "globex", client, "Header"), 401, "invalid_client")
    # A disabled tenant issues nothing.
    tenants.set_status("acme", "disabled")
    _oauth_error(entra_token_request(http, "acme", client, "Header"), 401, "invalid_client")
    assert http.get(url).status_code == 405


def test_rotation_keeps_two_live_secrets_and_revoking_one_ends_its_tokens(
        scim: ScimClient, client: IssuedClient, tenants: TenantService, settings: Settings) -> None:
    service = ClientService(tenants.db, settings)
    old_token = entra_token_request(scim.http, "acme", client, "Header").json()["access_token"]
    second = service.rotate_secret("acme", client.client_id)
    assert second.client_id == client.client_id and second.client_secret != client.client_secret
    for issued in (client, second):
        assert entra_token_request(scim.http, "acme", issued, "Header").status_code == 200
    listed = service.list_clients("acme")[0]["secrets"]
    assert len(listed) == 2 and all(s["expires_at"] and s["last_used_at"] for s in listed)

    service.revoke("acme", client.client_id, client.secret_id)

    _oauth_error(entra_token_request(scim.http, "acme", client, "Header"), 401, "invalid_client")
    assert entra_token_request(scim.http, "acme", second, "Header").status_code == 200
    assert ScimClient(scim.http, "acme", old_token).get("/Users").status_code == 401


def test_an_expired_secret_gets_no_token(scim: ScimClient, client: IssuedClient, tenants: TenantService) -> None:
    from identity_sync.storage.tables import oauth_client_secrets

    with tenants.db.write() as conn:
        conn.execute(oauth_client_secrets.update().values(expires_at="2000-01-01T00:00:00.000000Z"))
    _oauth_error(entra_token_request(scim.http, "acme", client, "Header"), 401, "invalid_client")


def test_signing_keys_rotate_without_downtime(scim: ScimClient, client: IssuedClient, settings: Settings,
                                             monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    from identity_sync.auth import oauth

    before = entra_token_request(scim.http, "acme", client, "Header").json()["access_token"]
    old_kid = jwt.get_unverified_header(before)["kid"]
    # Another process or node (`identity-sync keys rotate`): a Database of its own, no shared directory.
    other_node = Database(settings.resolved_database_url())
    request.addfinalizer(other_node.dispose)
    keys = oauth.signing_keys_for(settings, other_node)
    time.sleep(1.01)  # key ids carry the second they were made
    new_kid = keys.rotate()

    # Another worker already signing with the new key: its token is accepted at once (an unknown
    # kid makes the server re-read the keys).
    claims = jwt.decode(before, options={"verify_signature": False})
    fresh = oauth.issue_access_token(keys, issuer=claims["iss"], tenant_id=claims["aud"].rsplit(":", 1)[1],
                                     client_id=client.client_id, secret_id=client.secret_id,
                                     scopes=frozenset({"scim:read"}), lifetime=3600)
    assert jwt.get_unverified_header(fresh)["kid"] == new_kid
    assert ScimClient(scim.http, "acme", fresh).get("/Users").status_code == 200
    # Once the server has re-read the keys it signs with the newest key and publishes both.
    monkeypatch.setattr(oauth, "RELOAD_SECONDS", 0.0)
    after = entra_token_request(scim.http, "acme", client, "Header").json()["access_token"]
    assert jwt.get_unverified_header(after)["kid"] == new_kid
    assert {k["kid"] for k in scim.http.get("/.well-known/jwks.json").json()["keys"]} == {old_kid, new_kid}
    # Tokens signed with the old key keep working until they expire.
    for token in (before, after):
        assert ScimClient(scim.http, "acme", token).get("/Users").status_code == 200
    # Pruning (after the longest token lifetime) removes the old key, and its tokens with it.
    assert keys.prune(0) == [old_kid]
    assert keys.kids() == [new_kid]
    assert ScimClient(scim.http, "acme", before).get("/Users").status_code == 401


def test_secrets_are_stored_only_as_digests(scim: ScimClient, client: IssuedClient, tenants: TenantService) -> None:
    token = entra_token_request(scim.http, "acme", client, "Header").json()["access_token"]
    with tenants.db.read() as conn:
        dump = "\n".join(str(tuple(row)) for table in ("oauth_clients", "oauth_client_secrets", "credentials")
                         for row in conn.exec_driver_sql(f"SELECT * FROM {table}").all())
    assert client.client_id in dump
    assert client.client_secret not in dump and client.client_secret[8:30] not in dump
    assert token not in dump and scim.token not in dump
