"""The Alembic migrations build exactly the schema the code declares in tables.py, from an empty
database, on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from identity_sync.storage.db import MIGRATIONS, Database
from identity_sync.storage.tables import metadata


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


def _head() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def test_migrations_match_the_declared_tables(empty_url: str) -> None:
    db = Database(empty_url)
    db.migrate()
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    db.dispose()
    assert diff == []


def test_migrating_twice_is_harmless(empty_url: str) -> None:
    db = Database(empty_url)
    db.migrate()
    db.migrate()
    with db.engine.connect() as conn:
        version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar_one()
    db.dispose()
    assert version == _head() >= "0003"
