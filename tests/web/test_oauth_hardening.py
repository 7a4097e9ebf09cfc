"""Findings of a security review of the token endpoint and token verification, kept as
regression tests: each failed before its fix."""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from identity_sync.auth import oauth
from identity_sync.service.clients import ClientService
from tests.auth import jwt_helpers as h
from tests.conftest import ScimClient

FORM = "application/x-www-form-urlencoded"
ASSERTION_TYPE = b"urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
NUL_REQUESTS = {
    "body": (b"grant_type=client_credentials&client_id=idsc_%00&client_secret=x", None),
    "basic": (b"grant_type=client_credentials", "Basic " + base64.b64encode(b"idsc_%00:x").decode()),
    "assertion": (b"grant_type=client_credentials&client_id=a%00&client_assertion_type=" + ASSERTION_TYPE
                  + b"&client_assertion=a.b.c", None),
}


@pytest.mark.parametrize("shape", list(NUL_REQUESTS))
def test_a_nul_in_the_client_id_is_invalid_client_not_a_server_error(app, tenants, shape: str) -> None:
    """PostgreSQL cannot receive a NUL: it used to answer 500."""
    tenants.create_tenant("acme")
    body, authorization = NUL_REQUESTS[shape]
    headers = {"Content-Type": FORM, **({"Authorization": authorization} if authorization else {})}
    with TestClient(app, base_url="https://scim.example.test", raise_server_exceptions=False) as http:
        response = http.post("/scim/v2/acme/oauth/token", content=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_strangers_cannot_spend_a_tenants_token_budget(scim: ScimClient, settings, tenants) -> None:
    """Anonymous requests naming the tenant in the URL used to starve its real client (429)."""
    issued = ClientService(tenants.db, settings).create_client("acme")
    stranger = TestClient(scim.http.app, base_url="https://scim.example.test", client=("203.0.113.9", 50000))
    with stranger:
        for _ in range(40):
            stranger.post("/scim/v2/acme/oauth/token", content=b"", headers={"Content-Type": FORM})
    response = scim.http.post("/scim/v2/acme/oauth/token", data={
        "grant_type": "client_credentials", "client_id": issued.client_id, "client_secret": issued.client_secret})
    assert response.status_code == 200, response.text


def test_an_entra_token_without_tid_is_refused(scim: ScimClient, settings, tenants) -> None:
    ClientService(tenants.db, settings).set_entra_trust("acme", h.ENTRA_TID, jwks=h.jwks())
    response = ScimClient(scim.http, "acme", h.sign(h.entra_claims(tid=None))).get("/Users")
    assert response.status_code == 401


def test_a_key_another_worker_just_created_is_accepted_at_once() -> None:
    directory = Path(tempfile.mkdtemp())
    worker_a, worker_b = oauth.SigningKeys(directory), oauth.SigningKeys(directory)
    worker_a.rotate()
    worker_b.jwks()  # both have read the directory
    kid = worker_a.rotate()
    assert worker_b.public_key(kid) is not None
