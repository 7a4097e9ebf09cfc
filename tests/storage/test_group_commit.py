"""Group commit on SQLite (storage/group_commit.py): writers queued for the single writer share a
transaction, each in its own savepoint; none returns before the commit holding its changes, a
failing writer loses only its own changes, and a failed commit fails every writer of the batch."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from identity_sync.storage.db import Database

TABLE = sa.table("t", sa.column("n"))


@pytest.fixture
def db(tmp_path: Path) -> Any:
    database = Database(f"sqlite:///{tmp_path}/group.db")
    with database.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (n INTEGER PRIMARY KEY)")
    yield database
    database.dispose()


def _committed(db: Database) -> list[int]:
    # A connection of its own: sees only what was committed.
    with db.engine.connect() as conn:
        return [row[0] for row in conn.exec_driver_sql("SELECT n FROM t ORDER BY n")]


def test_queued_writers_share_one_transaction_and_each_returns_after_its_commit(db: Database) -> None:
    assert db._group is not None
    first_inside, release_first = threading.Event(), threading.Event()
    seen_after_return: dict[int, list[int]] = {}
    errors: list[BaseException] = []
    begins: list[int] = []
    sa.event.listen(db.engine, "begin", lambda conn: begins.append(1) if conn.info.get("write") else None)

    def writer(n: int) -> None:
        try:
            with db.write() as conn:
                conn.execute(TABLE.insert().values(n=n))
                if n == 0:
                    first_inside.set()
                    release_first.wait(10)  # holds the turn while the others queue up
                if n == 3:
                    raise ValueError("this request's own mistake")
            seen_after_return[n] = _committed(db)
        except ValueError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(0,))]
    threads[0].start()
    assert first_inside.wait(10)
    threads += [threading.Thread(target=writer, args=(n,)) for n in range(1, 6)]
    for thread in threads[1:]:
        thread.start()
    while db._group._queued < 5:  # every other writer waits for the turn
        threading.Event().wait(0.01)
    release_first.set()
    for thread in threads:
        thread.join(20)

    assert len(errors) == 1 and str(errors[0]) == "this request's own mistake"
    assert _committed(db) == [0, 1, 2, 4, 5]  # the failing writer's row only is gone
    for n, seen in seen_after_return.items():
        assert n in seen  # each writer returned after its row was committed
    assert len(begins) < 5  # fewer transactions than writers: they shared


def test_a_failed_commit_fails_every_writer_of_the_batch(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    assert db._group is not None
    inside, release = threading.Event(), threading.Event()
    outcomes: dict[int, str] = {}

    def writer(n: int) -> None:
        try:
            with db.write() as conn:
                conn.execute(TABLE.insert().values(n=n))
                if n == 0:
                    inside.set()
                    release.wait(10)
            outcomes[n] = "ok"
        except RuntimeError:
            outcomes[n] = "failed"

    from sqlalchemy.engine import RootTransaction

    def failing_commit(self: Any) -> None:
        raise RuntimeError("disk full")

    first = threading.Thread(target=writer, args=(0,))
    first.start()
    assert inside.wait(10)
    others = [threading.Thread(target=writer, args=(n,)) for n in (1, 2)]
    for thread in others:
        thread.start()
    while db._group._queued < 2:
        threading.Event().wait(0.01)
    monkeypatch.setattr(RootTransaction, "commit", failing_commit)
    release.set()
    for thread in [first, *others]:
        thread.join(20)
    monkeypatch.undo()
    assert outcomes == {0: "failed", 1: "failed", 2: "failed"}
    assert _committed(db) == []
    with db.write() as conn:  # the writer is usable again
        conn.execute(TABLE.insert().values(n=7))
    assert _committed(db) == [7]


def test_a_lone_writer_commits_at_once(db: Database) -> None:
    with db.write() as conn:
        conn.execute(TABLE.insert().values(n=1))
    assert _committed(db) == [1] and db._group is not None and db._group._batch is None
