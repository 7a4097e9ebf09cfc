"""SQLite plans the hot statements with indexes: a lookup by a selective filter or by id reaches
its rows through an index, never by reading the whole table (which is what a plan regression
looks like: the same answers, a thousand times slower at a million users). PostgreSQL plans by
cost, so a plan of its small test tables says nothing; these run on SQLite only."""

from __future__ import annotations

import re
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from identity_sync.config import Settings
from identity_sync.scim.registry import USER
from identity_sync.service.resources import ResourceService
from identity_sync.service.tenants import TenantService
from identity_sync.storage.db import Database
from identity_sync.storage.listing import ListRequest

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
SELECTIVE_FILTERS = [
    'userName eq "user-7@example.com"',
    'userName eq "nobody@example.com"',
    'externalId eq "ext-7"',
    'emails.value eq "user-7@example.com"',
    'emails[type eq "work" and value eq "user-7@example.com"]',
]


@pytest.fixture
def traced(migrated_template: Path, tmp_path: Path) -> Iterator[tuple[Database, list[str]]]:
    shutil.copy(migrated_template, tmp_path / "plans.db")
    database = Database(f"sqlite:///{tmp_path / 'plans.db'}")
    statements: list[str] = []

    @event.listens_for(database.engine, "connect")
    def trace(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.set_trace_callback(statements.append)  # the SQL with its values bound

    yield database, statements
    database.dispose()


def _searched(traced: tuple[Database, list[str]], tmp_path: Path, filter_text: str) -> tuple[Any, list[str]]:
    """Thirty users of one tenant, then one search: its page and the statements on ``resources``."""
    database, statements = traced
    settings = Settings(database_url=database.url, data_dir=tmp_path)
    tenants = TenantService(database)
    principal = tenants.authenticate(f"Bearer {tenants.create_tenant('acme').token}", "acme")
    service = ResourceService(database, settings)
    for i in range(30):
        service.create(principal, USER, {"schemas": [USER_SCHEMA], "userName": f"user-{i}@example.com",
                                         "externalId": f"ext-{i}",
                                         "emails": [{"type": "work", "value": f"user-{i}@example.com"}]})
    statements.clear()
    page = service.search(principal, USER, filter_text, ListRequest())
    return page, [s for s in statements if s.lstrip().upper().startswith("SELECT") and "resources" in s]


def _plan(database: Database, statement: str) -> list[str]:
    with database.read() as conn:
        return [row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}").all()]


def _full_scans(database: Database, statement: str) -> list[str]:
    # "SCAN r" / "SCAN resources" without an index: every row of the table is read.
    return [step for step in _plan(database, statement)
            if re.fullmatch(r"SCAN (r|resources|attr_values)( .*)?", step) and "INDEX" not in step]


@pytest.mark.parametrize("filter_text", SELECTIVE_FILTERS)
def test_a_lookup_by_a_selective_filter_reads_no_table_whole(
        traced: tuple[Database, list[str]], tmp_path: Path, filter_text: str) -> None:
    page, reads = _searched(traced, tmp_path, filter_text)

    assert page.total in (0, 1)
    assert reads, "the search ran no statement on resources"
    for statement in reads:
        assert _full_scans(traced[0], statement) == [], statement


@pytest.mark.parametrize("filter_text", [
    'userName eq "USER-7@example.com"',
    'UserName EQ "user-7@example.com"',
    'urn:ietf:params:scim:schemas:core:2.0:User:userName eq "user-7@example.com"',
])
def test_a_lookup_by_user_name_is_one_probe_of_the_unique_index_of_live_names(
        traced: tuple[Database, list[str]], tmp_path: Path, filter_text: str) -> None:
    # Entra's and Okta's lookup before every create: one entry per user in that index, against
    # ~25 per user in attr_values (filter_sql.user_name_key).
    page, (read,) = _searched(traced, tmp_path, filter_text)

    assert [r.doc["userName"] for r in page.resources] == ["user-7@example.com"]
    plan = _plan(traced[0], read)
    assert any("USING INDEX uq_resources_live_name" in step for step in plan), plan
    assert "attr_values" not in read
