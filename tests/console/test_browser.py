"""The console in a real browser: Playwright driving Debian's ``chromium`` (Playwright's own
browser downloads are not used) against ``identity-sync serve`` on a loopback port.

Skipped, with the reason, when Playwright or chromium is missing, unless
``IDSYNC_REQUIRE_BROWSER=1`` (CI sets it: .ci/run installs chromium). The tests take screenshots
of the login, overview and job pages; with ``IDSYNC_UPDATE_SCREENSHOTS=1`` they are copied to
docs/screenshots/ (the README shows them)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from identity_sync.config import Settings
from identity_sync.engine.jobs import Credentials, JobService
from identity_sync.engine.sources.base import SourceOptions
from identity_sync.engine.tables import engine_cycles
from identity_sync.service.operators import OperatorService
from identity_sync.service.tenants import TenantService
from identity_sync.storage.db import Database
from identity_sync.storage.tables import console_sessions
from identity_sync.web.app import create_app
from tests.conftest import ScimClient
from tests.console.conftest import ADMIN_PASSWORD, VIEWER_PASSWORD
from tests.pg import free_port
from tests.test_cli import _env, _stop, _wait_for_port

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
JOB = "hr-to-app"


def _browser_or_skip() -> tuple[Any, str]:
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright is not installed (pip install -r requirements-dev.lock)"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if reason is None and chromium is None:
        reason = "no chromium on PATH (Debian: apt-get install chromium)"
    if reason is not None:
        if os.environ.get("IDSYNC_REQUIRE_BROWSER") == "1":
            pytest.fail(f"IDSYNC_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    assert chromium is not None
    return sync_playwright, chromium


@dataclass(frozen=True)
class Served:
    url: str  # http://127.0.0.1:PORT
    db_url: str

    def __str__(self) -> str:
        return self.url


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, migrated_template: Path) -> Iterator[Served]:
    """``identity-sync serve`` over plain HTTP on 127.0.0.1 (so cookies without ``Secure``), on a
    database with two tenants, their users and groups (made through SCIM), operators and a job."""
    directory = tmp_path_factory.mktemp("console-browser")
    shutil.copy(migrated_template, directory / "identity-sync.db")
    url = f"sqlite:///{directory / 'identity-sync.db'}"
    db = Database(url)
    settings = Settings(database_url=url, data_dir=directory)
    tenants = TenantService(db)
    with TestClient(create_app(settings, db), base_url="http://127.0.0.1") as http:
        for tenant, people, groups in (("acme", ("ann", "bob", "cy", "dee", "eve"), ("Staff", "Admins")),
                                       ("globex", ("hank", "ivy"), ("Sales",))):
            scim = ScimClient(http, tenant, tenants.create_tenant(tenant).token)
            for name in people:
                scim.create_user(name)
            for group in groups:
                body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": group}
                assert scim.post("/Groups", body).status_code == 201
    OperatorService(db).create("alice", "admin", ADMIN_PASSWORD)
    OperatorService(db).create("victor", "viewer", VIEWER_PASSWORD)
    # A SCIM source (nothing listens there: the job never runs) rather than a CSV directory, whose
    # temporary path would show in the screenshots.
    job = JobService(db, settings).create(JOB, source="scim:https://hr.example.test/scim/v2",
                                          source_options=SourceOptions(token="not-a-real-token"),
                                          target_url="https://app.example.test/scim",
                                          credentials=Credentials(token="not-a-real-token"))
    with db.write() as conn:  # a cycle under way, as a running engine leaves it (engine/cycle.py)
        conn.execute(sa.insert(engine_cycles).values(
            id="cycle-1", job_id=job.id, kind="initial", state="running", started_at="2026-12-05T10:00:00.000000Z",
            counts={"progress": {"phase": "users", "done": 120, "total": 400, "seconds": 3.0}}))
    db.dispose()

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "identity_sync", "serve", "--port", str(port)],
                               env=_env(url, directory, IDSYNC_CONSOLE_SECURE_COOKIES="false",
                                        IDSYNC_PUBLIC_URL="https://scim.example.com"),  # Tenant URLs in screenshots
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, process)
        yield Served(f"http://127.0.0.1:{port}", url)
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    sync_playwright, executable = _browser_or_skip()
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where chromium's sandbox cannot start.
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(5_000)
    yield context.new_page()
    context.close()


def _screenshot(page: Any, name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1_000
    if os.environ.get("IDSYNC_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SCREENSHOTS / f"{name}.png")


def _log_in(page: Any, served: Served, name: str, password: str) -> None:
    page.goto(f"{served.url}/admin")
    assert page.url == f"{served.url}/admin/login"  # not logged in: sent to the form
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{served.url}/admin")


def test_an_admin_logs_in_through_the_form_and_sees_each_tenants_counts(page: Any, served: Served,
                                                                         tmp_path: Path) -> None:
    page.goto(f"{served.url}/admin/login")
    page.fill("input[name=username]", "alice")
    _screenshot(page, "login", tmp_path)

    _log_in(page, served, "alice", ADMIN_PASSWORD)

    assert page.inner_text("h1") == "Overview"
    rows = {row.inner_text().split("\t")[0]: row.inner_text().split("\t") for row in page.query_selector_all(
        "table.tenants tbody tr")}
    assert rows["acme"][2:4] == ["5", "2"] and rows["globex"][2:4] == ["2", "1"]  # users, groups
    assert page.query_selector_all("figure.chart svg rect.bar")  # the charts are drawn
    _screenshot(page, "overview", tmp_path)


def test_the_job_page_progress_bar_follows_the_running_cycle_live(page: Any, served: Served,
                                                                   tmp_path: Path) -> None:
    _log_in(page, served, "alice", ADMIN_PASSWORD)
    page.click(f"text={JOB}")
    page.wait_for_url(f"{served.url}/admin/jobs/{JOB}")
    assert page.get_attribute("#progress-bar", "value") == "120"
    _screenshot(page, "job", tmp_path)

    db = Database(served.db_url)
    with db.write() as conn:
        conn.execute(sa.update(engine_cycles).where(engine_cycles.c.id == "cycle-1").values(
            counts={"progress": {"phase": "groups", "done": 300, "total": 400, "seconds": 9.0}}))
    db.dispose()

    # console.js polls every 2 s; the page is not reloaded. (No wait_for_function: the page's
    # Content-Security-Policy refuses the eval it would need, as it should.)
    page.wait_for_selector("#progress-text:has-text('groups: 300 of 400 (75 %)')", timeout=6_000)
    assert page.get_attribute("#progress-bar", "value") == "300"


def test_a_viewer_sees_the_job_without_buttons_and_a_forged_pause_is_refused(page: Any, served: Served) -> None:
    _log_in(page, served, "victor", VIEWER_PASSWORD)
    page.goto(f"{served.url}/admin/jobs/{JOB}")

    assert page.query_selector("form[action$='/pause']") is None
    token = page.get_attribute("input[name=csrf_token]", "value")  # the logout form's: a valid token
    response = page.request.post(f"{served.url}/admin/jobs/{JOB}/pause", form={"csrf_token": token})
    assert response.status == 403
    page.reload()
    assert page.inner_text("h1 .state") == "active"


def test_an_admins_pause_without_the_csrf_token_is_refused(page: Any, served: Served) -> None:
    _log_in(page, served, "alice", ADMIN_PASSWORD)

    # What a form on another site could send: the browser adds the cookie, not the token.
    response = page.request.post(f"{served.url}/admin/jobs/{JOB}/pause", form={"csrf_token": "forged"})

    assert response.status == 403
    page.goto(f"{served.url}/admin/jobs/{JOB}")
    assert page.inner_text("h1 .state") == "active"


def test_without_its_session_cookie_the_browser_is_back_at_the_login_form(page: Any, served: Served) -> None:
    _log_in(page, served, "alice", ADMIN_PASSWORD)
    cookie = next(c for c in page.context.cookies() if c["name"] == "idsync-console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script can read it

    page.context.clear_cookies()
    page.goto(f"{served.url}/admin/jobs/{JOB}")

    assert page.url == f"{served.url}/admin/login"



def _backdate_sessions(served: Served, minutes: float) -> None:
    """What ``minutes`` without a page view leave in the session table: the server's clock is real,
    so the row's last use is moved into the past instead."""
    db = Database(served.db_url)
    with db.write() as conn:
        conn.execute(sa.update(console_sessions).values(seen_at=console_sessions.c.seen_at - minutes * 60))
    db.dispose()


def test_after_the_idle_timeout_the_next_page_is_the_login_form_and_an_old_form_is_refused(
        page: Any, served: Served) -> None:
    _log_in(page, served, "alice", ADMIN_PASSWORD)
    page.goto(f"{served.url}/admin/jobs/{JOB}")
    token = page.get_attribute("input[name=csrf_token]", "value")  # a form of the page, still on screen

    _backdate_sessions(served, 31)  # the default idle timeout is 30 minutes

    response = page.request.post(f"{served.url}/admin/jobs/{JOB}/pause", form={"csrf_token": token})
    assert response.status == 403 and "Your session has ended" in response.text()
    page.goto(f"{served.url}/admin/jobs/{JOB}")
    assert page.url == f"{served.url}/admin/login"
    page.goto(f"{served.url}/admin/jobs/{JOB}")  # and stays there: nothing of the session is left
    assert page.url == f"{served.url}/admin/login"


def test_a_session_used_within_the_idle_timeout_stays_open(page: Any, served: Served) -> None:
    _log_in(page, served, "alice", ADMIN_PASSWORD)
    _backdate_sessions(served, 29)

    page.goto(f"{served.url}/admin/jobs/{JOB}")

    assert page.url == f"{served.url}/admin/jobs/{JOB}"


def test_logging_out_ends_the_session_for_a_copied_cookie_too(page: Any, served: Served, chromium: Any) -> None:
    _log_in(page, served, "alice", ADMIN_PASSWORD)
    copied = chromium.new_context()
    copied.add_cookies(page.context.cookies())
    other = copied.new_page()
    other.goto(f"{served.url}/admin")
    assert other.url == f"{served.url}/admin"  # the copy works while the session lives

    page.click("form[action$='/logout'] button")
    page.wait_for_url(f"{served.url}/admin/login")

    other.goto(f"{served.url}/admin")
    assert other.url == f"{served.url}/admin/login"
    copied.close()
