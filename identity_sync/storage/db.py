"""Engine creation, transactions and migrations.

SQLite is used in WAL mode with a busy timeout, and every write transaction starts with
``BEGIN IMMEDIATE``: the write lock is taken up front, so two concurrent writers queue on the
busy timeout instead of one failing with "database is locked" when it upgrades a read lock.
Within one process, writers also queue on a lock of their own first: SQLite's busy handler polls
with sleeps of up to 100 ms, which under 8 concurrent writers gave p99 latencies of 0.7 s and
stalls of 2-3 s; a FIFO-ish mutex hands the database over the moment it is free.

Every entry point (:meth:`Database.write`, :meth:`~Database.read`, :meth:`~Database.fast_read`,
:meth:`~Database.has_schema`, :meth:`~Database.migrate`) raises :class:`DatabaseUnavailable`
(``errors.py``) when the database is down, unreachable, out of connections or locked past the
busy timeout — also for the statements the caller runs inside the block, whose errors pass
through the context manager: the layers above never catch SQLAlchemy's exceptions for that.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection, Engine

from identity_sync import nonblocking
from identity_sync.storage import files
from identity_sync.storage.errors import driver_error, translated
from identity_sync.storage.group_commit import GroupCommit
from identity_sync.storage.marks import PositionMarks
from identity_sync.storage.sqltext import DriverConnection
from identity_sync.storage.write_turn import WriteTurn

MIGRATIONS = Path(__file__).parent / "migrations"
#: ``Connection.info`` key set by :func:`auth_changed`.
AUTH_CHANGED = "auth_changed"
#: The PostgreSQL advisory lock (one bigint key space per database) that serialises migrations:
#: any constant that nothing else of ours takes; "idsync" in ASCII, for whoever finds it in pg_locks.
MIGRATION_LOCK_KEY = 0x696473796E63


def _json_dumps(value: object) -> str:
    return orjson.dumps(value).decode()


def create_engine(url: str, *, autocommit: bool = False) -> Engine:
    """The service's engine for ``url``. ``autocommit=True`` (PostgreSQL only) gives a small pool of
    autocommit connections for one-statement writes outside any request transaction (the shared
    rate-limit buckets, ``auth/ratelimit.py``): no BEGIN/COMMIT round trips, no ping at checkout —
    its user retries once on a fresh connection instead."""
    if url.startswith("sqlite"):
        if autocommit:
            raise ValueError("autocommit engines are for PostgreSQL only")
        file = sqlite_file(url)
        if file is not None:
            files.private_sqlite_file(file)
        engine = sa.create_engine(
            url, json_serializer=_json_dumps, json_deserializer=orjson.loads, pool_size=8, max_overflow=16
        )
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        sa.event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    parsed = sa.engine.make_url(url)
    connect_args: dict[str, object] = {}
    if "prepare_threshold" in parsed.query:
        # Not a libpq parameter but a psycopg one: `?prepare_threshold=none` turns server-side
        # prepared statements off, which PgBouncer in transaction mode (< 1.21) needs.
        value = str(parsed.query["prepare_threshold"])
        connect_args["prepare_threshold"] = None if value.lower() in ("none", "") else int(value)
        parsed = parsed.difference_update_query(["prepare_threshold"])
    if autocommit:
        return sa.create_engine(parsed, isolation_level="AUTOCOMMIT", pool_pre_ping=False, pool_size=4,
                                max_overflow=4, pool_timeout=30, connect_args=connect_args)
    # pool_pre_ping: a connection broken by a database restart is replaced at checkout instead of
    # failing the request that drew it; a request that finds the database down gets 503.
    # pool_timeout: a request waiting for a free connection gives up (503) instead of hanging.
    # READ COMMITTED whatever the server's default: the writes lock what they read (FOR UPDATE,
    # FOR KEY SHARE) and rely on seeing what committed meanwhile; under REPEATABLE READ most
    # concurrent creates of one tenant failed with serialization errors.
    return sa.create_engine(
        parsed, json_serializer=_json_dumps, json_deserializer=orjson.loads, pool_pre_ping=True,
        pool_size=5, max_overflow=10, pool_timeout=30, connect_args=connect_args,
        isolation_level="READ COMMITTED",
    )


_MMAP_BYTES = 2**31 - 2**16  # SQLITE_MAX_MMAP_SIZE's default (0x7fff0000)
#: How often SQLite asks a connection reading without waiting whether its deadline has passed
#: (virtual-machine steps; a lookup by userName runs about 70, a page of 100 users about 1,000).
_STEPS_BETWEEN_DEADLINE_CHECKS = 20_000


def _sqlite_on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    # Let us issue BEGIN ourselves (pysqlite's implicit transactions would defer the lock).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: the WAL is synced at every commit, so a write answered 201/200 survives a power loss
    # too, not only a crash of the process (NORMAL's promise). Group commit (group_commit.py)
    # shares one sync among the writers waiting together.
    cursor.execute("PRAGMA synchronous=FULL")
    # Pages read through a memory map: a page the OS has cached costs no read() call and no copy
    # into each connection's own cache (a large database's B-tree pages are mostly outside the
    # per-connection cache). Address space only; SQLite's own maximum.
    cursor.execute(f"PRAGMA mmap_size={_MMAP_BYTES}")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    # LIKE must be case-sensitive: case rules are applied to the indexed keys, not by SQL.
    cursor.execute("PRAGMA case_sensitive_like=ON")
    cursor.close()


def _sqlite_on_begin(connection: Connection) -> None:
    # Reads run in autocommit: each statement sees a consistent snapshot by itself, and an
    # explicit BEGIN/ROLLBACK pair per request cost more than the typical lookup query.
    if connection.info.get("write"):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def auth_changed(conn: Connection) -> None:
    """Mark the write transaction on ``conn`` as one that may end a credential's validity: when it
    commits, the authentication epoch changes (:meth:`Database.auth_epoch`), and every worker of
    every node drops the verified credentials it cached."""
    conn.info[AUTH_CHANGED] = True


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (``None`` for another database, memory or a ``file:`` URI)."""
    if not url.startswith("sqlite"):
        return None
    database = sa.engine.make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser()


class Database:
    """The engine plus the two kinds of transaction services use."""

    def __init__(self, url: str, *, writes_yield: bool = False) -> None:
        """``writes_yield``: this process's writes of a SQLite file wait while another process's
        wait (the child serving costly requests, web/offload.py; storage/write_turn.py)."""
        self.url = url
        self.engine = create_engine(url)
        self._write_lock = threading.Lock() if self.engine.dialect.name == "sqlite" else None
        self._autocommit: Engine | None = None
        self._autocommit_lock = threading.Lock()
        #: Where recent index pages of unfiltered lists ended, for the next page to seek from.
        self.marks = PositionMarks()
        #: Tenant ids by name, remembered (storage/tenants.py, ``tenant_id_named``).
        self.tenant_ids: dict[str, str] = {}
        file = sqlite_file(url) if self.engine.dialect.name == "sqlite" else None
        self._epoch_file = Path(f"{file}.auth-epoch") if file is not None else None
        self._epoch_memory = 0  # an in-memory SQLite database: one process, a counter is enough
        #: SQLite files: concurrent writers share transactions (group_commit.py).
        self._turn = WriteTurn(file, yields=writes_yield) if file is not None else None
        self._group = GroupCommit(self.engine, self._committed, between_processes=self._turn) \
            if file is not None else None
        #: Connections kept by the threads that read without waiting (the event loop's): each
        #: thread uses only its own; all are closed by dispose().
        self._thread_connections = threading.local()
        self._own_connections: list[Any] = []
        self._own_connections_lock = threading.Lock()

    def autocommit_engine(self) -> Engine:
        """The small autocommit pool (PostgreSQL) for one-statement writes outside any request
        transaction — the shared rate-limit buckets; made on first use, disposed with the rest."""
        with self._autocommit_lock:
            if self._autocommit is None:
                self._autocommit = create_engine(self.url, autocommit=True)
            return self._autocommit

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction, committed when the block ends (rolled back if it raises); on a
        SQLite file, possibly together with other threads' blocks (group_commit.py) — still
        committed before this returns."""
        nonblocking.refuse("a write")
        with translated():
            if self._group is not None:
                with self._group.write() as conn:
                    yield conn
                return
            with self._write_lock or nullcontext(), self.engine.connect() as conn:
                conn.info["write"] = True
                try:
                    with conn.begin():
                        yield conn
                        if conn.info.get(AUTH_CHANGED) and conn.dialect.name == "postgresql":
                            # In the transaction of the change: visible exactly when the change is.
                            conn.exec_driver_sql("UPDATE auth_epoch SET generation = generation + 1 WHERE id = 1")
                    if conn.info.get(AUTH_CHANGED) and conn.dialect.name != "postgresql":
                        self._bump_epoch_file()  # after the commit: see auth_epoch()
                finally:
                    conn.info["write"] = False
                    conn.info.pop(AUTH_CHANGED, None)

    # -- the authentication epoch ------------------------------------------------------------------

    def auth_epoch(self) -> object:
        """A value that changes whenever a committed write may have ended a credential's validity
        (:func:`auth_changed`); read before reading credentials, so a cache entry is never newer
        than the epoch it is filed under. PostgreSQL: the ``auth_epoch`` row, changed in the
        transaction of the change (every node sees both at once). SQLite: the size of a file
        beside the database, one byte appended after each such commit — one ``stat`` per
        request instead of a query; every process that opens the file runs on this machine. The
        commit and the append are not atomic: a request arriving between the two (microseconds)
        can still pass, none after the revoking command returned."""
        if self.engine.dialect.name == "postgresql":
            with self.fast_read() as conn:
                return conn.exec_driver_sql("SELECT generation FROM auth_epoch WHERE id = 1", {}).scalar_one()
        if self._epoch_file is None:
            return self._epoch_memory
        try:
            stat = self._epoch_file.stat()
        except FileNotFoundError:
            return 0
        return (stat.st_ino, stat.st_size)

    def _committed(self, auth_changed: bool) -> None:
        if auth_changed:
            self._bump_epoch_file()

    def _bump_epoch_file(self) -> None:
        if self._epoch_file is None:
            self._epoch_memory += 1
            return
        # O_APPEND: concurrent bumps of several processes each add their byte, none is lost.
        fd = os.open(self._epoch_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, b".")
        finally:
            os.close(fd)

    @contextmanager
    def fast_read(self) -> Iterator[DriverConnection]:
        """A pooled driver connection for the prepared per-request reads (``sqltext.py``); inside
        a non-blocking attempt (``nonblocking.py``), the calling thread's own connection, never
        the pool's (whose checkout may wait)."""
        if nonblocking.active():
            with self._read_without_waiting() as conn:
                yield conn
            return
        dbapi = self.engine.dialect.dbapi
        try:
            with translated():  # the pool's timeout
                raw = self.engine.raw_connection()
        except Exception as exc:
            # Engine.raw_connection() lets the driver's own error through (Connection wraps it).
            error = driver_error(exc, dbapi)
            if error is exc:
                raise
            raise error from exc
        try:
            # DriverConnection raises DatabaseUnavailable itself; other SQLAlchemy errors of the
            # block (a Core statement run on another connection) are translated here.
            with translated():
                yield DriverConnection(raw, self.engine.dialect.name, dbapi)
        finally:
            raw.close()  # back to the pool, which rolls back whatever the driver left open

    @property
    def reads_without_waiting(self) -> bool:
        """Whether reads can run inside a non-blocking attempt: on a SQLite file, where a read
        waits for nothing (WAL: readers never wait for the writer) and a thread may keep a
        connection of its own. Not PostgreSQL: every statement waits for the network."""
        return self._epoch_file is not None

    @contextmanager
    def _read_without_waiting(self) -> Iterator[DriverConnection]:
        """The calling thread's own connection (made on first use, outside the pool), whose
        statements SQLite interrupts once the attempt is past its deadline."""
        if not self.reads_without_waiting:
            raise nonblocking.WouldBlock("a connection from the pool")
        own = getattr(self._thread_connections, "own", None)
        if own is None:
            fairy = self.engine.raw_connection()  # the pool's set-up (WAL, pragmas), then its own
            own = fairy.driver_connection
            assert own is not None
            fairy.detach()
            # Every N virtual-machine steps: a point lookup runs fewer and is never interrupted.
            own.set_progress_handler(nonblocking.expired, _STEPS_BETWEEN_DEADLINE_CHECKS)
            self._thread_connections.own = own
            with self._own_connections_lock:
                self._own_connections.append(own)
        try:
            with translated():
                yield DriverConnection(own, "sqlite", self.engine.dialect.dbapi)
        except Exception as exc:
            if nonblocking.expired():  # interrupted by the progress handler, or simply late
                raise nonblocking.WouldBlock("deadline") from exc
            raise
        finally:
            own.rollback()  # reads in autocommit leave no transaction open: this costs nothing

    @contextmanager
    def read(self) -> Iterator[Connection]:
        nonblocking.refuse("a connection from the pool")
        with translated(), self.engine.connect() as conn, conn.begin():
            yield conn

    def has_schema(self) -> bool:
        """Whether migrations were ever applied here (Alembic's version table exists)."""
        with translated(), self.engine.connect() as conn:
            return sa.inspect(conn).has_table("alembic_version")

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (idempotent), one process at a time:
        nodes started together would otherwise all find the database empty and race to create
        the same tables (issue 11). Whoever waited finds the schema at head and does nothing."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with translated(), self._migration_lock(), self.engine.connect() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            conn.commit()

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        """PostgreSQL: a transaction-level advisory lock taken in a transaction kept open on a
        connection of its own for the whole migration (the migrating connection's transactions are
        alembic's to end). Transaction-level rather than session-level: it is released whatever
        happens to this process (its connection closes, its transaction ends), and it stays on one
        server connection also through PgBouncer in transaction mode. SQLite: an
        exclusive ``flock`` on a file beside the database — SQLite has no lock that outlives a
        transaction, and alembic runs each SQLite migration in a transaction of its own, so its
        write lock would let a second process in between two migrations. Every process that can
        open a SQLite file runs on its machine, so a file lock covers them all."""
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as locker, locker.begin():
                locker.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
                yield
            return
        file = sqlite_file(self.url)
        if file is None:  # an in-memory database: one connection's, nothing to race with
            yield
            return
        import fcntl

        files.private_directory(file.parent)
        fd = os.open(f"{file}.migrate-lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released when fd is closed, also by a process that dies
            yield
        finally:
            os.close(fd)

    def dispose(self) -> None:
        with self._own_connections_lock:
            own, self._own_connections = self._own_connections, []
        for connection in own:
            with suppress(Exception):  # closed from another thread, or already gone
                connection.close()
        self._thread_connections = threading.local()
        self.engine.dispose()
        if self._turn is not None:
            self._turn.close()
        if self._autocommit is not None:
            self._autocommit.dispose()
