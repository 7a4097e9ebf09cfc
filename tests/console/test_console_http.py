"""The console over HTTP (Starlette's TestClient, the service's real app): who may log in, what
a session is worth and for how long, CSRF, roles, and what the pages show. Every test runs on
SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from starlette.testclient import TestClient

from identity_sync.config import Settings
from identity_sync.engine.jobs import Job, JobService
from identity_sync.engine.tables import engine_cycles
from identity_sync.service.operators import NO_TENANT, OperatorService
from identity_sync.storage.db import Database
from identity_sync.storage.tables import audit_events, operators
from identity_sync.web.app import create_app
from tests.conftest import ScimClient
from tests.console.conftest import ADMIN_PASSWORD, VIEWER_PASSWORD, Browser, console_of, csrf_of


def console_events(db: Database) -> list[tuple[str, str, str]]:
    """(actor, action, resource type) of the audit events of no tenant, oldest first."""
    with db.read() as conn:
        rows = conn.execute(sa.select(audit_events).where(audit_events.c.tenant_id == NO_TENANT)
                            .order_by(audit_events.c.id))
        return [(r.actor, r.action, r.resource_type) for r in rows]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


# -- logging in --------------------------------------------------------------------------------


def test_the_login_page_is_a_plain_form_with_username_password_and_a_csrf_token(browser: Browser) -> None:
    page = browser.http.get("/admin/login")

    assert page.status_code == 200
    assert 'name="username"' in page.text and 'name="password"' in page.text and 'type="password"' in page.text
    assert len(csrf_of(page.text)) >= 32
    assert 'method="post" action="/admin/login"' in page.text


def test_an_operator_logs_in_and_sees_the_overview_and_the_login_is_an_audit_event(
        browser: Browser, admin: str, db: Database) -> None:
    assert browser.http.get("/admin", follow_redirects=False).headers["location"] == "/admin/login"

    response = browser.login(admin, ADMIN_PASSWORD)

    assert response.status_code == 303 and response.headers["location"] == "/admin"
    overview = browser.http.get("/admin")
    assert overview.status_code == 200 and "<h1>Overview</h1>" in overview.text
    assert "alice" in overview.text and "Log out" in overview.text
    trailing = browser.http.get("/admin/", follow_redirects=False)  # the same page, not a redirect loop
    assert trailing.status_code == 200 and "<h1>Overview</h1>" in trailing.text
    assert console_events(db)[-1] == ("console:alice", "login", "Operator")


def test_a_database_that_is_down_gets_the_try_again_page_with_retry_after(
        browser: Browser, admin: str, app: Any, monkeypatch: Any) -> None:
    """Storage's DatabaseUnavailable reaches the console as a 503 page saying to try again."""
    from identity_sync.storage.errors import DatabaseUnavailable

    browser.login(admin, ADMIN_PASSWORD)

    def down(*_: Any, **__: Any) -> Any:
        raise DatabaseUnavailable("connection refused", retry_after=4)

    with monkeypatch.context() as patch:
        patch.setattr(console_of(app).data, "overview", down)
        response = browser.http.get("/admin")
    assert response.status_code == 503 and response.headers["retry-after"] == "4"
    assert "cannot be reached" in response.text and "connection refused" not in response.text
    assert browser.http.get("/admin").status_code == 200  # back as soon as the database is


def test_a_wrong_password_and_an_unknown_name_get_the_same_answer_and_both_are_audited(
        browser: Browser, admin: str, db: Database) -> None:
    wrong = browser.login(admin, "not the password at all")
    unknown = browser.login("mallory", "not the password at all")

    assert wrong.status_code == unknown.status_code == 401
    assert "Wrong name or password." in wrong.text and "Wrong name or password." in unknown.text
    assert browser.http.get("/admin", follow_redirects=False).status_code == 303  # still not logged in
    assert console_events(db)[-2:] == [("console:alice", "login-failed", "Operator"),
                                       ("console:unknown", "login-failed", "Operator")]


def test_a_disabled_operator_cannot_log_in_and_their_open_session_ends(
        browser: Browser, app: Any, admin: str, operators: OperatorService) -> None:
    assert browser.login(admin, ADMIN_PASSWORD).status_code == 303
    assert browser.http.get("/admin").status_code == 200

    operators.disable(admin)

    assert browser.http.get("/admin", follow_redirects=False).headers["location"] == "/admin/login"
    assert browser.login(admin, ADMIN_PASSWORD).status_code == 401


def test_a_new_password_ends_the_sessions_opened_with_the_old_one(
        browser: Browser, admin: str, db: Database) -> None:
    browser.login(admin, ADMIN_PASSWORD)
    assert browser.http.get("/admin").status_code == 200

    with db.write() as conn:  # what a password change does (argon2 hashes are salted: always new)
        conn.execute(sa.update(operators).where(operators.c.name == admin).values(
            password_hash=PasswordHasher().hash("a brand new password")))

    assert browser.http.get("/admin", follow_redirects=False).headers["location"] == "/admin/login"


def test_after_five_failures_the_name_is_refused_for_15_minutes_even_with_the_right_password(
        browser: Browser, admin: str, viewer: str, db: Database) -> None:
    for _ in range(5):
        assert browser.login(admin, "wrong password, again").status_code == 401

    refused = browser.login(admin, ADMIN_PASSWORD)

    assert refused.status_code == 429
    assert 800 < int(refused.headers["retry-after"]) <= 900
    assert browser.http.get("/admin", follow_redirects=False).status_code == 303
    with db.read() as conn:
        last = conn.execute(sa.select(audit_events).order_by(audit_events.c.id.desc()).limit(1)).one()
    assert (last.actor, last.action, last.attributes) == ("console:alice", "login-failed", '["locked"]')
    assert browser.login(viewer, VIEWER_PASSWORD).status_code == 303  # another name is not locked out


def test_the_lockout_ends_after_15_minutes(browser: Browser, app: Any, admin: str) -> None:
    clock = FakeClock()
    console_of(app).limiter.clock = clock
    for _ in range(5):
        browser.login(admin, "wrong password, again")
    assert browser.login(admin, ADMIN_PASSWORD).status_code == 429

    clock.now += 15 * 60 + 1

    assert browser.login(admin, ADMIN_PASSWORD).status_code == 303


# -- cookies, sessions, CSRF -------------------------------------------------------------------


def test_the_session_cookie_is_host_only_secure_httponly_and_samesite(browser: Browser, admin: str) -> None:
    response = browser.login(admin, ADMIN_PASSWORD)

    cookie = response.headers["set-cookie"]
    assert cookie.startswith("__Host-idsync-console=")
    for flag in ("HttpOnly", "Secure", "SameSite=lax", "Path=/"):
        assert flag.lower() in cookie.lower(), cookie
    assert ADMIN_PASSWORD not in cookie


def test_without_secure_cookies_the_cookie_has_no_host_prefix_and_no_secure_flag(
        settings: Settings, db: Database, admin: str) -> None:
    app = create_app(settings.model_copy(update={"console_secure_cookies": False}), db)
    with TestClient(app, base_url="http://127.0.0.1:8000") as http:
        response = Browser(http).login(admin, ADMIN_PASSWORD)

        cookie = response.headers["set-cookie"]
        assert cookie.startswith("idsync-console=") and "secure" not in cookie.lower()
        assert "httponly" in cookie.lower()
        assert http.get("/admin").status_code == 200


def test_a_login_post_without_the_csrf_token_is_refused(browser: Browser, admin: str) -> None:
    browser.http.get("/admin/login")  # the anonymous cookie is there, the token is not posted

    missing = browser.http.post("/admin/login", data={"username": admin, "password": ADMIN_PASSWORD},
                                follow_redirects=False)
    forged = browser.http.post("/admin/login", data={"csrf_token": "guessed", "username": admin,
                                                     "password": ADMIN_PASSWORD}, follow_redirects=False)

    assert missing.status_code == forged.status_code == 403
    assert browser.http.get("/admin", follow_redirects=False).status_code == 303


def test_logout_needs_the_csrf_token_then_ends_the_session_and_is_audited(
        browser: Browser, admin: str, db: Database) -> None:
    browser.login(admin, ADMIN_PASSWORD)

    assert browser.http.post("/admin/logout", follow_redirects=False).status_code == 403
    assert browser.http.get("/admin").status_code == 200  # a forged logout changed nothing

    response = browser.post_form("/admin", "/admin/logout")

    assert response.status_code == 303 and response.headers["location"] == "/admin/login"
    assert browser.http.get("/admin", follow_redirects=False).headers["location"] == "/admin/login"
    assert console_events(db)[-1] == ("console:alice", "logout", "Operator")


def test_the_session_expires_after_the_idle_timeout_but_each_page_view_restarts_it(
        browser: Browser, app: Any, admin: str) -> None:
    clock = FakeClock()
    console_of(app).clock = clock
    browser.login(admin, ADMIN_PASSWORD)

    clock.now += 29 * 60
    assert browser.http.get("/admin").status_code == 200
    clock.now += 29 * 60  # 58 minutes after the login, 29 after the last page
    assert browser.http.get("/admin").status_code == 200
    clock.now += 30 * 60 + 1

    expired = browser.http.get("/admin", follow_redirects=False)
    assert expired.status_code == 303 and expired.headers["location"] == "/admin/login"


def test_the_live_progress_poll_does_not_keep_an_idle_session_alive(
        browser: Browser, app: Any, admin: str, job: Job) -> None:
    clock = FakeClock()
    console_of(app).clock = clock
    browser.login(admin, ADMIN_PASSWORD)

    for _ in range(4):
        clock.now += 10 * 60
        poll = browser.http.get(f"/admin/jobs/{job.name}/progress")
        assert poll.status_code in (200, 401)
        assert "set-cookie" not in poll.headers

    assert poll.status_code == 401 and poll.json() == {"error": "not logged in"}  # 40 minutes without a page


def test_a_session_cookie_signed_with_another_key_is_not_a_session(
        browser: Browser, admin: str, settings: Settings) -> None:
    browser.login(admin, ADMIN_PASSWORD)
    (settings.data_dir / "console.key").write_bytes(b"\x01" * 32)  # what another service would sign with
    other_db = Database(settings.resolved_database_url())  # disposed: the app's lifespan writes at its end
    app = create_app(settings, other_db)

    with TestClient(app, base_url="https://scim.example.test", cookies=browser.http.cookies) as other:
        assert other.get("/admin", follow_redirects=False).status_code == 303
    other_db.dispose()


def test_the_key_file_is_owner_only(browser: Browser, admin: str, settings: Settings) -> None:
    browser.login(admin, ADMIN_PASSWORD)

    key = settings.data_dir / "console.key"
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_bytes()) == 32


# -- roles and job actions ---------------------------------------------------------------------


def test_a_viewer_sees_a_job_but_cannot_pause_it(browser: Browser, viewer: str, job: Job, db: Database,
                                                  settings: Settings) -> None:
    browser.login(viewer, VIEWER_PASSWORD)
    page = browser.http.get(f"/admin/jobs/{job.name}")
    assert page.status_code == 200 and "Pause</button>" not in page.text  # no button it could not use

    refused = browser.post_form(f"/admin/jobs/{job.name}", f"/admin/jobs/{job.name}/pause")

    assert refused.status_code == 403 and "viewer" in refused.text
    assert JobService(db, settings).get(job.name).state == "active"


def test_an_admin_pauses_and_starts_a_job_and_each_is_an_audit_event(
        browser: Browser, admin: str, job: Job, db: Database, settings: Settings) -> None:
    browser.login(admin, ADMIN_PASSWORD)
    page = f"/admin/jobs/{job.name}"

    paused = browser.post_form(page, f"{page}/pause")
    assert paused.status_code == 303 and paused.headers["location"] == page
    assert JobService(db, settings).get(job.name).state == "paused"
    assert "Start</button>" in browser.http.get(page).text

    assert browser.post_form(page, f"{page}/start").status_code == 303
    assert JobService(db, settings).get(job.name).state == "active"
    assert console_events(db)[-2:] == [("console:alice", "pause", "Job"), ("console:alice", "start", "Job")]


def test_a_job_action_without_the_csrf_token_is_refused(browser: Browser, admin: str, job: Job, db: Database,
                                                        settings: Settings) -> None:
    browser.login(admin, ADMIN_PASSWORD)

    response = browser.http.post(f"/admin/jobs/{job.name}/pause", follow_redirects=False)

    assert response.status_code == 403
    assert JobService(db, settings).get(job.name).state == "active"


# -- pages -------------------------------------------------------------------------------------


def test_the_overview_shows_each_tenant_with_its_user_and_group_counts_and_jobs_by_state(
        browser: Browser, admin: str, scim: ScimClient, job: Job) -> None:
    for name in ("ann", "bob", "cy"):
        scim.create_user(name)
    group = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Staff"}
    assert scim.post("/Groups", group).status_code == 201
    browser.login(admin, ADMIN_PASSWORD)

    page = browser.http.get("/admin").text

    row = page[page.index('<td><a href="/admin/tenants/acme">acme</a></td>'):].split("</tr>")[0]
    assert [cell.split(">")[-1] for cell in row.split("</td>")[2:5]] == ["3", "1", "4"]  # users, groups, changes
    assert "SCIM changes per hour</strong> — 4 in 24 h" in page
    assert '<span class="state active">active</span> 1' in page  # one job, active
    assert f'href="/admin/jobs/{job.name}"' in page


def test_the_job_page_shows_the_running_cycles_progress_and_the_poll_gives_it_as_json(
        browser: Browser, admin: str, job: Job, db: Database) -> None:
    with db.write() as conn:
        conn.execute(sa.insert(engine_cycles).values(
            id="c1", job_id=job.id, kind="initial", state="running", started_at="2026-12-05T10:00:00.000000Z",
            counts={"progress": {"phase": "users", "done": 30, "total": 120, "seconds": 4.2}}))
    browser.login(admin, ADMIN_PASSWORD)

    page = browser.http.get(f"/admin/jobs/{job.name}").text
    progress = browser.http.get(f"/admin/jobs/{job.name}/progress").json()

    assert '<progress id="progress-bar" max="120" value="30">' in page
    assert "initial cycle, users: 30 of 120" in page
    assert progress == {"job": job.name, "state": "active", "running": True, "cycle": "c1", "kind": "initial",
                        "started_at": "2026-12-05T10:00:00.000000Z", "phase": "users", "done": 30, "total": 120,
                        "percent": 25}


def test_a_job_without_a_running_cycle_has_no_progress_and_an_unknown_job_is_404(
        browser: Browser, admin: str, job: Job) -> None:
    browser.login(admin, ADMIN_PASSWORD)

    assert browser.http.get(f"/admin/jobs/{job.name}/progress").json() == {
        "job": job.name, "state": "active", "running": False}
    assert browser.http.get("/admin/jobs/no-such-job").status_code == 404
    assert browser.http.get("/admin/jobs/no-such-job/progress").status_code == 404


def test_what_the_pages_show_is_html_escaped(browser: Browser, admin: str, job: Job, db: Database,
                                             settings: Settings) -> None:
    JobService(db, settings).update(job.name, target_url="https://target.example.test/<script>alert(1)</script>")
    browser.login(admin, ADMIN_PASSWORD)

    page = browser.http.get(f"/admin/jobs/{job.name}").text

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page


def test_pages_forbid_inline_scripts_framing_and_caching(browser: Browser, admin: str) -> None:
    browser.login(admin, ADMIN_PASSWORD)

    for path in ("/admin", "/admin/login"):
        response = browser.http.get(path)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "<script>" not in response.text  # scripts come from files only
    assert browser.http.get("/admin/static/console.js").status_code == 200


def test_the_console_turned_off_answers_404(settings: Settings, db: Database, admin: str) -> None:
    app = create_app(settings.model_copy(update={"console_enabled": False}), db)
    with TestClient(app, base_url="https://scim.example.test") as http:
        for path in ("/admin", "/admin/login", "/admin/static/console.css"):
            assert http.get(path, follow_redirects=False).status_code == 404
        assert http.post("/admin/login", data={"username": admin, "password": ADMIN_PASSWORD}).status_code == 404


def test_the_console_runs_next_to_scim_without_touching_it(http: TestClient, scim: ScimClient) -> None:
    assert scim.get("/Users").status_code == 200
    assert http.get("/scim/v2/acme/Users").status_code == 401  # SCIM still needs its bearer token
