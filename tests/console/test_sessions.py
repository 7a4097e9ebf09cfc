"""Server-side console sessions and the shared login limit (console/auth.py): a copied cookie dies
with logout, disabling and a password change; two app instances on one database (what ``serve
--workers 2`` and several nodes are) share sessions and the failed-login count. SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from starlette.testclient import TestClient

from identity_sync.config import Settings
from identity_sync.console.auth import ADDRESS_FAILURES_ALLOWED, digest
from identity_sync.service.operators import OperatorService
from identity_sync.storage.db import Database
from identity_sync.storage.tables import console_sessions
from identity_sync.web.app import create_app
from tests.console.conftest import ADMIN_PASSWORD, Browser, console_of, csrf_of
from tests.console.test_console_http import FakeClock


def _copy(browser: Browser, app: Any) -> TestClient:
    """Another client holding a copy of the browser's cookies (what a thief would hold)."""
    return TestClient(app, base_url="https://scim.example.test", cookies=dict(browser.http.cookies))


def _rows(db: Database) -> list[Any]:
    with db.read() as conn:
        return list(conn.execute(sa.select(console_sessions)))


def test_a_login_stores_a_session_row_keyed_by_a_digest_with_client_and_user_agent(
        browser: Browser, admin: str, db: Database) -> None:
    browser.http.headers["user-agent"] = "Firefox/200"
    browser.login(admin, ADMIN_PASSWORD)

    [row] = _rows(db)
    cookie = browser.http.cookies["__Host-idsync-console"]
    assert row.id not in cookie and len(row.id) == 64  # the cookie's id, hashed
    assert (row.client, row.user_agent, row.via) == ("testclient", "Firefox/200", "password")
    csrf = csrf_of(browser.http.get("/admin").text)
    assert row.csrf_digest == digest(csrf) and csrf not in row.csrf_digest


def test_logout_kills_a_copied_cookie(browser: Browser, app: Any, admin: str, db: Database) -> None:
    browser.login(admin, ADMIN_PASSWORD)
    with _copy(browser, app) as thief:
        assert thief.get("/admin").status_code == 200
        page = thief.get("/admin").text

        assert browser.post_form("/admin", "/admin/logout").status_code == 303

        assert thief.get("/admin", follow_redirects=False).headers["location"] == "/admin/login"
        refused = thief.post("/admin/logout", data={"csrf_token": csrf_of(page)}, follow_redirects=False)
        assert refused.status_code == 403
    assert _rows(db) == []


def test_disabling_an_operator_and_a_new_password_delete_their_sessions(
        browser: Browser, app: Any, admin: str, operators: OperatorService, db: Database) -> None:
    browser.login(admin, ADMIN_PASSWORD)
    operators.create("bob", "viewer", "bob's long password")
    other = Browser(TestClient(app, base_url="https://scim.example.test"))
    other.login("bob", "bob's long password")
    assert len(_rows(db)) == 2

    operators.set_password(admin, "a brand new password!")

    assert [row.operator_id for row in _rows(db)] == [operators.get("bob").id]
    assert browser.http.get("/admin", follow_redirects=False).status_code == 303
    assert browser.login(admin, ADMIN_PASSWORD).status_code == 401
    assert browser.login(admin, "a brand new password!").status_code == 303

    operators.disable("bob")
    assert other.http.get("/admin", follow_redirects=False).status_code == 303
    assert [row.operator_id for row in _rows(db)] == [operators.get(admin).id]


def test_a_cookie_with_a_guessed_session_id_is_not_a_session(browser: Browser, app: Any, admin: str) -> None:
    browser.login(admin, ADMIN_PASSWORD)
    sessions = console_of(app).sessions
    forged = sessions.serializer.dumps({"sid": "guessed-id", "csrf": "guessed-token"})  # even signed right

    with TestClient(app, base_url="https://scim.example.test", cookies={sessions.cookie: forged}) as other:
        assert other.get("/admin", follow_redirects=False).status_code == 303


def test_expired_sessions_are_deleted_at_the_next_login(browser: Browser, app: Any, admin: str,
                                                         db: Database) -> None:
    clock = FakeClock()
    console_of(app).clock = clock
    browser.login(admin, ADMIN_PASSWORD)
    clock.now += 31 * 60

    Browser(TestClient(app, base_url="https://scim.example.test")).login(admin, ADMIN_PASSWORD)

    assert [row.created_at for row in _rows(db)] == [clock.now]


def test_the_absolute_limit_ends_an_active_session_after_12_hours(browser: Browser, app: Any, admin: str) -> None:
    clock = FakeClock()
    console_of(app).clock = clock
    browser.login(admin, ADMIN_PASSWORD)
    for _ in range(24):  # 11 h 36 min of page views, never 30 minutes apart
        clock.now += 29 * 60
        assert browser.http.get("/admin").status_code == 200
    clock.now += 29 * 60

    assert browser.http.get("/admin", follow_redirects=False).headers["location"] == "/admin/login"


def test_two_app_instances_on_one_database_share_sessions_and_the_login_limit(
        settings: Settings, db: Database, admin: str) -> None:
    first, second = create_app(settings, Database(settings.resolved_database_url())), create_app(settings, db)
    with TestClient(first, base_url="https://scim.example.test") as one, \
            TestClient(second, base_url="https://scim.example.test") as two:
        a, b = Browser(one), Browser(two)
        for attempt in range(5):  # alternately on each "worker": 5 in all
            assert (a if attempt % 2 else b).login(admin, "wrong password, again").status_code == 401

        assert a.login(admin, ADMIN_PASSWORD).status_code == 429
        assert b.login(admin, ADMIN_PASSWORD).status_code == 429

        console_of(first).limiter.clock = console_of(second).limiter.clock = FakeClock()  # 15+ minutes on
        assert a.login(admin, ADMIN_PASSWORD).status_code == 303
        one.cookies, shared = dict(one.cookies), dict(one.cookies)
        two.cookies = shared  # the session opened by the first answers on the second
        assert two.get("/admin").status_code == 200
    first.state.db.dispose()


def test_one_address_trying_many_names_is_refused_whatever_the_name(browser: Browser, admin: str) -> None:
    for i in range(ADDRESS_FAILURES_ALLOWED):
        assert browser.login(f"user{i}", "spraying one password").status_code == 401

    refused = browser.login(admin, ADMIN_PASSWORD)  # a name never tried, the right password

    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 800


def test_a_success_clears_the_names_count_but_not_the_addresss(browser: Browser, admin: str) -> None:
    for _ in range(4):
        browser.login(admin, "wrong password, again")
    assert browser.login(admin, ADMIN_PASSWORD).status_code == 303
    browser.post_form("/admin", "/admin/logout")
    for _ in range(4):  # 4 more for the name: not locked (the 4 before were cleared)
        assert browser.login(admin, "wrong password, again").status_code == 401
    assert browser.login(admin, ADMIN_PASSWORD).status_code == 303
    browser.post_form("/admin", "/admin/logout")

    for i in range(ADDRESS_FAILURES_ALLOWED - 8):  # the address's 8 earlier failures still count
        browser.login(f"user{i}", "spraying")
    assert browser.login(admin, ADMIN_PASSWORD).status_code == 429
