"""Workload identity federation (RFC 7523) exactly as Entra performs it: a token request with an
Entra-signed client assertion and no secret → our access token → Test Connection, create, PATCH;
and every bad assertion refused with the same bare ``invalid_client``. Keys are generated
locally; nothing touches the network."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from identity_sync.auth import federation as wif
from identity_sync.auth import jwks
from identity_sync.cli import app as cli_app
from identity_sync.config import Settings
from identity_sync.service.clients import ClientService, FederatedClient
from identity_sync.service.tenants import TenantError, TenantService
from tests.auth import jwt_helpers as jh
from tests.conftest import ScimClient

TID = jh.ENTRA_TID
ISSUER = f"https://login.microsoftonline.com/{TID}/v2.0"
SUBJECT = "7d3c1e2f-0a9b-4c8d-8e7f-6a5b4c3d2e1f"  # the workload identity's object id
APP_ID = "0f1e2d3c-4b5a-6978-8a9b-acbdcedf0011"  # the workload identity app's application id
AUDIENCE = f"api://{APP_ID}/.default"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def wif_claims(**overrides: Any) -> dict[str, Any]:
    """The claims of an Entra v2 workload-identity token (bare app id GUID as ``aud``)."""
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": APP_ID, "sub": SUBJECT, "oid": SUBJECT, "tid": TID,
              "appid": "a1b2c3d4-0000-0000-0000-000000000001", "iat": now, "nbf": now, "exp": now + 3600,
              "ver": "2.0", "uti": "x1y2z3"}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def token_request(scim: ScimClient, client_id: str, assertion: str, tenant: str = "acme",
                  assertion_type: str | None = wif.JWT_BEARER, **extra: str) -> Any:
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_assertion": assertion,
            "scope": "scim", **extra}
    if assertion_type is not None:
        form["client_assertion_type"] = assertion_type
    return scim.http.post(f"/scim/v2/{tenant}/oauth/token", data=form,
                          headers={"Content-Type": "application/x-www-form-urlencoded"})


@pytest.fixture
def service(scim: ScimClient, tenants: TenantService, settings: Settings) -> ClientService:
    return ClientService(tenants.db, settings)


@pytest.fixture
def fed(service: ClientService) -> FederatedClient:
    return service.create_federated_client("acme", issuer=ISSUER, subject=SUBJECT, audience=AUDIENCE,
                                           jwks=jh.jwks())


def assert_invalid_client(response: Any, *secrets: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {"error": "invalid_client", "error_description": "Client authentication failed."}
    for secret in secrets:
        assert secret not in response.text


def test_entra_workload_identity_federation_then_scim_calls(scim: ScimClient, fed: FederatedClient) -> None:
    response = token_request(scim, fed.client_id, jh.sign(wif_claims()))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["scope"] == "scim:read scim:write"
    entra = ScimClient(scim.http, "acme", body["access_token"])
    # Test Connection: a filter on a random userName.
    probe = entra.get("/Users", params={"filter": 'userName eq "0c6a3f1e-probe"'})
    assert probe.status_code == 200 and probe.json()["totalResults"] == 0
    user = entra.create_user("grace@contoso.com", active=True)
    patched = entra.patch(f"/Users/{user['id']}", {"schemas": [PATCH_SCHEMA], "Operations": [
        {"op": "Replace", "path": "active", "value": "False"}]})
    assert patched.status_code == 200 and patched.json()["active"] is False
    # The same assertion may be presented again while it is valid (Entra reuses it).
    assert token_request(scim, fed.client_id, jh.sign(wif_claims())).status_code == 200


@pytest.mark.parametrize("aud", [APP_ID, f"api://{APP_ID}", AUDIENCE, [APP_ID, "other"], APP_ID.upper()])
def test_both_audience_forms_are_accepted(scim: ScimClient, fed: FederatedClient, aud: Any) -> None:
    assert token_request(scim, fed.client_id, jh.sign(wif_claims(aud=aud))).status_code == 200


def test_a_client_configured_with_the_bare_guid_audience(scim: ScimClient, service: ClientService) -> None:
    bare = service.create_federated_client("acme", issuer=ISSUER, subject=SUBJECT, audience=APP_ID, jwks=jh.jwks())
    assert token_request(scim, bare.client_id, jh.sign(wif_claims(aud=AUDIENCE))).status_code == 200
    assert token_request(scim, bare.client_id, jh.sign(wif_claims())).status_code == 200


OTHER_GUID = "99999999-8888-7777-6666-555555555555"


def _refusals() -> dict[str, Any]:
    """Made when a test runs, not when the module is imported: a suite that runs for more than ten
    minutes must not see "not yet valid" become valid."""
    pem, kid, now = jh.public_pem(), "entra-kid-1", int(time.time())
    return {
        "wrong aud": jh.sign(wif_claims(aud=OTHER_GUID)),
        "blank-secret aud": jh.sign(wif_claims(aud=jh.ENTRA_AUD)),
        "no aud": jh.sign(wif_claims(aud=None)),
        "wrong iss": jh.sign(wif_claims(iss=f"https://login.microsoftonline.com/{OTHER_GUID}/v2.0")),
        "v1 iss": jh.sign(wif_claims(iss=f"https://sts.windows.net/{TID}/")),
        "wrong sub": jh.sign(wif_claims(sub=OTHER_GUID)),
        "no sub": jh.sign(wif_claims(sub=None)),
        "wrong tid": jh.sign(wif_claims(tid=OTHER_GUID)),
        "no tid": jh.sign(wif_claims(tid=None)),
        "unknown kid": jh.sign(wif_claims(), kid="entra-kid-2"),
        "no kid": jh.sign(wif_claims(), kid=None),
        "other key, same kid": jh.sign(wif_claims(), key=jh.rsa_key("attacker")),
        "expired": jh.sign(wif_claims(iat=now - 7200, nbf=now - 7200, exp=now - 120)),
        "no exp": jh.sign(wif_claims(exp=None)),
        "not yet valid": jh.sign(wif_claims(nbf=now + 600)),
        "alg none": jh.unsigned(wif_claims(), kid=kid),
        "HS256 with the public key": jh.hs256_with_public_key(wif_claims(), pem, kid),
        "tampered": jh.sign(wif_claims())[:-6] + "AAAAAA",
        "garbage": "not-a-jwt",
    }


@pytest.mark.parametrize("case", list(_refusals()))
def test_bad_assertions_are_refused_with_a_bare_invalid_client(scim: ScimClient, fed: FederatedClient,
                                                               case: str) -> None:
    assertion = _refusals()[case]
    response = token_request(scim, fed.client_id, assertion)
    assert_invalid_client(response, assertion)


def test_expiry_and_not_before_tolerate_small_clock_skew(scim: ScimClient, fed: FederatedClient) -> None:
    now = int(time.time())
    assert token_request(scim, fed.client_id, jh.sign(wif_claims(exp=now - 20))).status_code == 200
    assert token_request(scim, fed.client_id, jh.sign(wif_claims(nbf=now + 20))).status_code == 200


def test_request_shapes_are_refused(scim: ScimClient, fed: FederatedClient) -> None:
    good = jh.sign(wif_claims())
    assert_invalid_client(token_request(scim, fed.client_id, good, assertion_type=None))
    assert_invalid_client(token_request(scim, fed.client_id, good,
                                        assertion_type="urn:ietf:params:oauth:client-assertion-type:saml2-bearer"))
    assert_invalid_client(token_request(scim, fed.client_id, ""))
    assert_invalid_client(token_request(scim, "", good))
    assert_invalid_client(token_request(scim, fed.client_id, good, client_secret="idsyncs_x"))
    response = scim.http.post("/scim/v2/acme/oauth/token", data={
        "grant_type": "client_credentials", "client_assertion_type": wif.JWT_BEARER, "client_assertion": good})
    assert_invalid_client(response)  # no client_id
    response = scim.http.post("/scim/v2/acme/oauth/token", data={
        "grant_type": "client_credentials", "client_id": fed.client_id, "client_assertion_type": wif.JWT_BEARER,
        "client_assertion": good}, headers={"Authorization": "Basic eDp5"})
    assert_invalid_client(response)  # two authentication methods


def test_assertion_for_another_client_or_tenant_is_refused(scim: ScimClient, other_scim: ScimClient,
                                                           service: ClientService, fed: FederatedClient) -> None:
    good = jh.sign(wif_claims())
    # The same assertion at the other tenant's token endpoint, with this tenant's client.
    assert_invalid_client(token_request(scim, fed.client_id, good, tenant="globex"))
    # A federated client of the other tenant trusting another workload identity.
    other = service.create_federated_client("globex", issuer=ISSUER, subject=OTHER_GUID, audience=AUDIENCE,
                                            jwks=jh.jwks())
    assert_invalid_client(token_request(scim, other.client_id, good, tenant="globex"))
    assert_invalid_client(token_request(scim, other.client_id, good, tenant="acme"))
    # A client with a secret cannot be used with an assertion, nor a federated one with a secret.
    secret_client = service.create_client("acme")
    assert_invalid_client(token_request(scim, secret_client.client_id, good))
    response = scim.http.post("/scim/v2/acme/oauth/token", data={
        "grant_type": "client_credentials", "client_id": fed.client_id, "client_secret": "wif:" + "0" * 60})
    assert_invalid_client(response)
    # An access token obtained at acme does not open globex.
    access = token_request(scim, fed.client_id, good).json()["access_token"]
    assert ScimClient(scim.http, "globex", access).get("/Users").status_code == 401


def test_revoking_the_client_or_its_credential_ends_it(scim: ScimClient, service: ClientService,
                                                       fed: FederatedClient) -> None:
    good = jh.sign(wif_claims())
    access = token_request(scim, fed.client_id, good).json()["access_token"]
    entra = ScimClient(scim.http, "acme", access)
    assert entra.get("/Users").status_code == 200
    service.revoke("acme", fed.client_id, fed.credential_id)
    assert entra.get("/Users").status_code == 401
    assert_invalid_client(token_request(scim, fed.client_id, good))
    with pytest.raises(TenantError):
        service.rotate_secret("acme", fed.client_id)


def test_scope_is_bounded_by_the_client(scim: ScimClient, service: ClientService) -> None:
    reader = service.create_federated_client("acme", issuer=ISSUER, subject=SUBJECT, audience=AUDIENCE,
                                             jwks=jh.jwks(), scopes=frozenset({"scim:read"}))
    good = jh.sign(wif_claims())
    response = token_request(scim, reader.client_id, good)
    assert response.status_code == 400 and response.json()["error"] == "invalid_scope"
    response = token_request(scim, reader.client_id, good, scope="scim:read")
    assert response.status_code == 200 and response.json()["scope"] == "scim:read"


@pytest.mark.parametrize("kwargs", [
    {"issuer": "https://evil.example/v2.0"},
    {"issuer": "https://login.microsoftonline.com/common/v2.0"},
    {"audience": "api://a/b/c"},
    {"subject": ""},
    {"jwks": None},
    {"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}},
    {"jwks": None, "jwks_url": "http://login.microsoftonline.com/keys"},
])
def test_bad_federation_settings_are_refused(service: ClientService, kwargs: dict[str, Any]) -> None:
    values: dict[str, Any] = {"issuer": ISSUER, "subject": SUBJECT, "audience": AUDIENCE, "jwks": jh.jwks(), **kwargs}
    with pytest.raises(TenantError):
        service.create_federated_client("acme", **values)


def test_a_jwks_url_is_cached_and_fetched_again_on_an_unknown_kid(monkeypatch: pytest.MonkeyPatch) -> None:
    fetched: list[str] = []
    current = {"value": jh.jwks(kid="k1")}

    def fetch(url: str) -> dict[str, Any]:
        fetched.append(url)
        return current["value"]

    source = wif.JwksSource(fetch)
    credential = wif.FederatedCredential("c", "idsc_x", ISSUER, SUBJECT, AUDIENCE, TID, None,
                                         f"https://login.microsoftonline.com/{TID}/discovery/v2.0/keys", "t")
    key_for = source.key_for(credential)
    assert key_for("k1") is not None and key_for("k1") is not None and len(fetched) == 1
    current["value"] = jh.jwks(kid="k2")  # Entra rolled its keys
    assert key_for("k2") is None and len(fetched) == 1  # refetches are rate-limited
    clock = time.monotonic() + wif.REFETCH_SECONDS + 1
    monkeypatch.setattr(jwks.time, "monotonic", lambda: clock)
    assert key_for("k2") is not None and len(fetched) == 2
    assert key_for("nope") is None and len(fetched) == 2


def test_cli_creates_a_federated_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    import structlog

    previous, root = structlog.get_config(), logging.getLogger()
    handlers, level = list(root.handlers), root.level
    monkeypatch.setenv("IDSYNC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("IDSYNC_DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")
    monkeypatch.setenv("IDSYNC_PUBLIC_URL", "https://scim.example.test")
    runner = CliRunner()
    jwks_file = tmp_path / "entra-keys.json"
    jwks_file.write_text(json.dumps(jh.jwks()))
    try:
        assert runner.invoke(cli_app, ["migrate"]).exit_code == 0  # only migrate and serve create a database
        assert runner.invoke(cli_app, ["tenant", "create", "acme"]).exit_code == 0
        args = ["client", "create", "--tenant", "acme", "--federated", "--issuer", ISSUER, "--subject", SUBJECT,
                "--audience", AUDIENCE, "--jwks-file", str(jwks_file)]
        result = runner.invoke(cli_app, [*args, "--json"])
        assert result.exit_code == 0, result.output
        created = json.loads(result.stdout)
        assert created["token_endpoint"] == "https://scim.example.test/scim/v2/acme/oauth/token"
        assert created["tenant_url"] == "https://scim.example.test/scim/v2/acme"
        assert created["client_id"].startswith("idsc_") and "client_secret" not in created
        assert created["entra_tenant_id"] == TID and created["audience"] == AUDIENCE
        human = runner.invoke(cli_app, args).stdout
        assert "Workload identity federation" in human and "Token endpoint:" in human
        listed = json.loads(runner.invoke(cli_app, ["client", "list", "--tenant", "acme", "--json"]).stdout)
        assert listed["clients"][0]["federated"]["subject"] == SUBJECT
        assert "federated" in runner.invoke(cli_app, ["client", "list", "--tenant", "acme"]).stdout
        assert runner.invoke(cli_app, ["client", "rotate", created["client_id"], "--tenant", "acme"]).exit_code != 0
        assert runner.invoke(cli_app, ["client", "create", "--tenant", "acme", "--federated"]).exit_code != 0
        assert runner.invoke(cli_app, ["client", "create", "--tenant", "acme", "--issuer", ISSUER]).exit_code != 0
        url_args = [a for a in args if a not in ("--jwks-file", str(jwks_file))]
        assert runner.invoke(cli_app, [*url_args, "--jwks-url", "http://x"]).exit_code != 0
        assert runner.invoke(cli_app, [*url_args, "--jwks-url",
                                       f"https://login.microsoftonline.com/{TID}/discovery/v2.0/keys"]).exit_code == 0
    finally:
        structlog.configure(**previous)
        root.handlers[:], root.level = handlers, level
