"""The request history (observability/history.py): counted in memory, added to ``request_counts``
with an upsert (two processes add up), kept when the database is away, pruned after 7 days, and
shown by the console's overview per tenant and per hour. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from identity_sync.config import Settings
from identity_sync.console.pages import ConsoleData
from identity_sync.observability.history import KEEP_DAYS, RequestHistory
from identity_sync.storage.db import Database
from identity_sync.storage.tables import request_counts
from identity_sync.web.app import create_app
from tests.conftest import ScimClient
from tests.console.conftest import ADMIN_PASSWORD, Browser

NOW = datetime(2026, 12, 5, 14, 30, 10, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _table(db: Database) -> dict[tuple[str, int, str], int]:
    with db.read() as conn:
        return {(r.tenant, r.minute, r.status_class): r.count for r in conn.execute(sa.select(request_counts))}


def test_two_processes_counts_add_up_in_the_table(db: Database) -> None:
    clock = Clock()
    first, second = RequestHistory(db, clock), RequestHistory(db, clock)  # two workers
    minute = int(NOW) // 60
    for status in (200, 201, 404, 500, 200):
        first.add("acme", status)
    second.add("acme", 204)
    second.add(None, 401)
    clock.now += 60
    second.add("acme", 200)

    assert first.flush() == 3 and second.flush() == 3  # keys: (tenant, minute, status class)
    first.add("acme", 200)
    first.flush()

    assert _table(db) == {("acme", minute, "2xx"): 4, ("acme", minute, "4xx"): 1, ("acme", minute, "5xx"): 1,
                          ("-", minute, "4xx"): 1, ("acme", minute + 1, "2xx"): 2}
    assert first.pending() == {} and first.flush() == 0


def test_a_failed_flush_keeps_its_counts_for_the_next(db: Database, tmp_path: Path) -> None:
    unmigrated = Database(f"sqlite:///{tmp_path / 'empty.db'}")  # no request_counts table: the write fails
    history = RequestHistory(unmigrated, Clock())
    history.add("acme", 200)
    with pytest.raises(sa.exc.OperationalError):
        history.flush()
    history.add("acme", 200)

    history.db = db
    history.flush()

    assert list(_table(db).values()) == [2]
    unmigrated.dispose()


def test_rows_older_than_7_days_are_pruned(db: Database) -> None:
    clock = Clock()
    history = RequestHistory(db, clock)
    history.add("acme", 200)
    history.flush()
    clock.now += KEEP_DAYS * 86_400 - 120
    history.add("acme", 200)
    history._pruned_at = 0  # the prune runs hourly: due now
    history.flush()
    assert len(_table(db)) == 2

    clock.now += 180
    history._pruned_at = 0
    history.flush()

    assert list(_table(db)) == [("acme", int(NOW - 120 + KEEP_DAYS * 86_400) // 60, "2xx")]


def test_the_overview_shows_requests_and_errors_per_tenant_and_per_hour(db: Database, settings: Settings) -> None:
    now = datetime.fromtimestamp(NOW, UTC)
    minute = int(NOW) // 60
    with db.write() as conn:
        conn.execute(sa.insert(request_counts), [
            {"tenant": "acme", "minute": minute, "status_class": "2xx", "count": 40},
            {"tenant": "acme", "minute": minute - 61, "status_class": "4xx", "count": 3},
            {"tenant": "acme", "minute": minute - 61, "status_class": "5xx", "count": 2},
            {"tenant": "acme", "minute": minute - 25 * 60, "status_class": "2xx", "count": 1_000},  # too old
            {"tenant": "-", "minute": minute, "status_class": "4xx", "count": 7},
        ])
    from identity_sync.service.tenants import TenantService
    TenantService(db).create_tenant("acme")
    TenantService(db).create_tenant("globex")

    data = ConsoleData(db, settings).overview(now)

    assert [(t["name"], t["requests"], t["errors"]) for t in data["tenants"]] == [("acme", 45, 5), ("globex", 0, 0)]
    assert data["unauthenticated"] == (7, 7)
    chart = data["charts"][0]
    assert chart.title == "SCIM requests per hour" and chart.total == 45 and chart.total_failed == 5
    assert (chart.bars[-1].value, chart.bars[-1].failed) == (40, 0)
    assert (chart.bars[-2].label, chart.bars[-2].value, chart.bars[-2].failed) == ("13:00", 5, 5)  # 13:29


def test_requests_served_reach_the_overview_flushed_when_the_app_stops(
        settings: Settings, db: Database, admin: str, scim_token: Any) -> None:
    app = create_app(settings, db)
    with TestClient(app, base_url="https://scim.example.test") as http:
        scim = ScimClient(http, "acme", scim_token)
        for _ in range(3):
            assert scim.get("/Users").status_code == 200
        assert scim.get("/Users/no-such-user").status_code == 404
        assert ScimClient(http, "acme", "idsync_" + "W" * 43).get("/Users").status_code == 401
    # The app stopped: its lifespan flushed what the 10-second task had not yet.
    counted = {}
    for (tenant, _, status_class), count in _table(db).items():
        counted[tenant, status_class] = counted.get((tenant, status_class), 0) + count
    assert counted == {("acme", "2xx"): 3, ("acme", "4xx"): 1, ("-", "4xx"): 1}

    with TestClient(create_app(settings, db), base_url="https://scim.example.test") as http:
        browser = Browser(http)
        browser.login(admin, ADMIN_PASSWORD)
        page = browser.http.get("/admin").text
    row = page[page.index("<td>acme</td>"):].split("</tr>")[0]
    assert [cell.split(">")[-1].strip() for cell in row.split("</td>")[5:7]] == ["4", "1"]  # requests, errors
    assert "SCIM requests per hour</strong> — 4 in 24 h, 1 errors" in page


@pytest.fixture
def scim_token(db: Database) -> str:
    from identity_sync.service.tenants import TenantService
    return TenantService(db).create_tenant("acme").token


@pytest.fixture
def admin(db: Database) -> str:
    from identity_sync.service.operators import OperatorService
    OperatorService(db).create("alice", "admin", ADMIN_PASSWORD)
    return "alice"
