"""Each tenant's recent rejected requests (service/rejections.py): what is kept, that it stays
bounded, that a flood is throttled, and that a URL naming no tenant records nothing."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from identity_sync.service import rejections
from identity_sync.service.rejections import RejectionService
from identity_sync.storage.db import Database
from identity_sync.storage.tables import rejected_requests
from tests.conftest import ScimClient


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(service: RejectionService, tenant: str = "acme", status: int = 401, reason: str | None = "unknown") -> bool:
    return service.record(tenant, status, reason, "GET", "/scim/v2/{tenant}/Users", "203.0.113.9", None, "req-1")


def rows(db: Database) -> int:
    with db.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(rejected_requests)).scalar_one()


def test_a_rejection_is_kept_with_its_status_reason_route_and_client_newest_first(db: Database, issued: Any) -> None:
    service = RejectionService(db)

    assert record(service, status=401, reason="revoked")
    assert record(service, status=409, reason=None)

    latest = service.latest("acme")
    assert [(r["status"], r["reason"]) for r in latest] == [(409, "conflict"), (401, "revoked")]
    assert latest[0]["route"] == "/scim/v2/{tenant}/Users" and latest[0]["client"] == "203.0.113.9"


def test_a_url_naming_no_tenant_records_nothing_and_only_4xx_are_kept(db: Database, issued: Any) -> None:
    service = RejectionService(db)

    assert not record(service, tenant="nobody")
    assert not record(service, status=500)
    assert not record(service, status=200)

    assert rows(db) == 0


def test_the_table_stays_bounded(db: Database, issued: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rejections, "KEEP", 10)
    monkeypatch.setattr(rejections, "PRUNE_EVERY", 5)
    monkeypatch.setattr(rejections, "BURST", 1_000)
    monkeypatch.setattr(rejections, "TOTAL_BURST", 1_000)
    service = RejectionService(db)

    for _ in range(42):
        record(service)

    assert 10 <= rows(db) <= 10 + 5  # pruned to KEEP every PRUNE_EVERY rejections
    assert len(service.latest("acme", 100)) == rows(db)


def test_a_flood_is_throttled_per_tenant_and_window(db: Database, issued: Any, other_scim: ScimClient) -> None:
    clock = Clock()
    service = RejectionService(db, clock=clock)

    written = sum(record(service) for _ in range(rejections.BURST + 30))
    other = record(service, tenant="globex")  # another tenant's window is its own
    clock.now += rejections.WINDOW_SECONDS
    later = record(service)

    assert written == rejections.BURST and other and later


def test_scim_rejections_are_recorded_without_the_credential(scim: ScimClient, db: Database) -> None:
    bad = "idsync_this-is-not-a-token-anyone-has"
    assert scim.get("/Users", headers={"Authorization": f"Bearer {bad}"}).status_code == 401
    assert scim.get("/Users/does-not-exist").status_code == 404
    assert scim.get("/Users", params={"filter": 'userName eq "secret-person@example.com" and ('}).status_code == 400

    scim.http.app.state.rejections.flush()  # written by a background thread
    latest = RejectionService(db).latest("acme")

    assert [(r["status"], r["reason"]) for r in latest] == [(400, "invalidFilter"), (404, "not_found"),
                                                            (401, "unknown")]
    assert latest[1]["route"] == "/scim/v2/{tenant}/Users/{id}" and latest[1]["credential_id"]
    assert all(bad not in str(r) and "secret-person" not in str(r) for r in latest)


def test_a_spray_of_made_up_tenant_names_is_throttled_as_a_whole(db: Database, issued: Any) -> None:
    clock = Clock()
    service = RejectionService(db, clock=clock)

    admitted = sum(service._admit(f"made-up-{i}") for i in range(rejections.TOTAL_BURST + 50))

    assert admitted == rejections.TOTAL_BURST
    assert not record(service)  # a real tenant waits for the next window too
    clock.now += rejections.WINDOW_SECONDS
    assert record(service)


def test_the_answer_never_waits_for_the_record(scim: ScimClient, db: Database) -> None:
    """A 401 while another transaction holds the write lock (SQLite: the whole database) is
    answered at once; the rejection is written once the lock is released."""
    with db.write() as conn:
        conn.execute(sa.delete(rejected_requests))  # a write: the lock is held until the block ends
        refused = scim.get("/Users", headers={"Authorization": "Bearer idsync_wrong"})
        assert refused.status_code == 401
    scim.http.app.state.rejections.flush()

    assert [r["status"] for r in RejectionService(db).latest("acme")] == [401]
