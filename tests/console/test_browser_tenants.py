"""The console's tenant pages in a real browser (Playwright driving Debian's ``chromium``, as
test_browser.py, whose server and browser fixtures this module shares): an admin creates a tenant
and a client and sees each secret once; a tenant admin cannot reach another tenant, also by
typing its URLs. Screenshots of the tenant page go to docs/screenshots/ with
``IDSYNC_UPDATE_SCREENSHOTS=1``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from identity_sync.config import Settings
from identity_sync.service.clients import ClientService
from identity_sync.service.operators import OperatorService
from identity_sync.storage.db import Database
from tests.console.conftest import ADMIN_PASSWORD
from tests.console.test_browser import Served, _log_in, _screenshot, chromium, page, served  # noqa: F401

TENANT_ADMIN_PASSWORD = "the acme it admin's passphrase"


@pytest.fixture(scope="module")
def tenant_admin(served: Served) -> str:  # noqa: F811
    db = Database(served.db_url)
    OperatorService(db).create("tim", "tenant-admin", TENANT_ADMIN_PASSWORD, tenant="acme")
    db.dispose()
    return "tim"


def test_an_admin_creates_a_tenant_and_a_client_and_each_secret_is_shown_once(
        page: Any, served: Served, tmp_path: Path) -> None:  # noqa: F811
    _log_in(page, served, "alice", ADMIN_PASSWORD)
    page.click("header nav >> text=Tenants")
    page.wait_for_url(f"{served.url}/admin/tenants")
    page.fill("input[name=name]", "initech")
    page.click("text=Create tenant")

    assert page.inner_text("h1") == "Tenant initech created"
    first_token = page.inner_text("#secret")
    assert first_token.startswith("idsync_")
    assert page.inner_text("#tenant-url") == "https://scim.example.com/scim/v2/initech"
    page.click("text=Back to tenant initech")
    page.wait_for_url(f"{served.url}/admin/tenants/initech")
    assert first_token not in page.content()

    page.click("text=New client")
    secret = page.inner_text("#secret")
    client_id = page.inner_text("#client-id")
    assert secret.startswith("idsyncs_") and page.inner_text("h1") == "New client secret"
    page.click("button[data-copy=secret]")  # console.js is allowed by the CSP and bound the button
    page.wait_for_selector("button[data-copy=secret]:text-matches('Copied|Press Ctrl\\\\+C')")
    _screenshot(page, "tenant-secret", tmp_path)

    page.goto(f"{served.url}/admin/tenants/initech")
    page.reload()
    content = page.content()
    assert client_id in content and secret not in content and first_token not in content


def test_the_tenant_page_shows_the_tenants_users_and_credentials(page: Any, served: Served, tmp_path: Path) -> None:  # noqa: F811
    db = Database(served.db_url)
    client = ClientService(db, Settings(database_url=served.db_url)).create_client("acme")
    db.dispose()
    refused = page.request.get(f"{served.url}/scim/v2/acme/Users", headers={"Authorization": "Bearer idsync_wrong"})
    assert refused.status == 401
    _log_in(page, served, "alice", ADMIN_PASSWORD)
    page.goto(f"{served.url}/admin/tenants/acme")
    if page.query_selector("table.rejections") is None:  # written by the server's background thread
        page.wait_for_timeout(500)
        page.reload()
    assert client.client_id in page.inner_text("table.clients")
    assert "401" in page.inner_text("table.rejections") and "idsync_wrong" not in page.content()

    assert page.inner_text("h1").startswith("Tenant acme")
    assert page.inner_text("#tenant-url") == "https://scim.example.com/scim/v2/acme"
    assert page.query_selector_all("table.tokens tbody tr")
    _screenshot(page, "tenant", tmp_path)

    page.fill("input[name=q]", "bob")
    page.click("form.search button")
    page.wait_for_url("**/admin/tenants/acme/users?q=bob")
    assert page.inner_text("p.total").startswith("1 user")
    page.click("table.resources a")
    assert page.inner_text("h1") == "bob"
    assert "create" in page.inner_text("#history")
    _screenshot(page, "tenant-user", tmp_path)


def test_a_tenant_admin_sees_its_tenant_only_even_when_typing_urls(
        page: Any, served: Served, tenant_admin: str) -> None:  # noqa: F811
    page.goto(f"{served.url}/admin/login")
    page.fill("input[name=username]", tenant_admin)
    page.fill("input[name=password]", TENANT_ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{served.url}/admin/tenants/acme")  # /admin sends it to its tenant
    assert page.inner_text("h1").startswith("Tenant acme")
    assert page.query_selector("header nav >> text=Tenants") is None

    for path in ("/admin/tenants/globex", "/admin/tenants/globex/users", "/admin/tenants", "/admin/jobs/hr-to-app"):
        response = page.goto(f"{served.url}{path}")
        assert response.status == 404, path
        assert page.inner_text("h1") == "Not found" and "globex" not in page.content().lower()

    token = page.get_attribute("input[name=csrf_token]", "value")
    forged = page.request.post(f"{served.url}/admin/tenants/globex/tokens", form={"csrf_token": token})
    assert forged.status == 404
    page.goto(f"{served.url}/admin")
    assert page.url == f"{served.url}/admin/tenants/acme"
