"""The job pages in a real browser (Playwright driving Debian's ``chromium``, as test_browser.py):
open a failed provisioning event and see its steps; restart a job that the real quarantine path
put in quarantine and see its state change. Two real services: the target (``identity-sync
serve`` with a tenant, tests/engine/targets.py) and the console's own, whose jobs ran against it
before it started. With ``IDSYNC_UPDATE_SCREENSHOTS=1`` the logs and an event are copied to
docs/screenshots/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from identity_sync.config import Settings
from identity_sync.engine.errors import CycleAborted
from identity_sync.engine.jobs import Credentials
from identity_sync.engine.service import EngineService
from identity_sync.service.operators import OperatorService
from identity_sync.storage.db import Database
from tests.console.conftest import ADMIN_PASSWORD
from tests.console.test_browser import SCREENSHOTS, Served, _log_in, chromium, page  # noqa: F401 (fixtures)
from tests.engine.directory import user, write_directory
from tests.engine.targets import start_our_target
from tests.pg import free_port
from tests.test_cli import _env, _stop, _wait_for_port

JOB, REFUSED = "hr-to-app", "hr-to-crm"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, migrated_template: Path) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("console-jobs")
    shutil.copy(migrated_template, directory / "target.db")
    target = start_our_target(f"sqlite:///{directory / 'target.db'}", directory / "target-data", tenant="app")
    try:
        shutil.copy(migrated_template, directory / "identity-sync.db")
        url = f"sqlite:///{directory / 'identity-sync.db'}"
        db = Database(url)
        settings = Settings(database_url=url, data_dir=directory)
        OperatorService(db).create("alice", "admin", ADMIN_PASSWORD)
        people = [user(f"emp-{i:03d}", userPrincipalName=f"person{i}@contoso.example",
                       displayName="Broken\u0000Name" if i in (2, 5) else f"Person {i}", department="Sales",
                       jobTitle=f"Title {i}") for i in range(8)]
        source = write_directory(directory / "hr-export", people, [], assignments=[p["id"] for p in people])
        engine = EngineService(db, settings)
        engine.jobs.create(JOB, source=f"csv:{source}", target_url=target.base_url,
                           credentials=Credentials(token=target.token))
        engine.jobs.create(REFUSED, source=f"csv:{source}", target_url=target.base_url,
                           credentials=Credentials(token="a-token-the-target-refuses"))
        # In a thread of its own: Playwright's sync API may already run an event loop in this one.
        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(engine.run, JOB).result().counts["failed"] == 2
            with pytest.raises(CycleAborted):
                pool.submit(engine.run, REFUSED).result()  # 401: the real quarantine path (engine/operations.py)
        assert engine.jobs.get(REFUSED).state == "quarantined"
        db.dispose()

        port = free_port()
        process = subprocess.Popen([sys.executable, "-m", "identity_sync", "serve", "--port", str(port)],
                                   env=_env(url, directory, IDSYNC_CONSOLE_SECURE_COOKIES="false"),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_for_port(port, process)
            yield Served(f"http://127.0.0.1:{port}", url)
        finally:
            _stop(process)
    finally:
        target.stop()


def _keep(path: Path, name: str) -> None:
    assert path.stat().st_size > 1_000
    if os.environ.get("IDSYNC_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SCREENSHOTS / f"{name}.png")


def test_an_admin_opens_a_failed_provisioning_event_and_sees_its_steps(page: Any, served: Served,  # noqa: F811
                                                                        tmp_path: Path) -> None:
    _log_in(page, served, "alice", ADMIN_PASSWORD)
    page.goto(f"{served.url}/admin/jobs/{JOB}")
    assert len(page.query_selector_all("#logs table.events tbody tr")) == 8
    # The logs section only: the job's settings show the CSV directory, a path of this machine.
    page.locator("#logs").screenshot(path=str(tmp_path / "logs.png"))
    _keep(tmp_path / "logs.png", "job-logs")

    page.select_option("select[name=status]", "failure")
    page.click("#logs form.filters button[type=submit]")
    page.wait_for_url("**status=failure**")
    rows = page.query_selector_all("#logs table.events tbody tr")
    assert len(rows) == 2 and all("failure" in row.inner_text() for row in rows)

    rows[0].query_selector("a").click()
    page.wait_for_url(f"{served.url}/admin/jobs/{JOB}/events/*")
    assert page.inner_text("h1 .state") == "failure"
    steps = [item.query_selector("strong").inner_text() for item in page.query_selector_all("#steps ol.steps > li")]
    assert steps[:3] == ["import", "scoping", "matching"]  # read, in scope, no target object: create (refused)
    details = page.inner_text("dl.settings")
    assert "Error code" in details and "Reason" in details and ("emp-002" in details or "emp-005" in details)
    page.screenshot(path=str(tmp_path / "event.png"), full_page=True)
    _keep(tmp_path / "event.png", "job-event")


def test_an_admin_restarts_a_quarantined_job_and_sees_its_state_change(page: Any, served: Served) -> None:  # noqa: F811
    _log_in(page, served, "alice", ADMIN_PASSWORD)
    page.goto(f"{served.url}/admin/jobs/{REFUSED}")
    assert page.inner_text("h1 .state") == "quarantined"
    assert "EncounteredQuarantineException" in page.inner_text("#quarantine")
    checked = [box.get_attribute("name") for box in page.query_selector_all("form.restart input:checked")]
    assert sorted(checked) == ["reset-escrows", "reset-quarantine", "reset-watermark"]  # Entra's Restart

    page.click("form.restart button[type=submit]")

    page.wait_for_url(f"{served.url}/admin/jobs/{REFUSED}")
    assert page.inner_text("h1 .state") == "active"
    assert "Not in quarantine." in page.inner_text("#quarantine")
