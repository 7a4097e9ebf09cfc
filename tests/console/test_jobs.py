"""The console's job pages over HTTP (console/jobs.py) against jobs that really ran: a CSV source
provisioned into our own service (tests/engine/targets.py), on SQLite and PostgreSQL. The logs
filters, an event's steps and modified properties (redacted values never shown), and every
action — restart, test connection, on-demand provisioning, preview, import — for admins only,
with the CSRF token, audited, and giving what ``identity-sync job …`` gives for the same job."""

from __future__ import annotations

import copy
import html
import json
import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from identity_sync.config import Settings
from identity_sync.console import jobs as job_pages
from identity_sync.engine.errors import CycleAborted
from identity_sync.engine.jobs import Credentials
from identity_sync.engine.mapping.model import default_mapping_document
from identity_sync.engine.service import EngineService
from identity_sync.engine.tables import engine_events
from identity_sync.service.operators import NO_TENANT
from identity_sync.storage.db import Database
from identity_sync.storage.tables import audit_events
from tests.console.conftest import ADMIN_PASSWORD, VIEWER_PASSWORD, Browser, csrf_of
from tests.engine.conftest import our_target, unique  # noqa: F401 (a fixture)
from tests.engine.directory import user, write_directory
from tests.engine.targets import Target
from tests.test_cli import Cli

SECRET_TITLE = "Chief-Secret-Title-7f3a"
_EVENT_ROW = re.compile(r'<tr data-event="(\d+)">')
_STEP = re.compile(r"<strong>(\w+)</strong>: ([^\n<]*)")


def _redacting_mapping() -> dict[str, Any]:
    """The default mapping with ``title`` through ``Redact()``: logs must show ``[Redact]``."""
    document = copy.deepcopy(default_mapping_document())
    for item in document["users"]["mappings"]:
        if item["target"] == "title":
            item.pop("source", None)
            item["expression"] = "Redact([jobTitle])"
    return document


@pytest.fixture
def engine(db: Database, settings: Settings) -> EngineService:
    return EngineService(db, settings)


@pytest.fixture
def ran(engine: EngineService, our_target: Target, tmp_path: Path) -> dict[str, Any]:  # noqa: F811
    """Job ``hr`` after one cycle: u0 and u2 created, u1 refused by the target (a NUL in its
    display name), every user's title redacted in the logs."""
    prefix = unique("jobsui")
    users = [user(f"u{i}", userPrincipalName=f"{prefix}-u{i}@example.com", jobTitle=SECRET_TITLE,
                  displayName="Bad\u0000Name" if i == 1 else f"User {i}") for i in range(3)]
    source = write_directory(tmp_path / "export", users, [], assignments=["u0", "u1", "u2"])
    engine.jobs.create("hr", source=f"csv:{source}", target_url=our_target.base_url,
                       credentials=Credentials(token=our_target.token), mapping=_redacting_mapping())
    result = engine.run("hr")
    assert (result.counts["created"], result.counts["failed"]) == (2, 1)
    return {"cycle": result.cycle_id, "source": source, "prefix": prefix}


@pytest.fixture
def cli(db_url: str, settings: Settings) -> Cli:
    return Cli(db_url, settings.data_dir)  # the same data directory: the same credential key


def _logged_in(browser: Browser, operators: Any, role: str = "admin") -> Browser:
    if role == "admin":
        operators.create("alice", "admin", ADMIN_PASSWORD)
        assert browser.login("alice", ADMIN_PASSWORD).status_code == 303
    else:
        operators.create("victor", "viewer", VIEWER_PASSWORD)
        assert browser.login("victor", VIEWER_PASSWORD).status_code == 303
    return browser


def _shown(page: str) -> list[int]:
    return [int(i) for i in _EVENT_ROW.findall(page)]


def _ids(db: Database, *where: Any) -> list[int]:
    """The job's event ids matching, newest first (what the page lists)."""
    with db.read() as conn:
        return [r.id for r in conn.execute(sa.select(engine_events.c.id).where(*where)
                                           .order_by(engine_events.c.id.desc()))]


def _job_audit(db: Database) -> list[tuple[str, str, list[str]]]:
    with db.read() as conn:
        rows = conn.execute(sa.select(audit_events).where(audit_events.c.tenant_id == NO_TENANT,
                                                          audit_events.c.resource_type == "Job")
                            .order_by(audit_events.c.id))
        return [(r.actor, r.action, json.loads(r.attributes)) for r in rows]


# -- logs and events ---------------------------------------------------------------------------


def test_the_logs_filters_give_exactly_the_matching_events(browser: Browser, operators: Any, ran: dict[str, Any],
                                                           db: Database) -> None:
    _logged_in(browser, operators)
    t = engine_events.c
    everything = _ids(db)
    assert len(everything) == 3

    def shown(query: str) -> list[int]:
        page = browser.http.get(f"/admin/jobs/hr{query}")
        assert page.status_code == 200, page.text
        return _shown(page.text)

    assert shown("") == everything
    assert shown("?status=failure") == _ids(db, t.status == "failure") and len(shown("?status=failure")) == 1
    assert shown("?status=success") == _ids(db, t.status == "success")
    assert shown("?action=create") == _ids(db, t.action == "create")
    assert shown("?action=delete") == []
    assert shown("?object=u2") == _ids(db, t.source_id == "u2") and len(shown("?object=u2")) == 1
    target_id = next(r for r in _target_ids(db) if r)
    assert shown(f"?object={target_id}") == _ids(db, t.target_id == target_id)
    assert shown(f"?cycle={ran['cycle']}") == everything and shown("?cycle=another") == []
    assert shown("?since=2000-01-01") == everything and shown("?since=2999-01-01T00:00") == []
    assert shown("?until=2000-01-01") == [] and shown("?status=failure&object=u0") == []

    bad = browser.http.get("/admin/jobs/hr?since=yesterday")
    assert bad.status_code == 400 and "since: &#39;yesterday&#39; is not a time" in bad.text
    assert _shown(bad.text) == []
    bad = browser.http.get("/admin/jobs/hr?status=broken")
    assert bad.status_code == 400 and "status must be one of success, failure, skipped, warning" in bad.text


def test_the_logs_page_lists_what_job_logs_lists_for_the_same_filters(
        browser: Browser, operators: Any, ran: dict[str, Any], cli: Cli) -> None:
    _logged_in(browser, operators)
    cases = [("", ()), ("?status=failure", ("--status", "failure")), ("?action=create", ("--action", "create")),
             ("?object=u2", ("--object", "u2")), ("?since=2000-01-01", ("--since", "2000-01-01T00:00:00Z")),
             ("?since=2999-01-01", ("--since", "2999-01-01T00:00:00Z")), (f"?cycle={ran['cycle']}",
                                                                       ("--cycle", ran["cycle"]))]
    results = cli.all([("job", "logs", "hr", "--json", *args) for _, args in cases])
    for (query, _), result in zip(cases, results, strict=True):
        assert result.returncode == 0, result.stderr
        by_cli = [e["id"] for e in json.loads(result.stdout)["events"]]  # oldest first
        assert _shown(browser.http.get(f"/admin/jobs/hr{query}").text) == by_cli[::-1], query
    bad = cli("job", "logs", "hr", "--since", "yesterday")
    assert bad.returncode == 1 and "--since 'yesterday': not a time" in bad.stderr


def _target_ids(db: Database) -> list[str | None]:
    with db.read() as conn:
        return [r.target_id for r in conn.execute(sa.select(engine_events.c.target_id))]


def test_the_logs_are_paged_newest_first_without_gaps_or_repeats(
        browser: Browser, operators: Any, ran: dict[str, Any], db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    _logged_in(browser, operators)
    monkeypatch.setattr(job_pages, "PAGE_SIZE", 2)
    first = browser.http.get("/admin/jobs/hr")
    older = re.search(r'href="/admin/jobs/hr(\?[^"#]*)#logs" rel="next"', first.text)
    assert older, "a second page is linked"
    second = browser.http.get("/admin/jobs/hr" + html.unescape(older.group(1)))
    assert _shown(first.text) + _shown(second.text) == _ids(db)
    assert 'rel="next"' not in second.text and "← Newest" in second.text


def test_an_events_page_shows_its_steps_and_modified_properties_and_never_a_redacted_value(
        browser: Browser, operators: Any, ran: dict[str, Any], db: Database) -> None:
    _logged_in(browser, operators)
    created = _ids(db, engine_events.c.source_id == "u0")[0]
    failed = _ids(db, engine_events.c.source_id == "u1")[0]

    page = browser.http.get(f"/admin/jobs/hr/events/{created}")
    assert page.status_code == 200
    steps = [step for step, _ in _STEP.findall(page.text)]
    assert steps[0] == "import" and "scoping" in steps and "matching" in steps and steps[-1] == "export"
    assert "<td>title</td><td><span class=\"none\">(none)</span></td><td>[Redact]</td>" in page.text
    assert "<td>displayName</td><td><span class=\"none\">(none)</span></td><td>User 0</td>" in page.text
    assert SECRET_TITLE not in page.text

    page = browser.http.get(f"/admin/jobs/hr/events/{failed}")
    assert page.status_code == 200 and 'class="state failure"' in page.text
    assert "Error code" in page.text and "Reason" in page.text
    for shown in (page.text, browser.http.get("/admin/jobs/hr").text):
        assert SECRET_TITLE not in shown
    with db.read() as conn:  # nor is it stored: the page shows what the engine kept
        assert SECRET_TITLE not in json.dumps([list(r) for r in conn.execute(
            sa.select(engine_events.c.steps, engine_events.c.modified))])

    assert browser.http.get("/admin/jobs/hr/events/999999").status_code == 404
    assert browser.http.get(f"/admin/jobs/nope/events/{created}").status_code == 404


# -- actions: who may, and what they give ------------------------------------------------------

ACTIONS = {"restart": {"reset-quarantine": "on"}, "test-connection": {}, "provision": {"object": "u0"},
           "preview": {}, "import": {"mapping": json.dumps(default_mapping_document())}}


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_a_viewer_cannot_act_and_an_admin_without_the_csrf_token_cannot_either(
        browser: Browser, operators: Any, ran: dict[str, Any], db: Database, engine: EngineService,
        action: str) -> None:
    before = engine.jobs.get("hr")
    _logged_in(browser, operators, "viewer")
    page = browser.http.get("/admin/jobs/hr")
    assert f'action="/admin/jobs/hr/{action}"' not in page.text  # no button for a viewer
    forged = browser.http.post(f"/admin/jobs/hr/{action}", data={"csrf_token": csrf_of(page.text),
                                                                 **ACTIONS[action]})
    assert forged.status_code == 403 and "(viewer) may not make this change" in forged.text

    browser.http.cookies.clear()
    _logged_in(browser, operators, "admin")
    assert f'action="/admin/jobs/hr/{action}"' in browser.http.get("/admin/jobs/hr").text
    refused = browser.http.post(f"/admin/jobs/hr/{action}", data={"csrf_token": "forged", **ACTIONS[action]})
    assert refused.status_code == 403

    after = engine.jobs.get("hr")
    assert (after.mapping_document, after.watermark, after.state) == (before.mapping_document, before.watermark,
                                                                      before.state)
    assert _job_audit(db) == []
    assert len(_ids(db)) == 3  # no provisioning happened


def test_test_connection_gives_ok_or_the_targets_reason_as_the_cli_does(
        browser: Browser, operators: Any, ran: dict[str, Any], engine: EngineService, cli: Cli, db: Database) -> None:
    _logged_in(browser, operators)
    ok = browser.post_form("/admin/jobs/hr", "/admin/jobs/hr/test-connection")
    assert ok.status_code == 200 and 'class="result ok"' in ok.text
    assert cli("job", "test-connection", "hr").returncode == 0

    engine.jobs.update("hr", credentials=Credentials(token="not-the-token"))
    refused = browser.post_form("/admin/jobs/hr", "/admin/jobs/hr/test-connection")
    shown = html.unescape(re.search(r'<p class="result failed" id="result" data-kind="(\w+)">([^<]*)</p>',
                                    refused.text).group(2))  # type: ignore[union-attr]
    by_cli = cli("job", "test-connection", "hr")
    assert by_cli.returncode == 1 and by_cli.stderr.strip() == f"error: {shown}"
    assert shown.startswith("test connection failed: unauthorized")
    assert [a[1:] for a in _job_audit(db)] == [("test-connection", ["ok"]), ("test-connection", ["unauthorized"])]


def test_on_demand_provisioning_shows_the_steps_the_cli_shows(
        browser: Browser, operators: Any, ran: dict[str, Any], cli: Cli, db: Database) -> None:
    _logged_in(browser, operators)
    # u0 exists in the target: both runs find it up to date (the same state, the same steps).
    by_cli = cli.json("job", "provision", "hr", "--object", "u0", "--json")
    page = browser.post_form("/admin/jobs/hr", "/admin/jobs/hr/provision", object="u0")
    assert page.status_code == 200
    expected = [(s["provisioningStepType"], s["description"]) for e in by_cli["events"]
                for s in e["provisioningSteps"]]
    assert [(t, html.unescape(d)) for t, d in _STEP.findall(page.text)] == expected
    assert len(expected) >= 3

    unknown = browser.post_form("/admin/jobs/hr", "/admin/jobs/hr/provision", object="nobody")
    by_cli = cli("job", "provision", "hr", "--object", "nobody")
    assert by_cli.returncode == 1
    assert by_cli.stderr.strip().removeprefix("error: ") in html.unescape(unknown.text)
    assert [a[1] for a in _job_audit(db)] == ["provision", "provision"]


def test_preview_lists_what_the_cli_preview_lists_and_writes_nothing(
        browser: Browser, operators: Any, ran: dict[str, Any], cli: Cli, db: Database) -> None:
    _logged_in(browser, operators)
    write_directory(ran["source"], [user(f"u{i}", userPrincipalName=f"{ran['prefix']}-u{i}@example.com",
                                         jobTitle=SECRET_TITLE, displayName=f"Renamed {i}") for i in range(3)],
                    [], assignments=["u0", "u1", "u2"])
    by_cli = cli.json("job", "preview", "hr", "--json")
    events_before = _ids(db)
    page = browser.post_form("/admin/jobs/hr", "/admin/jobs/hr/preview")
    assert page.status_code == 200
    rows = re.findall(r"<tr><td>(\w+)</td><td>(\w+)</td><td>([^<]+)</td>", page.text)
    # The same actions (in the order the objects' requests finished, which may differ run to run).
    assert sorted(rows) == sorted((a["action"], a["type"], a["source_id"]) for a in by_cli["actions"])
    assert {a["action"] for a in by_cli["actions"]} >= {"update", "create"}  # u1 is created this time
    assert (f"Would be created {by_cli['created']}, updated {by_cli['updated']}," in page.text)
    assert SECRET_TITLE not in page.text and "[Redact]" in page.text
    assert _ids(db) == events_before


def test_restart_with_the_chosen_resets_does_what_job_restart_does(
        browser: Browser, operators: Any, ran: dict[str, Any], engine: EngineService, db: Database) -> None:
    engine.jobs.update("hr", credentials=Credentials(token="not-the-token"))
    with pytest.raises(CycleAborted):
        engine.run("hr")  # the real quarantine path: the target refuses the token
    job = engine.jobs.get("hr")
    assert job.state == "quarantined" and job.watermark is not None
    _logged_in(browser, operators)
    page = browser.http.get("/admin/jobs/hr")
    assert "EncounteredQuarantineException" in page.text and "refused the job&#39;s credentials" in page.text

    none = browser.post_form("/admin/jobs/hr", "/admin/jobs/hr/restart")
    assert none.status_code == 400 and engine.jobs.get("hr").state == "quarantined"

    done = browser.post_form("/admin/jobs/hr", "/admin/jobs/hr/restart", **{"reset-quarantine": "on"})
    assert done.status_code == 303 and done.headers["location"] == "/admin/jobs/hr"
    job = engine.jobs.get("hr")
    assert (job.state, job.quarantine_data, job.failures_in_a_row) == ("active", None, 0)
    assert job.watermark is not None  # only what was chosen is forgotten
    browser.post_form("/admin/jobs/hr", "/admin/jobs/hr/restart", **{"reset-watermark": "on", "reset-escrows": "on"})
    assert engine.jobs.get("hr").watermark is None
    assert [a[1:] for a in _job_audit(db)] == [("restart", ["quarantine"]), ("restart", ["escrows", "watermark"])]


def test_export_is_what_job_export_prints_and_import_reads_it_back(
        browser: Browser, operators: Any, ran: dict[str, Any], engine: EngineService, cli: Cli, db: Database,
        tmp_path: Path) -> None:
    _logged_in(browser, operators)
    exported = browser.http.get("/admin/jobs/hr/export")
    assert exported.status_code == 200 and exported.headers["content-type"] == "application/json"
    assert 'filename="hr-mapping.json"' in exported.headers["content-disposition"]
    assert exported.text == cli("job", "export", "hr").stdout
    assert engine.jobs.credentials(engine.jobs.get("hr")).token not in exported.text  # no credentials

    document = json.loads(exported.text)
    document["users"]["mappings"][2]["source"] = "mailNickname"
    imported = browser.post_form("/admin/jobs/hr", "/admin/jobs/hr/import", mapping=json.dumps(document, indent=2))
    assert imported.status_code == 303
    job = engine.jobs.get("hr")
    assert job.mapping_document == document and job.watermark is None  # the next cycle is initial
    assert [a[1] for a in _job_audit(db)] == ["export", "import"]


@pytest.mark.parametrize("broken", ['{"users": {"mappings": [', '{"users": {"mappings": [{"target": "userName", '
                                    '"source": "upn", "matching": 1}, {"target": "title", "expression": "Nope(["}]}}',
                                    '{"users": 3}'])
def test_a_broken_import_shows_the_cli_s_one_line_error_and_changes_nothing(
        browser: Browser, operators: Any, ran: dict[str, Any], engine: EngineService, cli: Cli, db: Database,
        tmp_path: Path, broken: str) -> None:
    _logged_in(browser, operators)
    before = engine.jobs.get("hr")
    page = browser.post_form("/admin/jobs/hr", "/admin/jobs/hr/import", mapping=broken)
    assert page.status_code == 400
    shown = html.unescape(re.search(r'<p class="result failed" id="result" data-kind="">([^<]*)</p>',
                                    page.text).group(1))  # type: ignore[union-attr]
    path = tmp_path / "broken.json"
    path.write_text(broken)
    by_cli = cli("job", "import", "hr", str(path))
    assert by_cli.returncode == 1
    assert by_cli.stderr.strip() == "error: " + shown.replace("import:", f"{path}:", 1)
    assert "\n" not in shown and shown.startswith("import:")
    after = engine.jobs.get("hr")
    assert (after.mapping_document, after.watermark, after.updated_at) == (before.mapping_document, before.watermark,
                                                                          before.updated_at)
    assert [a[1:] for a in _job_audit(db)] == [("import", ["refused"])]
