"""Owner-only files and directories for what the service keeps on disk (the SQLite database, the
signing keys): it holds every tenant's personal data and every credential's digest, and the
default umask (``022``) would make it readable by every local user."""

from __future__ import annotations

import os
from pathlib import Path

import structlog

log = structlog.get_logger("identity_sync.storage")


def private_directory(path: Path) -> None:
    """``path`` and each missing parent created ``0700`` (``Path.mkdir(parents=True)`` would give
    the parents the default mode). Directories that exist keep theirs: an operator chose it."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            pass  # another process made it meanwhile


def private_sqlite_file(path: Path) -> None:
    """The database file created ``0600`` (and its directory ``0700``) before SQLite opens it;
    SQLite gives its ``-wal`` and ``-shm`` files the database file's mode. An existing file keeps
    its mode, but one that others can read is logged."""
    private_directory(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning("storage.database_file_readable_by_others", mode=oct(mode),
                        hint="chmod 600 the database file and its -wal and -shm files")
