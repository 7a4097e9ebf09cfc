"""The console's tenant pages over HTTP (the service's real app, Starlette's TestClient), on SQLite
and PostgreSQL: what they show, credentials made, rotated and revoked (checked through the real
SCIM and token endpoints), who may change what, and tenant admins, who see their own tenant only."""

from __future__ import annotations

import re
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from identity_sync.config import Settings
from identity_sync.console.routes import Console, console_app
from identity_sync.engine.jobs import Job
from identity_sync.service.clients import ClientService
from identity_sync.service.operators import OperatorService
from identity_sync.service.tenants import TenantError, TenantService
from identity_sync.storage.db import Database
from identity_sync.storage.tables import audit_events, credentials, oauth_client_secrets, tenants
from tests.conftest import ScimClient
from tests.console.conftest import ADMIN_PASSWORD, VIEWER_PASSWORD, Browser, csrf_of

TENANT_ADMIN_PASSWORD = "the acme it admin's passphrase"
_SECRET = re.compile(r'<code id="secret">([^<]+)</code>')
_ENTRA = "11111111-2222-3333-4444-555555555555"


@pytest.fixture
def tenant_admin(operators: OperatorService, issued: Any) -> str:
    operators.create("tim", "tenant-admin", TENANT_ADMIN_PASSWORD, tenant="acme")
    return "tim"


def secret_of(html: str) -> str:
    found = _SECRET.search(html)
    assert found, "the page shows the new secret"
    return found.group(1)


def tenant_events(db: Database, tenant: str) -> list[tuple[str, str, str]]:
    with db.read() as conn:
        tenant_id = conn.execute(sa.select(tenants.c.id).where(tenants.c.name == tenant)).scalar_one()
        rows = conn.execute(sa.select(audit_events).where(audit_events.c.tenant_id == tenant_id)
                            .order_by(audit_events.c.id))
        return [(r.actor, r.action, r.resource_type) for r in rows]


def access_token(http: TestClient, tenant: str, client_id: str, secret: str) -> Any:
    return http.post(f"/scim/v2/{tenant}/oauth/token", data={
        "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret})


# -- what the pages show ---------------------------------------------------------------------------


def test_the_tenant_page_shows_its_url_credentials_trust_retention_activity_and_rejections(
        browser: Browser, admin: str, scim: ScimClient, issued: Any, db: Database, settings: Settings) -> None:
    scim.create_user("ann@example.com")
    clients = ClientService(db, settings)
    client = clients.create_client("acme")
    clients.set_entra_trust("acme", _ENTRA, jwks_url="https://login.microsoftonline.com/common/discovery/v2.0/keys")
    TenantService(db).set_retention("acme", 90)
    wrong = scim.http.get("/scim/v2/acme/Users", headers={"Authorization": "Bearer idsync_not-a-real-token"})
    assert wrong.status_code == 401
    scim.http.app.state.rejections.flush()  # written by a background thread
    browser.login(admin, ADMIN_PASSWORD)

    page = browser.http.get("/admin/tenants/acme")

    assert page.status_code == 200
    text = page.text
    assert '<code id="tenant-url">https://scim.example.test/scim/v2/acme</code>' in text
    assert 'data-copy="tenant-url"' in text and "<script>" not in text  # the copy button is console.js's
    assert issued.credential_id in text and client.client_id in text and client.secret_id in text
    assert issued.token not in text and client.client_secret not in text
    assert _ENTRA in text and "discovery/v2.0/keys" in text
    assert "<dd>90 days</dd>" in text
    activity = text[text.index('id="activity"'):text.index('id="rejections"')]
    assert "create" in activity and "User" in activity
    rejections = text[text.index('id="rejections"'):]
    assert "<td class=\"num\">401</td><td>unknown</td>" in rejections
    assert "/scim/v2/{tenant}/Users" in rejections and "not-a-real-token" not in text


def test_users_are_found_by_username_or_display_name_and_paginated(
        browser: Browser, admin: str, scim: ScimClient) -> None:
    scim.create_user("ann@example.com", displayName="Ann Zephyr")
    scim.create_user("zed@example.com", displayName="Zed Other")
    for i in range(26):
        scim.create_user(f"person{i:02d}@example.com")
    browser.login(admin, ADMIN_PASSWORD)

    by_display = browser.http.get("/admin/tenants/acme/users", params={"q": "zephyr"}).text
    by_user = browser.http.get("/admin/tenants/acme/users", params={"q": "zed@"}).text
    first = browser.http.get("/admin/tenants/acme/users").text
    second = browser.http.get("/admin/tenants/acme/users", params={"page": "2"}).text
    quoted = browser.http.get("/admin/tenants/acme/users", params={"q": 'x" or userName pr or "'})

    assert "1 user matching" in by_display and ">ann@example.com</a>" in by_display and "zed@" not in by_display
    assert "1 user matching" in by_user and ">zed@example.com</a>" in by_user
    assert "28 users" in first and "Page 1 of 2" in first and first.count("<tr><td><a") == 25
    assert second.count("<tr><td><a") == 3 and "Page 2 of 2" in second
    assert quoted.status_code == 200 and "0 users" in quoted.text  # the text is a literal, never filter syntax


def test_groups_are_searched_by_display_name(browser: Browser, admin: str, scim: ScimClient) -> None:
    for name in ("Staff", "Admins", "Staff Berlin"):
        group = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name}
        assert scim.post("/Groups", group).status_code == 201
    browser.login(admin, ADMIN_PASSWORD)

    page = browser.http.get("/admin/tenants/acme/groups", params={"q": "staff"}).text

    assert "2 groups matching" in page and ">Staff</a>" in page and ">Staff Berlin</a>" in page
    assert "Admins" not in page


def test_a_users_detail_shows_its_audit_history_and_another_tenants_user_is_404(
        browser: Browser, admin: str, scim: ScimClient, other_scim: ScimClient) -> None:
    user = scim.create_user("ann@example.com")
    group = scim.post("/Groups", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Staff",
                                  "members": [{"value": user["id"]}]}).json()
    patch = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
             "Operations": [{"op": "replace", "path": "displayName", "value": "Ann B."}]}
    assert scim.patch(f"/Users/{user['id']}", patch).status_code == 200
    foreign = other_scim.create_user("hank@example.com")
    browser.login(admin, ADMIN_PASSWORD)

    page = browser.http.get(f"/admin/tenants/acme/users/{user['id']}")

    assert page.status_code == 200 and "<h1>ann@example.com</h1>" in page.text and "Ann B." in page.text
    history = page.text[page.text.index('id="history"'):]
    actions = re.findall(r"<tr><td>[^<]*</td><td>[^<]*</td><td>(\w+)</td>", history)
    assert actions == ["patch", "create"]  # newest first
    assert "displayName" in history
    relations = page.text[page.text.index('id="relations"'):page.text.index('id="history"')]
    assert "Groups (1)" in relations and f'href="/admin/tenants/acme/groups/{group["id"]}">Staff</a>' in relations
    group_page = browser.http.get(f"/admin/tenants/acme/groups/{group['id']}").text
    assert "Members (1)" in group_page and f'href="/admin/tenants/acme/users/{user["id"]}"' in group_page
    assert browser.http.get(f"/admin/tenants/acme/users/{foreign['id']}").status_code == 404
    assert browser.http.get(f"/admin/tenants/acme/things/{user['id']}").status_code == 404


def test_tombstones_are_listed(browser: Browser, admin: str, scim: ScimClient) -> None:
    user = scim.create_user("gone@example.com")
    scim.create_user("stays@example.com")
    assert scim.delete(f"/Users/{user['id']}").status_code == 204
    browser.login(admin, ADMIN_PASSWORD)

    page = browser.http.get("/admin/tenants/acme/tombstones").text

    assert "gone@example.com" in page and user["id"] in page and "stays@example.com" not in page
    assert "1 in all" in page


def test_an_unknown_tenant_is_404(browser: Browser, admin: str) -> None:
    browser.login(admin, ADMIN_PASSWORD)

    for path in ("/admin/tenants/nope", "/admin/tenants/nope/users", "/admin/tenants/nope/tombstones"):
        assert browser.http.get(path).status_code == 404, path


# -- credentials --------------------------------------------------------------------------------------


def test_a_new_client_secret_is_shown_once_works_and_is_never_stored_or_shown_again(
        browser: Browser, admin: str, scim: ScimClient, db: Database) -> None:
    browser.login(admin, ADMIN_PASSWORD)

    created = browser.post_form("/admin/tenants/acme", "/admin/tenants/acme/clients", scope="scim")

    assert created.status_code == 200 and "Shown only this once" in created.text
    secret = secret_of(created.text)
    client_id = re.search(r'<code id="client-id">([^<]+)</code>', created.text).group(1)  # type: ignore[union-attr]
    assert created.headers["cache-control"] == "no-store"
    token = access_token(scim.http, "acme", client_id, secret)
    assert token.status_code == 200
    assert ScimClient(scim.http, "acme", token.json()["access_token"]).get("/Users").status_code == 200
    for path in ("/admin/tenants/acme", "/admin/tenants", "/admin", "/admin/tenants/acme/users"):
        assert secret not in browser.http.get(path).text, path
    assert secret not in str(browser.http.cookies)
    with db.read() as conn:
        stored = [row for table in (oauth_client_secrets, credentials) for row in conn.execute(sa.select(table))]
    assert stored and all(secret not in str(tuple(row)) for row in stored)
    assert ("console:alice", "create", "OAuthClient") in tenant_events(db, "acme")


def test_rotating_a_client_adds_a_secret_and_revoking_the_old_one_refuses_it(
        browser: Browser, admin: str, scim: ScimClient, db: Database, settings: Settings) -> None:
    old = ClientService(db, settings).create_client("acme")
    old_access = access_token(scim.http, "acme", old.client_id, old.client_secret).json()["access_token"]
    browser.login(admin, ADMIN_PASSWORD)

    rotated = browser.post_form("/admin/tenants/acme", f"/admin/tenants/acme/clients/{old.client_id}/rotate")
    new_secret = secret_of(rotated.text)
    assert new_secret != old.client_secret
    assert access_token(scim.http, "acme", old.client_id, old.client_secret).status_code == 200  # both live
    assert access_token(scim.http, "acme", old.client_id, new_secret).status_code == 200

    revoked = browser.post_form("/admin/tenants/acme", f"/admin/tenants/acme/clients/{old.client_id}/revoke",
                                secret_id=old.secret_id)

    assert revoked.status_code == 303
    assert access_token(scim.http, "acme", old.client_id, old.client_secret).status_code == 401
    assert ScimClient(scim.http, "acme", old_access).get("/Users").status_code == 401
    assert access_token(scim.http, "acme", old.client_id, new_secret).status_code == 200
    assert tenant_events(db, "acme")[-2:] == [("console:alice", "rotate", "OAuthClient"),
                                              ("console:alice", "revoke", "OAuthClient")]


def test_tokens_are_created_replaced_and_revoked_and_the_old_ones_are_refused_by_the_scim_api(
        browser: Browser, admin: str, scim: ScimClient, issued: Any, db: Database) -> None:
    browser.login(admin, ADMIN_PASSWORD)

    created = browser.post_form("/admin/tenants/acme", "/admin/tenants/acme/tokens", expires_in_days="30")
    new = ScimClient(scim.http, "acme", secret_of(created.text))
    assert new.get("/Users").status_code == 200 and "(expires " in created.text

    replaced = browser.post_form("/admin/tenants/acme", f"/admin/tenants/acme/tokens/{issued.credential_id}/rotate")
    replacement = ScimClient(scim.http, "acme", secret_of(replaced.text))
    assert scim.get("/Users").status_code == 401  # the replaced token stops at once
    assert replacement.get("/Users").status_code == 200

    token_id = re.search(r"Token id</dt><dd>(\w+)", created.text).group(1)  # type: ignore[union-attr]
    revoked = browser.post_form("/admin/tenants/acme", f"/admin/tenants/acme/tokens/{token_id}/revoke")

    assert revoked.status_code == 303
    assert new.get("/Users").status_code == 401 and replacement.get("/Users").status_code == 200
    assert secret_of(replaced.text) not in browser.http.get("/admin/tenants/acme").text
    assert [e[1:] for e in tenant_events(db, "acme") if e[0] == "console:alice"] == [
        ("create", "Token"), ("rotate", "Token"), ("revoke", "Token")]


def test_a_bad_value_or_nothing_to_revoke_is_said_plainly_and_changes_nothing(
        browser: Browser, admin: str, issued: Any, db: Database) -> None:
    browser.login(admin, ADMIN_PASSWORD)

    bad_days = browser.post_form("/admin/tenants/acme", "/admin/tenants/acme/tokens", expires_in_days="soon")
    no_token = browser.post_form("/admin/tenants/acme", "/admin/tenants/acme/tokens/nothing/revoke")
    too_long = browser.post_form("/admin/tenants/acme", "/admin/tenants/acme/clients", secret_days="5000")
    overflow = browser.post_form("/admin/tenants/acme", "/admin/tenants/acme/tokens", expires_in_days="99999999")

    assert bad_days.status_code == no_token.status_code == too_long.status_code == overflow.status_code == 400
    assert "whole number" in bad_days.text and "No live token" in no_token.text and "1095" in too_long.text
    assert [t["id"] for t in TenantService(db).list_tokens("acme")] == [issued.credential_id]
    assert ClientService(db, Settings()).list_clients("acme") == []
    with pytest.raises(TenantError, match="1 to 36500 days"):  # the service's own bound (the CLI's too)
        TenantService(db).create_token("acme", expires_in_days=99_999_999)


def test_an_admin_creates_a_tenant_whose_first_token_is_shown_once_and_works(
        browser: Browser, admin: str, http: TestClient, db: Database) -> None:
    browser.login(admin, ADMIN_PASSWORD)

    created = browser.post_form("/admin/tenants", "/admin/tenants", name="initech")
    refused = browser.post_form("/admin/tenants", "/admin/tenants", name="Not A Name")

    assert created.status_code == 200 and "Tenant initech created" in created.text
    token = secret_of(created.text)
    assert ScimClient(http, "initech", token).get("/Users").status_code == 200
    listing = browser.http.get("/admin/tenants").text
    assert 'href="/admin/tenants/initech"' in listing and token not in listing
    assert refused.status_code == 400 and "lower-case" in refused.text
    assert [t["name"] for t in TenantService(db).list_tenants()] == ["initech"]
    assert tenant_events(db, "initech") == [("console:alice", "create", "Tenant"), ("console:alice", "create", "Token")]


def test_an_admin_sets_retention_and_legal_hold_as_audit_events_of_the_tenant(
        browser: Browser, admin: str, issued: Any, db: Database) -> None:
    browser.login(admin, ADMIN_PASSWORD)

    assert browser.post_form("/admin/tenants/acme", "/admin/tenants/acme/retention", days="30").status_code == 303
    assert browser.post_form("/admin/tenants/acme", "/admin/tenants/acme/hold", on="1").status_code == 303
    bad = browser.post_form("/admin/tenants/acme", "/admin/tenants/acme/retention", days="forever")

    tenant = TenantService(db).list_tenants()[0]
    assert (tenant["retention_days"], bool(tenant["legal_hold"])) == (30, True)
    assert bad.status_code == 400 and "whole number" in bad.text
    assert tenant_events(db, "acme")[-2:] == [("console:alice", "retention", "Tenant"),
                                              ("console:alice", "hold", "Tenant")]
    page = browser.http.get("/admin/tenants/acme").text
    assert "<dd>30 days</dd>" in page and "Lift the legal hold" in page


# -- who may change what ---------------------------------------------------------------------------------


def test_a_viewer_sees_the_tenant_without_forms_and_every_forged_post_is_refused(
        browser: Browser, viewer: str, issued: Any, scim: ScimClient, db: Database) -> None:
    browser.login(viewer, VIEWER_PASSWORD)
    page = browser.http.get("/admin/tenants/acme")
    assert page.status_code == 200 and issued.credential_id in page.text
    assert "/tokens\"" not in page.text and "/revoke" not in page.text and "/retention" not in page.text
    token = csrf_of(page.text)  # the logout form's: a valid token of this session

    for action, fields in (("/admin/tenants/acme/tokens", {}), ("/admin/tenants/acme/clients", {}),
                           (f"/admin/tenants/acme/tokens/{issued.credential_id}/revoke", {}),
                           (f"/admin/tenants/acme/tokens/{issued.credential_id}/rotate", {}),
                           ("/admin/tenants/acme/retention", {"days": "1"}), ("/admin/tenants/acme/hold", {"on": "1"}),
                           ("/admin/tenants", {"name": "viewers-tenant"})):
        refused = browser.http.post(action, data={"csrf_token": token, **fields}, follow_redirects=False)
        assert refused.status_code == 403, action

    assert scim.get("/Users").status_code == 200
    assert [t["id"] for t in TenantService(db).list_tokens("acme")] == [issued.credential_id]
    tenant = TenantService(db).list_tenants()
    assert [t["name"] for t in tenant] == ["acme"] and tenant[0]["retention_days"] is None
    assert not tenant[0]["legal_hold"]


def test_an_admins_post_without_the_csrf_token_is_refused(browser: Browser, admin: str, issued: Any,
                                                          scim: ScimClient, db: Database) -> None:
    browser.login(admin, ADMIN_PASSWORD)

    missing = browser.http.post(f"/admin/tenants/acme/tokens/{issued.credential_id}/revoke", follow_redirects=False)
    forged = browser.http.post("/admin/tenants/acme/clients", data={"csrf_token": "forged"}, follow_redirects=False)

    assert missing.status_code == forged.status_code == 403
    assert scim.get("/Users").status_code == 200
    assert ClientService(db, Settings()).list_clients("acme") == []


# -- tenant admins -----------------------------------------------------------------------------------------


def test_a_tenant_admin_is_sent_to_its_tenant_and_manages_its_credentials_but_not_retention(
        browser: Browser, tenant_admin: str, scim: ScimClient, db: Database) -> None:
    assert browser.login(tenant_admin, TENANT_ADMIN_PASSWORD).status_code == 303

    home = browser.http.get("/admin", follow_redirects=False)
    assert home.status_code == 303 and home.headers["location"] == "/admin/tenants/acme"
    page = browser.http.get("/admin/tenants/acme").text
    assert "/admin/tenants/acme/tokens" in page and "/admin/tenants/acme/retention" not in page
    assert 'href="/admin/tenants"' not in page and ">Overview</a>" not in page  # no operator-wide links

    created = browser.post_form("/admin/tenants/acme", "/admin/tenants/acme/tokens")
    assert created.status_code == 200
    assert ScimClient(scim.http, "acme", secret_of(created.text)).get("/Users").status_code == 200
    retention = browser.post_form("/admin/tenants/acme", "/admin/tenants/acme/retention", days="1")
    assert retention.status_code == 403
    assert TenantService(db).list_tenants()[0]["retention_days"] is None
    assert ("console:tim", "create", "Token") in tenant_events(db, "acme")


def test_a_tenant_admin_gets_404_for_every_other_tenant_job_and_operator_wide_page(
        browser: Browser, tenant_admin: str, other_scim: ScimClient, job: Job) -> None:
    hank = other_scim.create_user("hank@example.com")
    browser.login(tenant_admin, TENANT_ADMIN_PASSWORD)
    nowhere = browser.http.get("/admin/tenants/no-such-tenant")

    for path in ("/admin/tenants/globex", "/admin/tenants/globex/users", f"/admin/tenants/globex/users/{hank['id']}",
                 "/admin/tenants/globex/groups", "/admin/tenants/globex/tombstones", "/admin/tenants",
                 f"/admin/jobs/{job.name}", "/admin/audit", "/admin/tenants/GLOBEX", "/admin/tenants/acme/../globex"):
        response = browser.http.get(path, follow_redirects=False)
        assert response.status_code == 404, path
        assert "globex" not in response.text.lower() and "hank" not in response.text
    assert browser.http.get("/admin/tenants/globex").text == nowhere.text.replace("no-such-tenant", "globex") or \
        browser.http.get("/admin/tenants/globex").text.split("<main>")[1] == nowhere.text.split("<main>")[1]
    poll = browser.http.get(f"/admin/jobs/{job.name}/progress")
    assert poll.status_code == 404 and "state" not in poll.json()


def test_a_tenant_admins_forged_posts_to_another_tenant_are_404_and_change_nothing(
        browser: Browser, tenant_admin: str, other_scim: ScimClient, job: Job, db: Database) -> None:
    browser.login(tenant_admin, TENANT_ADMIN_PASSWORD)
    token = csrf_of(browser.http.get("/admin/tenants/acme").text)  # a valid token of this session
    globex_token = TenantService(db).list_tokens("globex")[0]["id"]

    for action in ("/admin/tenants/globex/tokens", "/admin/tenants/globex/clients",
                   f"/admin/tenants/globex/tokens/{globex_token}/revoke",
                   f"/admin/tenants/globex/tokens/{globex_token}/rotate", "/admin/tenants/globex/retention",
                   "/admin/tenants", f"/admin/jobs/{job.name}/pause"):
        response = browser.http.post(action, data={"csrf_token": token, "days": "1", "name": "x"},
                                     follow_redirects=False)
        assert response.status_code == 404, action

    assert other_scim.get("/Users").status_code == 200
    assert [t["id"] for t in TenantService(db).list_tokens("globex")] == [globex_token]
    assert ClientService(db, Settings()).list_clients("globex") == []
    assert [t["name"] for t in TenantService(db).list_tenants()] == ["acme", "globex"]


def test_a_page_added_without_opting_in_is_closed_to_tenant_admins(
        settings: Settings, db: Database, tenant_admin: str, admin: str) -> None:
    """Deny by default: a page someone adds later, even under /tenants/{name}, answers a tenant
    admin 404 unless it says ``tenant_admin="own"``."""
    console = Console(settings, db)

    async def secret_page(request: Request, *_: Any) -> Response:
        return PlainTextResponse(f"operator-only page of {request.path_params['name']}")

    app = console_app(console)
    app.router.routes.insert(0, Route("/tenants/{name}/later", console.page(secret_page), methods=["GET"]))
    app.router.routes.insert(0, Route("/tenants/{name}/opted", console.page(secret_page, tenant_admin="own"),
                                      methods=["GET"]))

    def client(name: str, password: str) -> TestClient:
        http = TestClient(app, base_url="https://scim.example.test")
        page = http.get("/login")
        assert http.post("/login", data={"csrf_token": csrf_of(page.text), "username": name,
                                         "password": password}, follow_redirects=False).status_code == 303
        return http

    with client(tenant_admin, TENANT_ADMIN_PASSWORD) as tim, client(admin, ADMIN_PASSWORD) as alice:
        assert tim.get("/tenants/acme/later").status_code == 404
        assert tim.get("/tenants/acme/opted").status_code == 200
        assert alice.get("/tenants/acme/later").status_code == 200
