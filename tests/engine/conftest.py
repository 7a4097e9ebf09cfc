"""Fixtures of the engine's tests: real SCIM targets on loopback (tests/engine/targets.py).

``our_target`` runs once per test process and database kind (SQLite and PostgreSQL, like
``db_url``), ``scim2_target`` once per test process; tests share a target but never its data: each
one names its users and groups uniquely (:func:`unique`). Async tests run on asyncio through
anyio's plugin.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import fresh_database_url
from tests.engine.readback import Readback
from tests.engine.targets import Target, start_our_target, start_scim2_target


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def our_target(request: pytest.FixtureRequest, db_kind: str, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Target]:
    """This project's service (``identity-sync serve``) on SQLite or PostgreSQL, with a tenant, a
    bearer token and an OAuth client.

    Session-scoped: a start costs three interpreter start-ups (``serve``, ``tenant create``,
    ``client create``), and ~18 modules use it on each database kind; no test changes the
    tenant, its credentials or the server's settings, and every test's objects are its own."""
    directory = tmp_path_factory.mktemp("our-target")
    for db_url in fresh_database_url(request, db_kind, directory):
        target = start_our_target(db_url, directory / "data")
        try:
            yield target
        finally:
            target.stop()


@pytest.fixture(scope="session")
def scim2_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """scim2-server with the GlobalRelay extension (in memory: data lives as long as the session)."""
    target = start_scim2_target(tmp_path_factory.mktemp("scim2-server"))
    try:
        yield target
    finally:
        target.stop()


@pytest.fixture
def readback(our_target: Target) -> Iterator[Readback]:
    """Our service read back over SCIM, as the end-to-end tests check it."""
    reader = Readback(our_target)
    yield reader
    reader.close()


def unique(prefix: str) -> str:
    """A name no other test uses on a shared target."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
