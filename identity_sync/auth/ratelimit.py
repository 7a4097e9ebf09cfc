"""Per-tenant token buckets.

Each tenant has its own bucket (``rate`` tokens per second, at most ``burst`` saved up), so a
tenant that floods the service gets 429s while every other tenant's bucket is untouched.

Anything with ``take(key)`` returning the seconds to wait (0 when allowed) is a :class:`Limiter`.
Two stores (``web/limits.py`` picks one by the database's dialect):

* :class:`DatabaseBuckets` (PostgreSQL): one row per tenant in ``rate_limit_buckets``, refilled and
  taken from in one autocommitted ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` on the database
  clock. Every worker of every node shares the tenant's one budget (issue 6: nothing that matters
  in process memory); the row lock serializes takers, so two processes never both get the last
  token, and no lock outlives the statement.
* :class:`MemoryBuckets` (SQLite, or forced): buckets in the process, exact for one worker. A
  write per request would take SQLite's single database-wide write lock, so on SQLite each of N
  workers behind one socket gets ``1/N`` of the rate and burst (``IDSYNC_WORKERS``), which the
  kernel's even spreading of connections makes about right.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Protocol

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from identity_sync.storage import sqltext


class Limiter(Protocol):
    def take(self, key: str) -> float:
        """Take one token from ``key``'s bucket: 0.0 if allowed, else seconds until one is free."""
        ...


class Unlimited:
    def take(self, key: str) -> float:
        return 0.0


class MemoryBuckets:
    """Token buckets in this process, one per key, thread-safe."""

    def __init__(self, rate: float, burst: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst = rate, burst
        self._monotonic = time.monotonic  # replaced by tests that need a fake clock
        self._buckets: dict[str, list[float]] = {}  # key -> [tokens, updated_at]
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        now = self._monotonic()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) > 100_000:
                    # Forget the oldest bucket, never all of them: wiping every bucket would let
                    # anyone reset a tenant's budget by naming enough other keys.
                    del self._buckets[next(iter(self._buckets))]
                bucket = self._buckets[key] = [self.burst, now]
            tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
            if tokens >= 1.0:
                bucket[0] = tokens - 1.0
                return 0.0
            bucket[0] = tokens
            return (1.0 - tokens) / self.rate


def retry_after(wait: float) -> int:
    """``Retry-After`` is an integer number of seconds: round up, at least 1."""
    return max(1, math.ceil(wait))


def create_limiter(rate: float, burst: int, workers: int = 1) -> Limiter:
    """In-process buckets; ``workers`` (``Settings.workers``) processes behind one socket share the rate."""
    if rate <= 0:
        return Unlimited()
    workers = max(1, workers)
    return MemoryBuckets(rate / workers, max(1.0, burst / workers))


#: Refill and take in one statement. ``tokens`` holds what is left after this request's token was
#: taken: >= 0 means the request was allowed; a refused request stores its (< 1) tokens minus one,
#: i.e. a value in [-1, 0), which the next refill adds back. So RETURNING one number says both
#: whether the request may pass and, when not, how long until a token is free (``-tokens / rate``).
#: On a conflict the row is locked first and SET is evaluated on the newest committed version,
#: so concurrent takers in any process queue on the row and each sees the others' takes.
TAKE_SQL = """
INSERT INTO rate_limit_buckets AS b (tenant_id, tokens, updated_at)
VALUES ({key}, {burst} - 1, clock_timestamp())
ON CONFLICT (tenant_id) DO UPDATE SET
    tokens = least({burst}, CASE WHEN b.tokens < 0 THEN b.tokens + 1 ELSE b.tokens END
                   + greatest(0.0, extract(epoch FROM clock_timestamp() - b.updated_at)::float8) * {rate}) - 1,
    updated_at = clock_timestamp()
RETURNING tokens"""


class DatabaseBuckets:
    """The tenants' buckets in PostgreSQL, shared by every process on the database.

    ``engine`` is an autocommit engine (``storage.db.create_engine(url, autocommit=True)``):
    each take is its own one-statement transaction, one round trip, never inside the request's
    transaction. Its pool does not ping at checkout (that would double the round trips); a
    connection a database restart broke is thrown away and the take retried on another one.
    A database that is down surfaces as SQLAlchemy's ``OperationalError`` (503 + Retry-After)."""

    def __init__(self, engine: Engine, rate: float, burst: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        if engine.dialect.name != "postgresql":
            raise ValueError("the database rate-limit store needs PostgreSQL")
        self.engine, self.rate, self.burst = engine, float(rate), float(burst)
        self._sql = sqltext._prepare(TAKE_SQL, "postgresql")
        self._dbapi: Any = engine.dialect.dbapi
        pool: Any = engine.pool
        self._attempts = pool.size() + getattr(pool, "_max_overflow", 0) + 1

    def take(self, key: str) -> float:
        # After a database restart every pooled connection is dead: each is thrown away in turn
        # (a dead socket fails at once), then a new one is made or the database is still down.
        for _ in range(self._attempts - 1):
            try:
                tokens = self._take(key)
                break
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
        else:
            tokens = self._take(key)
        return 0.0 if tokens >= 0 else -tokens / self.rate

    def _take(self, key: str) -> float:
        params = {"key": key, "burst": self.burst, "rate": self.rate}
        try:
            raw = self.engine.raw_connection()
        except self._dbapi.Error as exc:
            raise DBAPIError.instance(None, None, exc, self._dbapi.Error) from exc
        try:
            cursor = raw.cursor()
            cursor.execute(self._sql, params)
            row = cursor.fetchone()
            assert row is not None  # INSERT … RETURNING: one row
            return float(row[0])
        except self._dbapi.Error as exc:
            # Only a lost connection is retried (not, say, a statement timeout).
            driver = raw.driver_connection
            broken = bool(getattr(driver, "broken", False) or getattr(driver, "closed", False))
            if broken:
                raw.invalidate(exc)
            raise DBAPIError.instance(self._sql, params, exc, self._dbapi.Error,
                                      connection_invalidated=broken) from exc
        finally:
            raw.close()

    def close(self) -> None:
        self.engine.dispose()
