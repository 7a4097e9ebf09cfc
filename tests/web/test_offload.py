"""Costly requests served by a child process (web/offload.py, web/offload_process.py): which
requests are known costly before they run; that the child really serves them, with the answer,
the log line and the metrics of a request served here; that a client cannot pass for the parent;
that a child gone is replaced while this process serves in its stead; that the app's end ends it."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from identity_sync.config import Settings
from identity_sync.service.tenants import TenantService
from identity_sync.storage.db import Database
from identity_sync.web.app import create_app
from identity_sync.web.offload import (
    COSTLY_ATTRIBUTE_NAMES,
    COSTLY_BODY_BYTES,
    COSTLY_FILTER_CHARACTERS,
    COSTLY_PAGE_SIZE,
    known_costly,
)
from tests.conftest import ScimClient

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
BULK = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
PREFIX = "/scim/v2/acme"


def _costly(method: str, path: str, query: str = "", length: int | None = None) -> bool:
    headers = [(b"content-length", str(length).encode())] if length is not None else []
    return known_costly(method, path, query.encode(), headers)


class TestKnownCostly:
    def test_a_bulk_and_a_search_are_costly(self) -> None:
        assert _costly("POST", f"{PREFIX}/Bulk", length=200)
        assert _costly("POST", f"{PREFIX}/.search", length=80)
        assert _costly("POST", f"{PREFIX}/Users/.search", length=80)

    def test_entra_and_okta_requests_are_not(self) -> None:
        assert not _costly("GET", f"{PREFIX}/Users", 'filter=userName eq "a@example.com"')
        assert not _costly("GET", f"{PREFIX}/Users", "startIndex=1&count=100")
        assert not _costly("GET", f"{PREFIX}/Users/123")
        assert not _costly("POST", f"{PREFIX}/Users", length=1_500)
        assert not _costly("PATCH", f"{PREFIX}/Groups/7", length=4_000)
        assert not _costly("DELETE", f"{PREFIX}/Users/123")

    def test_a_large_body_is_costly_and_so_is_one_of_unknown_length(self) -> None:
        assert not _costly("PATCH", f"{PREFIX}/Users/1", length=COSTLY_BODY_BYTES)
        assert _costly("PATCH", f"{PREFIX}/Users/1", length=COSTLY_BODY_BYTES + 1)
        assert _costly("PUT", f"{PREFIX}/Users/1", length=COSTLY_BODY_BYTES + 1)
        assert _costly("POST", f"{PREFIX}/Users")  # chunked: no Content-Length

    def test_a_large_page_a_long_attribute_list_or_filter_is_costly(self) -> None:
        assert not _costly("GET", f"{PREFIX}/Users", f"count={COSTLY_PAGE_SIZE}")
        assert _costly("GET", f"{PREFIX}/Users", f"count={COSTLY_PAGE_SIZE + 1}")
        names = ",".join(["userName"] * COSTLY_ATTRIBUTE_NAMES)
        assert not _costly("GET", f"{PREFIX}/Users", f"attributes={names}")
        assert _costly("GET", f"{PREFIX}/Users", f"attributes={names},displayName")
        assert _costly("GET", f"{PREFIX}/Groups", f"excludedAttributes={names},members")
        assert not _costly("GET", f"{PREFIX}/Users", "filter=" + "a" * COSTLY_FILTER_CHARACTERS)
        assert _costly("GET", f"{PREFIX}/Users", "filter=" + "a" * (COSTLY_FILTER_CHARACTERS + 1))

    def test_a_percent_encoded_parameter_name_is_read_as_the_handler_reads_it(self) -> None:
        assert _costly("GET", f"{PREFIX}/Users", f"%63ount={COSTLY_PAGE_SIZE + 1}")
        names = "%2C".join(["userName"] * (COSTLY_ATTRIBUTE_NAMES + 1))
        assert _costly("GET", f"{PREFIX}/Users", f"%61ttributes={names}")
        assert not _costly("GET", f"{PREFIX}/Users", "filter=userName+eq+%22a%40example.com%22")

    def test_only_a_tenants_scim_routes(self) -> None:
        assert not _costly("POST", "/oauth/token")
        assert not _costly("POST", "/admin/login")
        assert not _costly("GET", "/metrics", "count=5000")


def _bulk(count: int, prefix: str) -> dict[str, Any]:
    return {"schemas": [BULK], "Operations": [
        {"method": "POST", "path": "/Users", "bulkId": f"b{i}",
         "data": {"schemas": [USER], "userName": f"{prefix}{i}@example.com"}} for i in range(count)]}


def _wait_until(condition: Any, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("not within the time allowed")
        time.sleep(0.05)


@pytest.fixture
def served(settings: Settings, db: Database, tenants: TenantService) -> Iterator[tuple[Any, ScimClient]]:
    """The app with its costly-requests child up, and tenant ``acme``."""
    app = create_app(settings.model_copy(update={"rate_limit_per_second": 0, "costly_requests_process": True}), db)
    acme = tenants.create_tenant("acme")
    with TestClient(app, base_url="https://scim.example.test") as http:
        _wait_until(lambda: app.state.costly_process.available)
        yield app, ScimClient(http, "acme", acme.token)


def test_the_child_serves_a_costly_request_and_this_process_the_others(served: tuple[Any, ScimClient]) -> None:
    app, acme = served
    child = app.state.costly_process
    assert child.pid not in (None, os.getpid())
    response = acme.post("/Bulk", json=_bulk(250, "bulk"))
    assert response.status_code == 200, response.text
    assert [op["status"] for op in response.json()["Operations"]] == ["201"] * 250
    assert app.state.offload.forwarded == 1
    # What the child wrote is in the shared database, read here (a small page: not forwarded).
    page = acme.get("/Users", params={"filter": 'userName sw "bulk"', "count": "10"})
    assert page.json()["totalResults"] == 250
    assert app.state.offload.forwarded == 1


def test_a_forwarded_page_is_the_page_served_here(served: tuple[Any, ScimClient]) -> None:
    app, acme = served
    assert acme.post("/Bulk", json=_bulk(300, "page")).status_code == 200
    params = {"count": str(COSTLY_PAGE_SIZE + 50), "attributes": "userName", "sortBy": "userName"}
    forwarded = acme.get("/Users", params=params)
    assert app.state.offload.forwarded == 2
    app.state.costly_process._ready = False  # as while the child restarts: served here
    here = acme.get("/Users", params=params)
    assert app.state.offload.forwarded == 2
    assert forwarded.status_code == here.status_code == 200
    assert forwarded.headers["content-type"] == here.headers["content-type"]
    assert forwarded.json() == here.json()
    assert len(forwarded.json()["Resources"]) == 250


def test_one_log_line_and_one_sample_per_forwarded_request(served: tuple[Any, ScimClient], json_lines: Any) -> None:
    app, acme = served
    before = _bulk_samples(app)
    response = acme.post("/Bulk", json=_bulk(3, "logged"))
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    assert "x-idsync-facts" not in response.headers
    assert response.headers.get_list("x-request-id") == [request_id]
    lines = [line for line in json_lines() if line["event"] == "http.request" and line["request_id"] == request_id]
    assert len(lines) == 1, lines
    assert lines[0]["tenant"] == "acme" and lines[0]["route"] == "/scim/v2/{tenant}/Bulk"
    assert lines[0]["credential_id"] and lines[0]["status"] == 200
    assert _bulk_samples(app) == before + 1


def _bulk_samples(app: Any) -> float:
    from prometheus_client import generate_latest

    text = generate_latest(app.state.metrics.registry).decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("idsync_http_requests_total{") and 'route="/scim/v2/{tenant}/Bulk"' in line
               and 'tenant="acme"' in line)


def test_a_client_cannot_pass_for_the_parent(served: tuple[Any, ScimClient], db: Database) -> None:
    """The child believes the parent's x-idsync-* headers; the parent strips a client's."""
    app, acme = served
    response = acme.post("/Bulk", json=_bulk(1, "spoof"), headers={
        "Authorization": "Bearer wrong", "X-IdSync-Client": "203.0.113.9:1", "X-IdSync-Facts": '{"tenant":"x"}'})
    assert response.status_code == 401
    assert "x-idsync-facts" not in response.headers
    assert app.state.offload.forwarded == 1

    def addresses() -> list[str]:  # the child records its rejections in the background
        with db.engine.connect() as conn:
            return [row[0] for row in conn.exec_driver_sql("SELECT client FROM rejected_requests")]

    _wait_until(addresses)
    assert addresses() == ["testclient"]


def test_a_path_with_encoded_characters_reaches_the_child_as_sent(served: tuple[Any, ScimClient]) -> None:
    app, acme = served
    body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
        {"op": "add", "path": "emails", "value": [{"value": f"x{i}@example.com"}]} for i in range(400)]}
    response = acme.patch("/Users/no%20such%C3%A9%3Fid", body)
    assert response.status_code == 404, response.text
    assert app.state.offload.forwarded == 1  # a costly body: answered by the child


def test_a_client_expecting_100_continue_gets_the_childs_answer(served: tuple[Any, ScimClient]) -> None:
    """The parent's server has answered the ``Expect`` already: the child must not answer it again."""
    app, acme = served
    response = acme.post("/Bulk", json=_bulk(2, "expect"), headers={"Expect": "100-continue"})
    assert response.status_code == 200, response.text
    assert app.state.offload.forwarded == 1


def test_a_body_past_the_limit_is_refused_here(served: tuple[Any, ScimClient]) -> None:
    app, acme = served
    limit = app.state.settings.max_body_bytes
    response = acme.http.post(f"{acme.base}/Bulk", content=b"[" + b" " * limit + b"]", headers={
        "Authorization": f"Bearer {acme.token}", "Content-Type": "application/scim+json"})
    assert response.status_code == 413
    assert app.state.offload.forwarded == 0


def test_a_child_gone_is_replaced_and_meanwhile_requests_are_served_here(served: tuple[Any, ScimClient]) -> None:
    app, acme = served
    child = app.state.costly_process
    first = child.pid
    child._process.kill()
    _wait_until(lambda: not child.available)
    assert acme.post("/Bulk", json=_bulk(2, "meanwhile")).status_code == 200  # served here
    assert app.state.offload.forwarded == 0
    _wait_until(lambda: child.available)
    assert child.pid != first and child.starts == 2
    assert acme.post("/Bulk", json=_bulk(2, "after")).status_code == 200
    assert app.state.offload.forwarded == 1


def test_the_apps_end_ends_the_child(settings: Settings, db: Database, tenants: TenantService) -> None:
    app = create_app(settings.model_copy(update={"costly_requests_process": True}), db)
    with TestClient(app):
        _wait_until(lambda: app.state.costly_process.available)
        process = app.state.costly_process._process
        directory = Path(app.state.costly_process.socket).parent
        assert directory.stat().st_mode & 0o777 == 0o700
    assert not process.is_alive()
    assert not directory.exists()


def test_off_when_the_setting_says_so(settings: Settings, db: Database) -> None:
    app = create_app(settings.model_copy(update={"costly_requests_process": False}), db)
    assert app.state.costly_process is None


@pytest.mark.parametrize("served_for_parent", [False, True])
def test_only_the_serving_process_runs_the_retention_job(settings: Settings, db: Database,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         served_for_parent: bool) -> None:
    from identity_sync.service.tombstones import TombstoneService

    runs: list[float] = []
    monkeypatch.setattr(TombstoneService, "purge_expired", lambda self: runs.append(time.monotonic()))
    app = create_app(settings.model_copy(update={"costly_requests_process": False,
                                                 "retention_interval_seconds": 0.05}), db,
                     served_for_parent=served_for_parent)
    with TestClient(app):
        time.sleep(0.5)
    assert (runs == []) is served_for_parent
