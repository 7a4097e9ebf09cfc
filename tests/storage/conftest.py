"""Fixtures of the storage tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def empty_url(request: pytest.FixtureRequest, db_kind: str, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all (the shared fixtures hand out migrated ones)."""
    if db_kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.db'}"
        return
    server = request.getfixturevalue("pg_server")
    name = f"idsync_empty_{uuid.uuid4().hex[:12]}"
    server.admin(f"CREATE DATABASE {name}")
    yield server.url(name)
    server.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
