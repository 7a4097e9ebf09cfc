"""Reads inside a non-blocking attempt (``nonblocking.py``): on a SQLite file, the thread's own
connection, never the pool's, and interrupted past the deadline; everything else that would wait
(a write, a pooled connection, PostgreSQL's network) gives up before it starts."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from identity_sync import nonblocking
from identity_sync.storage.db import Database

#: A statement that runs for seconds in SQLite's virtual machine (ten million rows counted).
_LONG = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000000) "
         "SELECT count(*) FROM n")


def _tenants(db: Database) -> int:
    with db.fast_read() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM tenants", {}).scalar_one())


def test_only_a_sqlite_file_reads_without_waiting(db: Database, db_kind: str) -> None:
    assert db.reads_without_waiting is (db_kind == "sqlite")


def test_on_sqlite_an_attempt_reads_through_its_threads_own_connection_not_the_pool(db: Database, db_kind: str) -> None:
    if db_kind != "sqlite":
        with nonblocking.attempt(10), pytest.raises(nonblocking.WouldBlock):
            _tenants(db)  # PostgreSQL: every statement waits for the network
        return
    expected = _tenants(db)
    pool = db.engine.pool
    with nonblocking.attempt(10):
        with db.fast_read() as conn:
            assert pool.checkedout() == 0  # type: ignore[attr-defined]
            first = conn.exec_driver_sql("SELECT count(*) FROM tenants", {}).scalar_one()
        assert _tenants(db) == first == expected
        with db.fast_read() as again:
            assert again.raw is conn.raw  # kept for this thread
    other: list[object] = []

    def read_elsewhere() -> None:
        with nonblocking.attempt(10), db.fast_read() as conn:
            other.append(conn.raw)

    thread = threading.Thread(target=read_elsewhere)
    thread.start()
    thread.join()
    assert other and other[0] is not conn.raw  # each thread its own


def test_a_read_past_the_deadline_is_interrupted_and_gives_up(db: Database, db_kind: str) -> None:
    if db_kind != "sqlite":
        pytest.skip("PostgreSQL reads are never attempted without waiting")
    with nonblocking.attempt(0.01), pytest.raises(nonblocking.WouldBlock) as raised:
        with db.fast_read() as conn:
            conn.exec_driver_sql(_LONG, {}).all()
    assert "interrupted" in str(raised.value.__cause__)  # SQLite stopped it: not left to run for seconds
    with db.fast_read() as conn:  # outside an attempt the same statement runs to its end
        assert conn.exec_driver_sql("SELECT count(*) FROM (SELECT 1 UNION ALL SELECT 2)", {}).scalar_one() == 2
    with nonblocking.attempt(10):
        assert _tenants(db) >= 0  # the connection is still good after an interruption


def test_a_write_or_a_pooled_connection_inside_an_attempt_gives_up_before_starting(db: Database) -> None:
    before = _tenants(db)
    with nonblocking.attempt(10):
        with pytest.raises(nonblocking.WouldBlock, match="a write"), db.write() as conn:
            conn.exec_driver_sql("INSERT INTO tenants (id, name, status, created_at) "
                                 "VALUES ('t-x', 'x', 'active', '2026-01-01T00:00:00Z')")
        with pytest.raises(nonblocking.WouldBlock, match="pool"), db.read():
            pass
    assert _tenants(db) == before


def test_dispose_closes_the_threads_own_connections(tmp_path: Path, migrated_template: Path) -> None:
    shutil.copy(migrated_template, tmp_path / "x.db")
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with nonblocking.attempt(10), db.fast_read() as conn:
        own = conn.raw
    db.dispose()
    with pytest.raises(sqlite3.ProgrammingError):
        own.execute("SELECT 1")  # closed
