"""What the service keeps on disk is readable by its owner only (issue 11): a new data directory
is ``0700``, a new SQLite database ``0600`` (and so its ``-wal``/``-shm`` files), whatever the
umask; an operator's existing modes are kept, but a database others can read is logged."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from identity_sync.auth.oauth import SigningKeys
from identity_sync.storage.db import Database


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """The usual umask (022), which used to leave the database world-readable."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_a_new_database_and_every_directory_made_for_it_are_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "data" / "nested" / "identity-sync.db"
    db = Database(f"sqlite:///{path}")
    try:
        db.migrate()
        with db.write() as conn:  # a write, so that the -wal and -shm files exist
            conn.exec_driver_sql("CREATE TABLE scratch (x INTEGER)")
    finally:
        db.dispose()

    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700 and _mode(path.parent.parent) == 0o700
    for companion in path.parent.glob("identity-sync.db-*"):
        assert _mode(companion) & 0o077 == 0, companion


def test_an_existing_database_keeps_its_mode_but_one_others_can_read_is_logged(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    path.touch(mode=0o644)
    os.chmod(path, 0o644)

    with structlog.testing.capture_logs() as logs:
        Database(f"sqlite:///{path}").dispose()

    assert _mode(path) == 0o644
    assert any(entry["event"] == "storage.database_file_readable_by_others" and entry["mode"] == "0o644"
               for entry in logs)


def test_an_existing_owner_only_database_logs_nothing(tmp_path: Path) -> None:
    path = tmp_path / "private.db"
    path.touch(mode=0o600)

    with structlog.testing.capture_logs() as logs:
        Database(f"sqlite:///{path}").dispose()

    assert not [entry for entry in logs if entry["event"].startswith("storage.")]


def test_the_signing_keys_directory_and_the_data_directory_above_it_are_owner_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh-data"
    keys = SigningKeys(data_dir / "signing-keys")

    keys.rotate()

    assert _mode(data_dir) == 0o700 and _mode(data_dir / "signing-keys") == 0o700
    assert all(_mode(key) == 0o600 for key in (data_dir / "signing-keys").iterdir())
