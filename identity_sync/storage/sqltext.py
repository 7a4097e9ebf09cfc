"""Parameterized SQL text for the hot read paths, executed straight through the driver.

SQLAlchemy Core builds every statement as an expression tree and looks up its compiled form in
a cache on every execution; on the per-request reads (authenticate, get by id, filter queries)
that cost 0.3-0.9 ms each on this machine, several times the query itself. These statements are
written once as text with ``{name}`` markers, turned into the driver's placeholder style
(``:name`` for sqlite3, ``%(name)s`` for psycopg) once per dialect, and run with
``exec_driver_sql``. Values are always passed as parameters, never formatted into the text.
Inside a write transaction they run on its driver connection too (:func:`on_driver`); the rarer
statements keep using SQLAlchemy Core.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy.engine import Connection

from identity_sync.storage.errors import driver_error


def placeholder(dialect: str, name: str) -> str:
    return f"%({name})s" if dialect == "postgresql" else f":{name}"


@lru_cache(maxsize=256)
def _prepare(template: str, dialect: str) -> str:
    return template.format_map(_Markers(dialect))


class _Markers(dict[str, str]):
    def __init__(self, dialect: str) -> None:
        super().__init__()
        self.dialect = dialect

    def __missing__(self, name: str) -> str:
        return placeholder(self.dialect, name)


def prepared(template: str, dialect: str) -> str:
    """``template`` in the driver's placeholder style (for an executemany of many parameter sets)."""
    return _prepare(template, dialect)


def run(conn: Connection | DriverConnection, template: str, **params: Any) -> Any:
    """Execute ``template`` (``{name}`` marks a parameter) with ``params``."""
    return on_driver(conn).exec_driver_sql(_prepare(template, conn.dialect.name), params)


def on_driver(conn: Connection | DriverConnection) -> DriverConnection:
    """The driver connection under ``conn``, in the same transaction: statements run on it skip
    SQLAlchemy's execution (its context, result and event objects), which cost more than most of
    our statements on SQLite — the writes' as much as the reads'. The SQLAlchemy connection's
    ``info`` goes along (whether it is a write transaction: tests inject faults by it)."""
    if isinstance(conn, DriverConnection):
        return conn
    return DriverConnection(conn.connection.driver_connection, conn.dialect.name, conn.dialect.dbapi, conn.info)


class _Dialect:
    def __init__(self, name: str) -> None:
        self.name = name


class DriverConnection:
    """A DB-API connection with just what the prepared statements use (``dialect.name`` and
    ``exec_driver_sql``): the per-request reads skip SQLAlchemy's Connection and transaction
    objects, whose set-up cost more than a lookup query, and the writes its execution
    (:func:`on_driver`)."""

    def __init__(self, raw: Any, dialect: str, dbapi: Any = None, info: dict[Any, Any] | None = None) -> None:
        self.raw = raw
        self.dialect = _Dialect(dialect)
        self.dbapi = dbapi
        #: The SQLAlchemy connection's ``info`` when this is its driver connection, else empty.
        self.info = {} if info is None else info

    def exec_driver_sql(self, text: str, params: dict[str, Any] | list[dict[str, Any]]) -> Rows:
        """Run ``text`` once with ``params``, or once per parameter set of a list (executemany)."""
        try:
            cursor = self.raw.cursor()
            if isinstance(params, list):
                cursor.executemany(text, params)
            else:
                cursor.execute(text, params)
        except Exception as exc:
            # The driver's own errors, as on a SQLAlchemy connection: a database outage (the
            # server restarting, SQLite locked past the busy timeout) is DatabaseUnavailable
            # (errors.py: 503 + Retry-After above), anything else SQLAlchemy's class for it.
            error = driver_error(exc, self.dbapi, text, params)
            if error is exc:
                raise
            raise error from exc
        return Rows(cursor)


class Rows:
    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor

    def all(self) -> list[tuple[Any, ...]]:
        return self.cursor.fetchall()

    def first(self) -> tuple[Any, ...] | None:
        return self.cursor.fetchone()

    def first_mapping(self) -> dict[str, Any] | None:
        row = self.cursor.fetchone()
        return None if row is None else dict(zip((d[0] for d in self.cursor.description), row, strict=True))

    def scalar_one(self) -> Any:
        return self.cursor.fetchone()[0]

    @property
    def rowcount(self) -> int:
        return int(self.cursor.rowcount)


def json_value(value: Any) -> Any:
    """A JSON column as read through the driver: text on SQLite, already decoded on PostgreSQL."""
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


@dataclass
class Sql:
    """SQL text assembled at run time (filters) and its parameters."""

    dialect: str
    params: dict[str, Any] = field(default_factory=dict)
    _aliases: int = 0

    def param(self, value: Any) -> str:
        return self.named(f"p{len(self.params)}", value)

    def named(self, name: str, value: Any) -> str:
        self.params[name] = value
        return placeholder(self.dialect, name)

    def placeholder(self, name: str) -> str:
        return placeholder(self.dialect, name)

    def alias(self) -> str:
        self._aliases += 1
        return f"v{self._aliases}"

    def run(self, conn: Connection | DriverConnection, text: str) -> Any:
        return on_driver(conn).exec_driver_sql(text, self.params)
