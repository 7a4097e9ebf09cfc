"""The Alembic migrations build exactly the schema the code declares in tables.py, from an empty
database, on SQLite and on PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

import identity_sync.engine.tables  # noqa: F401  (the engine's tables are declared on the same metadata)
from identity_sync.storage.db import MIGRATIONS, Database
from identity_sync.storage.tables import metadata


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
