"""The console's audit trail page (console/audit.py) on SQLite and PostgreSQL: each filter gives
exactly the matching events, newest first and paged without gaps; the CSV and NDJSON exports
parse back to exactly the filtered events; an export is itself an audit event."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

import pytest
import sqlalchemy as sa

from identity_sync.console import audit as audit_pages
from identity_sync.service.audit import AuditService
from identity_sync.service.operators import NO_TENANT
from identity_sync.service.tenants import TenantService
from identity_sync.storage import audit
from identity_sync.storage import tenants as tenant_store
from identity_sync.storage.audit import AuditFilter
from identity_sync.storage.db import Database
from identity_sync.storage.tables import audit_events
from tests.console.conftest import ADMIN_PASSWORD, Browser

_SEQ = re.compile(r'<tr><td class="num">(\d+)</td>')


@pytest.fixture
def trail(db: Database, tenants: TenantService) -> dict[str, str]:
    """Two tenants' events and the service's own, at known times (a day apart, one per hour)."""
    for name in ("acme", "globex"):
        tenants.create_tenant(name)
    with db.read() as conn:
        ids = {name: tenant_store.get_tenant(conn, name)["id"] for name in ("acme", "globex")}
    events = []
    for i in range(30):
        tenant = (ids["acme"], ids["globex"], NO_TENANT)[i % 3]
        events.append(audit.Event(tenant, f"2026-11-{1 + i // 24:02d}T{i % 24:02d}:30:00.000000Z",
                                  ("scim:entra", "operator:cli", "console:alice")[i % 3],
                                  ("create", "update", "delete", "login")[i % 4], ("User", "Group")[i % 2],
                                  f"res-{i % 5}", i, [f"attr{i}"]))
    with db.write() as conn:
        for event in events:
            audit.record(conn, event)
    return ids


def _login(browser: Browser, operators: Any) -> None:
    operators.create("alice", "admin", ADMIN_PASSWORD)
    assert browser.login("alice", ADMIN_PASSWORD).status_code == 303


def _expected(db: Database, *where: Any) -> list[int]:
    """The seeded events matching (the console's own logins left out), newest first."""
    with db.read() as conn:
        return [r.id for r in conn.execute(sa.select(audit_events.c.id).where(
            audit_events.c.at < "2026-12-01", *where).order_by(audit_events.c.id.desc()))]


def _shown(browser: Browser, query: str) -> list[int]:
    page = browser.http.get(f"/admin/audit{query}")
    assert page.status_code == 200, page.text
    return [int(seq) for seq in _SEQ.findall(page.text)]


def test_each_filter_gives_exactly_the_matching_events_newest_first(
        browser: Browser, operators: Any, trail: dict[str, str], db: Database) -> None:
    _login(browser, operators)
    t = audit_events.c
    seeded = "&until=2026-12-01"  # leaves out the login of the test itself
    assert _shown(browser, "?until=2026-12-01") == _expected(db) and len(_expected(db)) == 30
    assert _shown(browser, f"?tenant=acme{seeded}") == _expected(db, t.tenant_id == trail["acme"])
    assert _shown(browser, f"?tenant=-{seeded}") == _expected(db, t.tenant_id == NO_TENANT)
    assert _shown(browser, f"?actor=operator:cli{seeded}") == _expected(db, t.actor == "operator:cli")
    assert _shown(browser, f"?action=login{seeded}") == _expected(db, t.action == "login")
    assert _shown(browser, f"?type=Group{seeded}") == _expected(db, t.resource_type == "Group")
    assert _shown(browser, f"?resource=res-3{seeded}") == _expected(db, t.resource_id == "res-3")
    assert _shown(browser, "?since=2026-11-02T00:00&until=2026-11-02T03:00") == _expected(
        db, t.at >= "2026-11-02T00:00", t.at < "2026-11-02T03:00")
    assert len(_shown(browser, "?since=2026-11-02T00:00&until=2026-11-02T03:00")) == 3
    both = _shown(browser, f"?tenant=globex&type=Group&action=update{seeded}")
    assert both == _expected(db, t.tenant_id == trail["globex"], t.resource_type == "Group", t.action == "update")
    assert both  # the combination selects something (else the test proves little)

    for query, message in (("?tenant=nope", "No tenant named &#39;nope&#39;."),
                           ("?since=last+week", "since: &#39;last week&#39; is not a time")):
        page = browser.http.get(f"/admin/audit{query}")
        assert page.status_code == 400 and message in page.text and not _SEQ.findall(page.text)


def test_the_trail_is_paged_without_gaps_or_repeats(browser: Browser, operators: Any, trail: dict[str, str],
                                                     db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    _login(browser, operators)
    monkeypatch.setattr(audit_pages, "PAGE_SIZE", 7)
    query, seen = "?until=2026-12-01", []
    for _ in range(10):
        page = browser.http.get(f"/admin/audit{query}")
        seen += [int(seq) for seq in _SEQ.findall(page.text)]
        older = re.search(r'href="/admin/audit(\?[^"]*)" rel="next"', page.text)
        if older is None:
            break
        query = older.group(1).replace("&amp;", "&")
    assert seen == _expected(db) and len(seen) == 30


@pytest.mark.parametrize("query", ["", "?tenant=acme", "?actor=console:alice&type=User", "?since=2026-11-01T20:00"])
def test_the_csv_and_ndjson_exports_parse_back_to_exactly_the_filtered_events(
        browser: Browser, operators: Any, trail: dict[str, str], db: Database, query: str) -> None:
    _login(browser, operators)
    service = AuditService(db)
    params = dict(p.split("=", 1) for p in query.lstrip("?").split("&") if p)
    audit_filter = audit_pages.audit_filter_of(service, params)
    expected, _ = service.newest(audit_filter, limit=1_000)
    assert expected

    ndjson = browser.http.get(f"/admin/audit/export.ndjson{query}")
    assert ndjson.status_code == 200 and ndjson.headers["content-type"] == "application/x-ndjson"
    assert [json.loads(line) for line in ndjson.text.splitlines()] == expected

    expected, _ = service.newest(audit_filter, limit=1_000)  # now with the NDJSON export's event, if it matches
    exported = browser.http.get(f"/admin/audit/export.csv{query}")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert 'filename="audit-trail.csv"' in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert rows == [{"seq": str(e["seq"]), "at": e["at"], "tenant": e["tenant"] or "", "actor": e["actor"],
                     "action": e["action"], "type": e["type"], "id": e["id"],
                     "version": "" if e["version"] is None else str(e["version"]),
                     "attributes": ";".join(e["attributes"])} for e in expected]

    with db.read() as conn:  # each export is an audit event of its own
        last = conn.execute(sa.select(audit_events).order_by(audit_events.c.id.desc()).limit(2)).all()
    assert [(r.actor, r.action, r.resource_type, r.resource_id) for r in last] == [
        ("console:alice", "export", "AuditTrail", "csv"), ("console:alice", "export", "AuditTrail", "ndjson")]


def test_the_export_reads_the_trail_a_batch_at_a_time_and_ignores_later_events(
        trail: dict[str, str], db: Database) -> None:
    service = AuditService(db)
    everything, _ = service.newest(AuditFilter(), limit=1_000)
    stream = service.stream(AuditFilter(), batch=4)
    first = [next(stream) for _ in range(5)]
    with db.write() as conn:  # written while the export runs: not in it
        audit.record(conn, audit.Event(NO_TENANT, "2026-12-31T00:00:00.000000Z", "late", "create", "User", "x", 1))
    assert first + list(stream) == everything and len(everything) == 30
    acme = AuditFilter(tenant_id=trail["acme"])
    assert list(service.stream(acme, batch=3)) == service.newest(acme, limit=1_000)[0]


def test_an_unknown_export_format_is_404(browser: Browser, operators: Any) -> None:
    _login(browser, operators)
    assert browser.http.get("/admin/audit/export.xml").status_code == 404
    assert browser.http.get("/admin/audit/export.csv", follow_redirects=False).status_code == 200
    browser.http.cookies.clear()
    assert browser.http.get("/admin/audit/export.csv", follow_redirects=False).status_code == 303  # logged out
