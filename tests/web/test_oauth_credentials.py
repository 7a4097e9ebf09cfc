"""The bad-credential table for every kind of credential (static bearer, our OAuth access tokens,
Entra-issued tokens): each bad one gets the same 401 with ``WWW-Authenticate`` and no data, on
every route; a valid credential lacking the scope gets 403; and nothing changes."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

import pytest

from identity_sync.auth.oauth import SigningKeys, audience_for, signing_keys_for
from identity_sync.config import Settings
from identity_sync.errors import ERROR_SCHEMA
from identity_sync.service.clients import ClientService, IssuedClient
from identity_sync.service.tenants import TenantService
from identity_sync.storage.tenants import get_tenant
from tests.auth import jwt_helpers as jh
from tests.conftest import ScimClient
from tests.web.test_auth_and_tenancy import GROUP_SCHEMA, ROUTES, _send, assert_unauthorized


def token_for(client: ScimClient, issued: IssuedClient, scope: str | None = None) -> str:
    data = {"grant_type": "client_credentials", "client_id": issued.client_id, "client_secret": issued.client_secret}
    if scope:
        data["scope"] = scope
    response = client.http.post(f"{client.base}/oauth/token", data=data)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


@dataclass
class OAuthWorld:
    acme: ScimClient
    globex: ScimClient
    user: dict[str, Any]
    headers: dict[str, dict[str, str]]
    secrets: list[str]
    group: dict[str, Any]


def _own(keys: SigningKeys, claims: dict[str, Any], kid: str | None = None) -> str:
    key = keys.current()
    return jh.sign(claims, key.private, kid=kid or key.kid)


@pytest.fixture
def world(scim: ScimClient, other_scim: ScimClient, tenants: TenantService, settings: Settings) -> OAuthWorld:
    clients = ClientService(tenants.db, settings)
    user = scim.create_user("alice@example.com", displayName="Alice Secret")
    good = clients.create_client("acme")
    access = token_for(scim, good)
    revoked_client = clients.create_client("acme")
    revoked_client_token = token_for(scim, revoked_client)
    clients.revoke("acme", revoked_client.client_id)
    revoked_secret = clients.rotate_secret("acme", good.client_id)
    revoked_secret_token = token_for(scim, revoked_secret)
    clients.revoke("acme", good.client_id, revoked_secret.secret_id)
    revoked_static = tenants.create_token("acme")
    tenants.revoke_token("acme", revoked_static.credential_id)
    foreign = clients.create_client("globex")
    foreign_token = token_for(other_scim, foreign)
    clients.set_entra_trust("acme", jh.ENTRA_TID, jwks=jh.jwks())

    keys = signing_keys_for(settings, tenants.db)  # what the app signs and verifies with
    with tenants.db.read() as conn:
        acme_id = get_tenant(conn, "acme")["id"]
    now = int(time.time())
    ours = {"iss": settings.oauth_issuer, "aud": audience_for(acme_id), "sub": good.client_id,
            "sid": good.secret_id, "scope": "scim:read scim:write", "iat": now, "nbf": now, "exp": now + 3600}
    tampered = access.split(".")
    payload = base64.urlsafe_b64decode(tampered[1] + "==").replace(b"scim:read", b"admin scim:read")
    tampered[1] = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    bearer = {
        # static tokens and header shapes
        "missing header": None,
        "empty bearer": "",
        "revoked static token": revoked_static.token,
        "another tenant's static token": other_scim.token,
        # our access tokens
        "expired": _own(keys, {**ours, "exp": now - 120, "iat": now - 3720, "nbf": now - 3720}),
        "not yet valid": _own(keys, {**ours, "nbf": now + 600, "iat": now + 600, "exp": now + 4200}),
        "no exp": _own(keys, {k: v for k, v in ours.items() if k != "exp"}),
        "wrong aud": _own(keys, {**ours, "aud": "https://scim.example.test/scim/v2/acme"}),
        "wrong iss": _own(keys, {**ours, "iss": "https://evil.example"}),
        "alg none": jh.unsigned(ours, kid=keys.current().kid),
        "HS256 signed with the public key": jh.hs256_with_public_key(
            ours, _public_pem(keys), keys.current().kid),
        "unknown kid": jh.sign(ours, jh.rsa_key("stranger"), kid="no-such-kid"),
        "known kid, another key": jh.sign(ours, jh.rsa_key("stranger"), kid=keys.current().kid),
        "no kid": jh.sign(ours, keys.current().private, kid=None),
        "tampered claims": ".".join(tampered),
        "revoked client": revoked_client_token,
        "revoked secret": revoked_secret_token,
        "other tenant's token": foreign_token,
        "token for another client": _own(keys, {**ours, "sub": foreign.client_id, "sid": foreign.secret_id}),
        # Entra-issued tokens
        "Entra: expired": jh.sign(jh.entra_claims(exp=now - 120, nbf=now - 4000, iat=now - 4000)),
        "Entra: not yet valid": jh.sign(jh.entra_claims(nbf=now + 600)),
        "Entra: wrong aud": jh.sign(jh.entra_claims(aud="api://someone-else")),
        "Entra: another directory": jh.sign(jh.entra_claims(
            iss="https://sts.windows.net/99999999-2222-3333-4444-555555555555/",
            tid="99999999-2222-3333-4444-555555555555")),
        "Entra: tid differs from iss": jh.sign(jh.entra_claims(tid="99999999-2222-3333-4444-555555555555")),
        "Entra: unknown kid": jh.sign(jh.entra_claims(), kid="rotated-away"),
        "Entra: signed by another key": jh.sign(jh.entra_claims(), jh.rsa_key("stranger")),
        "Entra: alg none": jh.unsigned(jh.entra_claims()),
        "Entra: HS256 with the public key": jh.hs256_with_public_key(jh.entra_claims(), jh.public_pem(),
                                                                     "entra-kid-1"),
    }
    headers: dict[str, dict[str, str]] = {
        name: ({} if value is None else {"Authorization": f"Bearer {value}"}) for name, value in bearer.items()}
    headers["wrong scheme"] = {"Authorization": f"Basic {base64.b64encode(b'a:b').decode()}"}
    headers["wrong scheme with a valid token"] = {"Authorization": f"Token {access}"}
    headers["JWT-shaped garbage"] = {"Authorization": "Bearer a.b.c"}
    scim.token = access  # the world's own requests use the valid access token
    group = scim.post("/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "Secret Team",
                                  "members": [{"value": user["id"]}]}).json()
    return OAuthWorld(scim, other_scim, user, headers,
                      [access, good.client_secret, foreign_token, other_scim.token, *[v for v in bearer.values() if v]],
                      group)


def _public_pem(keys: SigningKeys) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return keys.current().private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize("route", list(ROUTES))
def test_every_bad_credential_is_the_same_401_with_no_data(world: OAuthWorld, route: str) -> None:
    method, path, body = ROUTES[route](world)  # type: ignore[arg-type]
    before = world.acme.get(f"/Users/{world.user['id']}").json()
    answers = set()
    for name, headers in world.headers.items():
        response = _send(world.acme, method, path, body, headers)
        try:
            assert_unauthorized(response, world.user["id"], "alice", "Alice Secret", "mallory",
                                *[s for s in world.secrets if s])
        except AssertionError as exc:
            raise AssertionError(f"{route} with {name}: {exc}") from None
        if "Authorization" in headers and headers["Authorization"].startswith("Bearer ") and len(
                headers["Authorization"]) > 12:
            answers.add(response.text)
    assert len(answers) == 1, answers  # why a presented token failed is never told
    assert world.acme.get(f"/Users/{world.user['id']}").json() == before
    assert [u["userName"] for u in world.acme.find("userName pr")] == ["alice@example.com"]


def test_the_valid_credentials_of_each_kind_work(world: OAuthWorld) -> None:
    entra = jh.sign(jh.entra_claims())
    v2 = jh.sign(jh.entra_claims(iss=f"https://login.microsoftonline.com/{jh.ENTRA_TID}/v2.0"))
    skewed = jh.sign(jh.entra_claims(nbf=int(time.time()) + 30))  # within the clock-skew leeway
    for token in (world.acme.token, entra, v2, skewed):
        response = world.acme.http.get(world.acme.base + "/Users", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text


def test_a_valid_token_without_the_scope_is_403_with_no_data(world: OAuthWorld, tenants: TenantService,
                                                             settings: Settings) -> None:
    clients = ClientService(tenants.db, settings)
    reader = clients.create_client("acme", frozenset({"scim:read"}))
    admin = clients.create_client("acme", frozenset({"admin"}))
    read_token, admin_token = token_for(world.acme, reader), token_for(world.acme, admin)
    writer = clients.create_client("acme")
    narrowed = token_for(world.acme, writer, scope="scim:read")  # asked for less than allowed

    for token in (read_token, narrowed):
        assert _send(world.acme, "GET", "/Users", None, {"Authorization": f"Bearer {token}"}).status_code == 200
    for route, build in ROUTES.items():
        method, path, body = build(world)  # type: ignore[arg-type]
        reads = method == "GET" or path.endswith("/.search")  # a search is a read, sent as POST
        denied = [admin_token] + ([] if reads else [read_token, narrowed])
        for token in denied:
            response = _send(world.acme, method, path, body, {"Authorization": f"Bearer {token}"})
            assert response.status_code == 403, (route, response.text)
            payload = response.json()
            assert payload["schemas"] == [ERROR_SCHEMA] and payload["status"] == "403"
            assert "alice" not in response.text and world.user["id"] not in response.text
    assert [u["userName"] for u in world.acme.find("userName pr")] == ["alice@example.com"]
    assert world.acme.get(f"/Users/{world.user['id']}").json()["displayName"] == "Alice Secret"


def test_revoking_a_client_stops_its_tokens_at_once(world: OAuthWorld, tenants: TenantService,
                                                    settings: Settings) -> None:
    clients = ClientService(tenants.db, settings)
    issued = clients.create_client("acme")
    token = token_for(world.acme, issued)
    headers = {"Authorization": f"Bearer {token}"}
    assert _send(world.acme, "GET", "/Users", None, headers).status_code == 200
    clients.revoke("acme", issued.client_id)
    assert_unauthorized(_send(world.acme, "GET", "/Users", None, headers), token)


def test_a_disabled_tenants_access_token_is_refused(world: OAuthWorld, tenants: TenantService) -> None:
    headers = {"Authorization": f"Bearer {world.acme.token}"}
    tenants.set_status("acme", "disabled")
    assert_unauthorized(_send(world.acme, "GET", "/Users", None, headers), world.acme.token)
    tenants.set_status("acme", "active")
    assert _send(world.acme, "GET", "/Users", None, headers).status_code == 200
