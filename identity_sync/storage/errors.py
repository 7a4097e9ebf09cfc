"""The storage layer's own error for "the database cannot serve right now" (issue 11, item 7).

A database that is down, restarting, unreachable, out of connections or locked past its busy
timeout surfaces from every entry point of storage (``Database.write/read/fast_read``, the raw
SQL helpers of ``sqltext.py``, group commit, the shared rate-limit buckets, the auth epoch read)
as :class:`DatabaseUnavailable`, with the driver's error chained as its ``__cause__``. The layers
above catch this class and nothing of SQLAlchemy's: the web layer answers 503 + ``Retry-After``,
the console its "try again" page.

Only unavailability is translated. Everything else keeps its SQLAlchemy class, so that what the
services already translate (an ``IntegrityError`` of a unique key becomes 409) works as before,
and a bug (a missing table, bad SQL: SQLite reports both as ``OperationalError`` too) is a 500 to
look at, not a 503 that clients retry forever.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import exc as sa_exc

#: SQLite result codes (primary, ``sqlite_errorcode & 0xFF``) that mean "not now" rather than
#: "wrong": busy or locked past the busy timeout, the file unopenable or its disk failing or full,
#: out of memory, the WAL locking protocol lost a race.
_SQLITE_UNAVAILABLE = {
    5,   # SQLITE_BUSY
    6,   # SQLITE_LOCKED
    7,   # SQLITE_NOMEM
    10,  # SQLITE_IOERR
    13,  # SQLITE_FULL
    14,  # SQLITE_CANTOPEN
    15,  # SQLITE_PROTOCOL
}


class DatabaseUnavailable(Exception):
    """The database cannot serve this request now; the same request may succeed later.

    ``retry_after`` (seconds) is the hint a client gets in ``Retry-After``; ``connection_lost``
    says that the connection used was found dead (a database restart) and was thrown away, so a
    retry on another connection may succeed at once. The driver's error is the ``__cause__``;
    ``str()`` is its first line (host, port and database name at most: libpq never puts the
    password in a message), for operators' logs and the CLI."""

    def __init__(self, detail: str = "the database is unavailable", *, retry_after: int = 1,
                 connection_lost: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after
        self.connection_lost = connection_lost


def unavailable(exc: BaseException) -> DatabaseUnavailable | None:
    """``exc`` as a :class:`DatabaseUnavailable` if it says the database is unavailable, else
    ``None`` (the caller re-raises ``exc`` unchanged). The caller chains the cause (``raise
    translated from exc``)."""
    if isinstance(exc, DatabaseUnavailable):
        return exc
    if isinstance(exc, sa_exc.TimeoutError):  # every pooled connection busy for pool_timeout
        return DatabaseUnavailable("no database connection became free in time")
    if not isinstance(exc, sa_exc.DBAPIError):
        return None
    orig = exc.orig
    if exc.connection_invalidated:
        return DatabaseUnavailable(_first_line(orig or exc), connection_lost=True)
    if not isinstance(exc, sa_exc.OperationalError):
        return None  # IntegrityError, DataError, ProgrammingError...: not a matter of waiting
    if isinstance(orig, sqlite3.Error):
        code = getattr(orig, "sqlite_errorcode", None)
        if code is None or code & 0xFF not in _SQLITE_UNAVAILABLE:
            return None  # "no such table", a syntax error: a bug, not an outage
    # PostgreSQL's OperationalError is the class of the server shutting down, refusing or
    # dropping connections, cancelled statements, lock and serialization failures: all "retry".
    return DatabaseUnavailable(_first_line(orig or exc))


@contextmanager
def translated() -> Iterator[None]:
    """Run the block; a SQLAlchemy error of it that means the database is unavailable leaves it as
    :class:`DatabaseUnavailable` (cause chained), any other unchanged. The one place storage's
    entry points (db.py, group_commit.py) turn SQLAlchemy's errors into ours."""
    try:
        yield
    except (sa_exc.DBAPIError, sa_exc.TimeoutError) as exc:
        error = unavailable(exc)
        if error is None:
            raise
        raise error from exc


def driver_error(exc: BaseException, dbapi: Any, statement: str | None = None,
                 params: Any = None, *, connection_invalidated: bool = False) -> BaseException:
    """A DB-API driver's own exception (raised by a raw connection, which SQLAlchemy does not wrap)
    as SQLAlchemy would have raised it, then translated: :class:`DatabaseUnavailable` or the
    SQLAlchemy exception (``IntegrityError``...), for the caller to raise ``from exc``. Anything
    not of the driver (and anything when ``dbapi`` is None) is returned as is: re-raise it."""
    error_class: Any = getattr(dbapi, "Error", None)
    if error_class is None or not isinstance(exc, error_class):
        return exc
    wrapped = sa_exc.DBAPIError.instance(statement, params, exc, error_class,
                                         connection_invalidated=connection_invalidated)
    return unavailable(wrapped) or wrapped


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines and lines[0] else type(exc).__name__
