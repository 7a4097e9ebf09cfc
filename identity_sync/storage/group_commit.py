"""Group commit for SQLite's single writer (issue 11, item 6).

SQLite lets one transaction write at a time, and each transaction pays a fixed cost: a pooled
connection checked out, ``BEGIN IMMEDIATE``, the commit (the WAL frames of every page it touched,
the same B-tree pages again and again for a run of creates), the connection returned. Under
concurrent writes the requests queued for the write lock; most of a create was that wait.

Here the writers that queue up share one transaction: the first opens it, each runs its work in a
savepoint of its own (a failing request rolls back its savepoint only, and gets its error), and
the last of the queue — or the one that fills the batch — commits for all. **No writer returns
before the commit that holds its changes** (and its audit event, written in the same work), and
if that commit fails every writer of the batch gets the error: a request is never answered for a
write that is not durable. The order of the writes is the order they took the turn, exactly as
with one transaction each; a later writer of a batch sees the earlier ones' changes, as it would
after their commits.

A writer alone commits at once (nobody is queued): a quiet server keeps its latency.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Connection, Engine

from identity_sync.storage import sqltext
from identity_sync.storage.write_turn import WriteTurn

#: Writers per shared transaction at most: bounds the latency the first one can wait for the last.
MAX_BATCH = 32


class _Batch:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.transaction = conn.begin()
        # The savepoint statements straight to the driver (its errors translated as
        # SQLAlchemy's would be: sqltext.py): SQLAlchemy's execution of a statement cost more than
        # SQLite's, and these two run for every write (11 % of a PATCH's samples in a py-spy profile).
        self.driver = sqltext.on_driver(conn)
        self.size = 0
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.auth_changed = False


class GroupCommit:
    def __init__(self, engine: Engine, after_commit: Callable[[bool], None],
                 max_batch: int = MAX_BATCH, between_processes: WriteTurn | None = None) -> None:
        self.engine = engine
        #: The other processes' writers of the same file (write_turn.py): taken for each batch.
        self.between_processes = between_processes
        self.max_batch = max_batch
        self._after_commit = after_commit
        self._turn = threading.Lock()  # whose work runs on the shared connection now
        self._state = threading.Lock()
        self._queued = 0  # writers waiting for the turn
        self._batch: _Batch | None = None

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """Run the block in this writer's savepoint of the shared transaction; return once the
        transaction that holds it committed. A failed commit fails every writer of the batch with
        its error; ``Database.write`` turns one meaning "unavailable" (locked past the busy timeout,
        the file unopenable, I/O failing) into a DatabaseUnavailable for each (errors.py)."""
        with self._state:
            self._queued += 1
        self._turn.acquire()
        with self._state:
            self._queued -= 1
        batch = self._batch
        try:
            if batch is None:
                if self.between_processes is not None:
                    self.between_processes.acquire()
                try:
                    conn = self.engine.connect()
                    conn.info["write"] = True  # BEGIN IMMEDIATE (db.py)
                    try:
                        batch = self._batch = _Batch(conn)
                    except BaseException:
                        conn.info["write"] = False
                        conn.close()
                        raise
                except BaseException:
                    if self.between_processes is not None:
                        self.between_processes.release()
                    raise
            batch.size += 1
            # Plain SAVEPOINT statements: SQLAlchemy's nested transaction objects cost more than
            # the two statements themselves. The name is ours alone (storage uses no savepoint
            # on SQLite, resources.py ``_guarded``).
            batch.driver.exec_driver_sql("SAVEPOINT group_commit_member", {})
        except BaseException:
            self._finish(batch)
            raise
        try:
            yield batch.conn
        except BaseException:
            try:
                batch.driver.exec_driver_sql("ROLLBACK TO SAVEPOINT group_commit_member", {})
                batch.driver.exec_driver_sql("RELEASE SAVEPOINT group_commit_member", {})
            finally:
                self._finish(batch)
            raise
        else:
            try:
                batch.driver.exec_driver_sql("RELEASE SAVEPOINT group_commit_member", {})
                batch.auth_changed |= bool(batch.conn.info.pop("auth_changed", False))
            except BaseException:
                self._finish(batch)
                raise
        self._finish(batch)
        batch.done.wait()
        if batch.error is not None:
            raise batch.error

    def _finish(self, batch: _Batch | None) -> None:
        """This writer's turn ends: commit the batch if nobody is queued to join it (or it is
        full), else leave that to the next writer; then hand the turn over."""
        try:
            if batch is None:
                return
            batch.conn.info.pop("auth_changed", None)
            with self._state:
                others = self._queued
            if others and batch.size < self.max_batch and batch.transaction.is_active:
                return  # the next writer joins this transaction and decides in its turn
            self._batch = None
            try:
                batch.transaction.commit()
            except BaseException as exc:
                batch.error = exc
                try:
                    batch.transaction.rollback()
                except Exception:  # the commit's error is the one every writer gets
                    pass
            finally:
                batch.conn.info["write"] = False
                try:
                    batch.conn.close()
                finally:  # a turn kept would stop every other process's writes for good
                    if self.between_processes is not None:
                        self.between_processes.release()
                if batch.error is None:
                    self._after_commit(batch.auth_changed)
                batch.done.set()
        finally:
            self._turn.release()
