"""``meta.location`` and ``Location`` name the Tenant URL the caller used: its scheme, its ``Host``
and the app's root path, per request — remembered between requests, never mixed up between
callers (``IDSYNC_PUBLIC_URL``, when set, is used instead: tests/test_cli_node.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from identity_sync.config import Settings
from identity_sync.service.tenants import IssuedToken
from identity_sync.storage.db import Database
from identity_sync.web.app import _BaseUrls, create_app
from tests.conftest import ScimClient

USER = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]}


@pytest.fixture
def app(settings: Settings, db: Database) -> Any:
    return create_app(settings.model_copy(update={"public_url": None}), db)


@pytest.fixture
def http(app: Any) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://testserver") as client:
        yield client


@pytest.fixture
def scim(http: TestClient, issued: IssuedToken) -> ScimClient:
    return ScimClient(http, issued.tenant, issued.token)


def test_each_caller_gets_locations_under_the_host_it_called(scim: ScimClient) -> None:
    created = scim.post("/Users", {**USER, "userName": "pat@example.com"}, headers={"Host": "a.example.com"})
    assert created.status_code == 201
    user_id = created.json()["id"]
    assert created.headers["Location"] == f"http://a.example.com/scim/v2/acme/Users/{user_id}"
    for host in ("b.example.com", "a.example.com:8443", "a.example.com"):
        got = scim.get(f"/Users/{user_id}", headers={"Host": host})
        assert got.json()["meta"]["location"] == f"http://{host}/scim/v2/acme/Users/{user_id}"


def test_an_unusable_host_header_falls_back_to_the_server_address(scim: ScimClient) -> None:
    user_id = scim.create_user("kim@example.com")["id"]
    got = scim.get(f"/Users/{user_id}", headers={"Host": "bad host:port"})
    assert got.json()["meta"]["location"] == f"http://testserver/scim/v2/acme/Users/{user_id}"


def test_past_its_bound_the_memory_of_hosts_starts_over(http: TestClient, scim: ScimClient) -> None:
    user_id = scim.create_user("lee@example.com")["id"]
    for n in range(_BaseUrls.LIMIT + 10):
        host = f"h{n}.example.com"
        got = scim.get(f"/Users/{user_id}", headers={"Host": host})
        assert got.json()["meta"]["location"] == f"http://{host}/scim/v2/acme/Users/{user_id}"
    remembered = http.app.state.handlers._base_urls._known  # type: ignore[attr-defined]
    assert 0 < len(remembered) <= _BaseUrls.LIMIT
