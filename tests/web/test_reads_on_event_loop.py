"""Reads served on the event loop itself (``Handlers.call``, ``nonblocking.py``): on a SQLite
file a GET runs its service call without the thread hop; a read that would wait gives up there
and runs again in a worker thread, admitted once; writes, and every request on PostgreSQL, run in
a worker thread as before."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from starlette.testclient import TestClient

from identity_sync import nonblocking
from identity_sync.config import Settings
from identity_sync.service.tenants import TenantService
from identity_sync.storage.db import Database
from identity_sync.web.app import create_app
from tests.conftest import ScimClient

PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
WORKER = "idsync-request"  # the name of the request pool's threads (web/app.py)


class _Threads:
    """Records, per service method of one app, the names of the threads its calls ran in."""

    def __init__(self, app: Any, *names: str, wait_once: str | None = None) -> None:
        self.seen: dict[str, list[str]] = {name: [] for name in names}
        resources = app.state.handlers.resources
        for name in names:
            setattr(resources, name, self._recording(name, getattr(resources, name), wait_once == name))

    def _recording(self, name: str, real: Callable[..., Any], would_wait: bool) -> Callable[..., Any]:
        def recorded(*args: Any, **kwargs: Any) -> Any:
            self.seen[name].append(threading.current_thread().name)
            if would_wait:
                nonblocking.refuse("a test's slow read")  # what a read that would wait does
            return real(*args, **kwargs)
        return recorded


@contextmanager
def _client(settings: Settings, db: Database, tenants: TenantService,
            **changes: Any) -> Iterator[tuple[Any, ScimClient]]:
    """The app with ``changes`` to the settings (no rate limit unless given), and tenant ``acme``."""
    app = create_app(settings.model_copy(update={"rate_limit_per_second": 0, **changes}), db)
    acme = tenants.create_tenant("acme")
    with TestClient(app, base_url="https://scim.example.test") as http:
        yield app, ScimClient(http, "acme", acme.token)


@pytest.fixture
def served(settings: Settings, db: Database, tenants: TenantService) -> Iterator[tuple[Any, ScimClient]]:
    with _client(settings, db, tenants) as served:
        yield served


def test_on_sqlite_a_get_runs_on_the_event_loop_and_a_patch_in_a_worker_thread(
        served: tuple[Any, ScimClient], db_kind: str) -> None:
    app, scim = served
    user = scim.create_user("loop@example.com")
    threads = _Threads(app, "get", "search", "patch")

    assert scim.get(f"/Users/{user['id']}").json()["userName"] == "loop@example.com"
    assert [u["id"] for u in scim.find('userName eq "loop@example.com"')] == [user["id"]]
    assert scim.patch(f"/Users/{user['id']}", {"schemas": [PATCH_SCHEMA], "Operations": [
        {"op": "replace", "path": "title", "value": "T"}]}).status_code == 200

    on_loop = db_kind == "sqlite"  # PostgreSQL: every statement waits for the network
    assert [name.startswith(WORKER) for name in threads.seen["get"]] == [not on_loop]
    assert [name.startswith(WORKER) for name in threads.seen["search"]] == [not on_loop]
    assert [name.startswith(WORKER) for name in threads.seen["patch"]] == [True]


def test_with_the_setting_at_zero_every_read_runs_in_a_worker_thread(
        settings: Settings, db: Database, tenants: TenantService) -> None:
    with _client(settings, db, tenants, read_on_event_loop_seconds=0) as (app, scim):
        user = scim.create_user("thread@example.com")
        threads = _Threads(app, "get")
        assert scim.get(f"/Users/{user['id']}").status_code == 200
        assert [name.startswith(WORKER) for name in threads.seen["get"]] == [True]


def test_a_read_that_would_wait_runs_again_in_a_worker_thread_and_counts_once_against_the_rate_limit(
        settings: Settings, db: Database, tenants: TenantService, db_kind: str) -> None:
    if db_kind != "sqlite":
        pytest.skip("on PostgreSQL no read is tried on the event loop")
    # Three requests' worth of tokens, refilled far too slowly to matter during the test.
    with _client(settings, db, tenants, rate_limit_per_second=0.001, rate_limit_burst=3) as (app, scim):
        user = scim.create_user("slow@example.com")  # the first token
        threads = _Threads(app, "get", wait_once="get")
        first, second = scim.get(f"/Users/{user['id']}"), scim.get(f"/Users/{user['id']}")
        assert (first.status_code, second.status_code) == (200, 200)  # each charged once, not twice
        assert first.json()["id"] == user["id"]
        # Each tried on the event loop, given up there, then served from a worker thread.
        assert [name.startswith(WORKER) for name in threads.seen["get"]] == [False, True, False, True]
        assert scim.get(f"/Users/{user['id']}").status_code == 429  # the burst is spent: it was counted


def test_a_read_past_its_deadline_gives_up_at_a_yield_point_and_is_served_whole_from_a_worker_thread(
        settings: Settings, db: Database, tenants: TenantService, db_kind: str) -> None:
    if db_kind != "sqlite":
        pytest.skip("on PostgreSQL no read is tried on the event loop")
    # A deadline no read can meet: the first rendered row of the page is past it.
    with _client(settings, db, tenants, read_on_event_loop_seconds=1e-9) as (app, scim):
        created = [scim.create_user(f"page{i}@example.com")["id"] for i in range(3)]
        threads = _Threads(app, "search")
        page = scim.get("/Users", params={"count": 10})
        assert page.status_code == 200
        assert sorted(r["id"] for r in page.json()["Resources"]) == sorted(created)  # whole, no row twice
        assert page.json()["totalResults"] == 3
        # Tried on the event loop, given up there, then served from a worker thread.
        assert [name.startswith(WORKER) for name in threads.seen["search"]] == [False, True]
