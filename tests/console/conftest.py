"""The console's fixtures: operators of each role, a job to look at, and a browser-like client
that logs in through the form (the CSRF token read from the page, as a browser would post it)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from identity_sync.config import Settings
from identity_sync.console.routes import Console
from identity_sync.engine.jobs import Credentials, Job, JobService
from identity_sync.service.operators import OperatorService
from identity_sync.storage.db import Database
from tests.engine.directory import user, write_directory

ADMIN_PASSWORD = "correct horse battery staple"
VIEWER_PASSWORD = "viewer password, long enough"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "every form carries the CSRF token"
    return found.group(1)


def console_of(app: Any) -> Console:
    """The console mounted in the service's app (to set its clock)."""
    mount = next(route for route in app.routes if getattr(route, "path", None) == "/admin" and hasattr(route, "app")
                 and hasattr(route.app, "state"))
    return mount.app.state.console


class Browser:
    """A TestClient that keeps cookies, logs in through the form and posts forms with the CSRF
    token of the page they are on."""

    def __init__(self, http: TestClient) -> None:
        self.http = http

    def login(self, name: str, password: str) -> Any:
        page = self.http.get("/admin/login")
        assert page.status_code == 200
        return self.http.post("/admin/login", data={"csrf_token": csrf_of(page.text), "username": name,
                                                    "password": password}, follow_redirects=False)

    def post_form(self, page_path: str, action: str, **fields: str) -> Any:
        """POST ``action`` with the CSRF token of ``page_path`` (as a form on that page would)."""
        page = self.http.get(page_path)
        assert page.status_code == 200, page.text
        return self.http.post(action, data={"csrf_token": csrf_of(page.text), **fields}, follow_redirects=False)


@pytest.fixture
def operators(db: Database) -> OperatorService:
    return OperatorService(db)


@pytest.fixture
def admin(operators: OperatorService) -> str:
    operators.create("alice", "admin", ADMIN_PASSWORD)
    return "alice"


@pytest.fixture
def viewer(operators: OperatorService) -> str:
    operators.create("victor", "viewer", VIEWER_PASSWORD)
    return "victor"


@pytest.fixture
def browser(app: Any) -> Iterator[Browser]:
    with TestClient(app, base_url="https://scim.example.test") as client:
        yield Browser(client)


@pytest.fixture
def job(db: Database, settings: Settings, tmp_path: Path) -> Job:
    """A job (never run: nothing listens at its target) reading a one-user CSV directory."""
    source = write_directory(tmp_path / "export", [user("u1")], [], assignments=["u1"])
    return JobService(db, settings).create("hr-to-app", source=f"csv:{source}",
                                           target_url="https://target.example.test/scim",
                                           credentials=Credentials(token="not-a-real-token"))
