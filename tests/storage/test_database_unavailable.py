"""Storage translates "the database cannot serve now" into its own DatabaseUnavailable (issue 11,
item 7), at every entry point, with the driver's error chained; every other database error keeps
its SQLAlchemy class (an IntegrityError stays one: the services turn unique keys into 409)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from identity_sync.auth.tokens import Principal
from identity_sync.errors import Conflict
from identity_sync.scim.registry import USER
from identity_sync.service.resources import ResourceService
from identity_sync.service.tenants import TenantService
from identity_sync.storage import sqltext
from identity_sync.storage.db import Database, create_engine
from identity_sync.storage.errors import DatabaseUnavailable, driver_error, unavailable
from identity_sync.storage.rate_limit_buckets import DatabaseBuckets
from identity_sync.storage.tables import tenants
from tests import pg

TENANT_ROW = {"id": "t-1", "name": "t1", "status": "active", "created_at": "2026-01-01T00:00:00Z"}


# -- PostgreSQL stopped ----------------------------------------------------------------------------


@pytest.fixture
def stoppable_pg(request: pytest.FixtureRequest) -> Iterator[pg.PostgresServer]:
    """A PostgreSQL cluster of this test's own: it gets stopped, which the shared one must not."""
    request.getfixturevalue("pg_server")  # skips (or fails under CI) without PostgreSQL binaries
    server = pg.start_server()
    assert server is not None
    yield server
    server.destroy()


def test_a_stopped_postgres_raises_database_unavailable_everywhere(stoppable_pg: pg.PostgresServer) -> None:
    stoppable_pg.admin("CREATE DATABASE idsync")
    db = Database(stoppable_pg.url("idsync"))
    db.migrate()
    tenant = TenantService(db).create_tenant("acme")
    buckets = DatabaseBuckets(create_engine(db.url, autocommit=True), rate=10, burst=10)
    assert buckets.take("acme") == 0.0  # the pools hold live connections now: they die with the server
    assert db.auth_epoch() is not None
    stoppable_pg.stop("fast")
    try:
        calls = {
            "read": lambda: _in(db.read(), lambda c: c.execute(sa.text("SELECT 1"))),
            "write": lambda: _in(db.write(), lambda c: c.execute(sa.text("SELECT 1"))),
            "fast_read": lambda: _in(db.fast_read(), lambda c: sqltext.run(c, "SELECT 1").all()),
            "auth_epoch": db.auth_epoch,
            "has_schema": db.has_schema,
            "migrate": db.migrate,
            "rate-limit buckets": lambda: buckets.take("acme"),
            "a service": lambda: TenantService(db).authenticate(f"Bearer {tenant.token}", "acme"),
        }
        for name, call in calls.items():
            with pytest.raises(DatabaseUnavailable) as raised:
                call()
            assert raised.value.__cause__ is not None, name  # the driver's error, for the log
            assert raised.value.retry_after >= 1, name
    finally:
        stoppable_pg.start()
    stoppable_pg.wait_ready()
    # Back: the same Database serves again (dead pooled connections replaced, not reused).
    with db.read() as conn:
        assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    assert buckets.take("acme") >= 0.0
    buckets.close()
    db.dispose()


def _in(manager: Any, work: Any) -> Any:
    with manager as conn:
        return work(conn)


# -- SQLite locked past the busy timeout -------------------------------------------------------------


@pytest.fixture
def sqlite_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated SQLite file whose connections wait 50 ms (not 30 s) for a lock."""
    path = tmp_path / "locked.db"
    path.write_bytes(Path(request.getfixturevalue("migrated_template")).read_bytes())
    db = Database(f"sqlite:///{path}")

    def short_busy_timeout(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=50")  # after db.py's own 30 s setting

    sa.event.listen(db.engine, "connect", short_busy_timeout)
    yield db
    db.dispose()


@pytest.fixture
def locked(sqlite_db: Database) -> Iterator[sqlite3.Connection]:
    """Another process's writer: holds SQLite's write lock until the test ends."""
    assert sqlite_db.engine.url.database is not None
    holder = sqlite3.connect(sqlite_db.engine.url.database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    yield holder
    holder.execute("ROLLBACK")
    holder.close()


def test_a_locked_sqlite_database_raises_database_unavailable(sqlite_db: Database,
                                                              locked: sqlite3.Connection) -> None:
    row = TENANT_ROW
    with pytest.raises(DatabaseUnavailable) as raised:
        with sqlite_db.write() as conn:  # group commit: BEGIN IMMEDIATE waits, then gives up
            conn.execute(sa.insert(tenants).values(**row))
    assert isinstance(raised.value.__cause__, sa.exc.OperationalError)
    assert "locked" in str(raised.value)
    # The raw-SQL path (the driver's own error, not SQLAlchemy's): the same class.
    with pytest.raises(DatabaseUnavailable) as raised, sqlite_db.fast_read() as conn:
        sqltext.run(conn, "INSERT INTO tenants (id, name) VALUES ({id}, {name})", id="x", name="x")
    assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
    # A service on top: the same (the web layer answers 503 + Retry-After).
    with pytest.raises(DatabaseUnavailable):
        TenantService(sqlite_db).create_tenant("acme")
    # Reads are not blocked by a writer (WAL): nothing to translate.
    with sqlite_db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(tenants)).scalar_one() == 0
    # Once the lock is gone, the same Database writes again.
    locked.execute("ROLLBACK")
    locked.execute("BEGIN")
    with sqlite_db.write() as conn:
        conn.execute(sa.insert(tenants).values(**row))


# -- what is not unavailability keeps its class ---------------------------------------------------


def test_an_integrity_error_is_not_database_unavailable(db: Database) -> None:
    row = TENANT_ROW
    with db.write() as conn:
        conn.execute(sa.insert(tenants).values(**row))
    with pytest.raises(sa.exc.IntegrityError) as raised, db.write() as conn:
        conn.execute(sa.insert(tenants).values(**row))
    assert not isinstance(raised.value, DatabaseUnavailable)
    # The raw-SQL helpers too: the driver's IntegrityError becomes SQLAlchemy's, as on a Connection.
    with pytest.raises(sa.exc.IntegrityError), db.fast_read() as conn:
        sqltext.run(conn, "INSERT INTO tenants (id, name, status, created_at) VALUES ({id}, {name}, 'a', 'b')",
                    id=row["id"], name=row["name"])



def test_a_unique_key_still_gives_409(service: ResourceService, acme: Principal) -> None:
    """The unique key on userName, translated by storage/resources.py into Conflict (409)."""
    service.create(acme, USER, {"userName": "ada@example.com"})
    with pytest.raises(Conflict) as refused:
        service.create(acme, USER, {"userName": "ADA@example.com"})
    assert refused.value.status == 409 and refused.value.scim_type == "uniqueness"


def test_a_bug_is_not_database_unavailable(db: Database) -> None:
    """A missing table is a bug to fix (500), not an outage to retry: also on SQLite, whose driver
    calls both OperationalError."""
    with pytest.raises(sa.exc.DBAPIError) as raised, db.read() as conn:
        conn.execute(sa.text("SELECT * FROM no_such_table"))
    assert not isinstance(raised.value, DatabaseUnavailable)


def test_what_counts_as_unavailable() -> None:
    lost = sa.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
    assert isinstance(unavailable(lost), DatabaseUnavailable)
    assert str(unavailable(lost)) == "server closed the connection unexpectedly"
    assert isinstance(unavailable(sa.exc.TimeoutError("QueuePool limit reached")), DatabaseUnavailable)
    invalidated = sa.exc.InterfaceError("SELECT 1", {}, Exception("the connection is closed"),
                                        connection_invalidated=True)
    found = unavailable(invalidated)
    assert found is not None and found.connection_lost
    busy = sqlite3.OperationalError("database is locked")
    busy.sqlite_errorcode = 5  # type: ignore[attr-defined]
    assert isinstance(unavailable(sa.exc.OperationalError("BEGIN", {}, busy)), DatabaseUnavailable)
    missing = sqlite3.OperationalError("no such table: x")
    missing.sqlite_errorcode = 1  # type: ignore[attr-defined]
    assert unavailable(sa.exc.OperationalError("SELECT", {}, missing)) is None
    assert unavailable(sa.exc.IntegrityError("INSERT", {}, Exception("duplicate key"))) is None
    assert unavailable(ValueError("not a database error")) is None
    # A driver's raw error: wrapped as SQLAlchemy would, then translated; anything else untouched.
    assert isinstance(driver_error(busy, sqlite3), DatabaseUnavailable)
    assert isinstance(driver_error(sqlite3.IntegrityError("UNIQUE"), sqlite3), sa.exc.IntegrityError)
    other = ValueError("x")
    assert driver_error(other, sqlite3) is other and driver_error(busy, None) is busy
