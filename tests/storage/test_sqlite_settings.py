"""What every SQLite connection of the service is set to (storage/db.py ``_sqlite_on_connect``):
the promises that rest on these settings, asserted on a real connection from the pool."""

from __future__ import annotations

import shutil
from pathlib import Path

from identity_sync.storage.db import Database


def test_a_committed_write_is_synced_and_reads_go_through_the_memory_map(migrated_template: Path,
                                                                         tmp_path: Path) -> None:
    shutil.copy(migrated_template, tmp_path / "settings.db")
    db = Database(f"sqlite:///{tmp_path / 'settings.db'}")
    try:
        with db.read() as conn:
            pragma = {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar_one()
                      for name in ("journal_mode", "synchronous", "mmap_size", "foreign_keys")}
    finally:
        db.dispose()
    # WAL with synchronous=FULL (2): the WAL is synced at each commit, so an answered write
    # survives a power loss, not only a crash of the process (NORMAL, 1, promised only that).
    assert pragma["journal_mode"] == "wal" and pragma["synchronous"] == 2
    assert pragma["mmap_size"] > 0 and pragma["foreign_keys"] == 1
