"""Nodes that start together migrate one at a time (issue 11): each of several processes'
``migrate`` on one fresh database succeeds, and the schema is built once, at head."""

from __future__ import annotations

import threading

import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory

from identity_sync.storage.db import MIGRATION_LOCK_KEY, MIGRATIONS, Database

NODES = 4


def _head() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def test_nodes_migrating_one_fresh_database_at_once_all_succeed(empty_url: str) -> None:
    # A Database per thread, each with its own engine and pool: as separate nodes would be.
    nodes = [Database(empty_url) for _ in range(NODES)]
    start = threading.Barrier(NODES)
    failures: list[BaseException] = []

    def migrate(db: Database) -> None:
        start.wait()
        try:
            db.migrate()
        except BaseException as exc:  # collected and asserted on below
            failures.append(exc)

    threads = [threading.Thread(target=migrate, args=(db,)) for db in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    try:
        assert not any(thread.is_alive() for thread in threads), "a migration is stuck"
        assert failures == []
        with nodes[0].engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all() == [_head()]
            assert "tenants" in sa.inspect(conn).get_table_names()
            if conn.dialect.name == "postgresql":  # released by every node
                held = conn.exec_driver_sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND "
                                            f"((classid::bigint << 32) | objid::bigint) = {MIGRATION_LOCK_KEY}")
                assert held.scalar_one() == 0
    finally:
        for db in nodes:
            db.dispose()
