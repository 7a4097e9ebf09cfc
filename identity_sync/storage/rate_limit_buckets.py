"""The tenants' token buckets in PostgreSQL (``auth/ratelimit.py`` describes both stores): one row
per tenant in ``rate_limit_buckets``, refilled and taken from in one autocommitted statement on the
database clock, shared by every worker of every node. A database that is down surfaces as
:class:`~identity_sync.storage.errors.DatabaseUnavailable` (503 + Retry-After above)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from identity_sync.storage import sqltext
from identity_sync.storage.errors import DatabaseUnavailable, driver_error, unavailable

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
    A database that is down surfaces as :class:`DatabaseUnavailable` (503 + Retry-After)."""

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
            except DatabaseUnavailable as exc:
                if not exc.connection_lost:
                    raise
        else:
            tokens = self._take(key)
        return 0.0 if tokens >= 0 else -tokens / self.rate

    def _take(self, key: str) -> float:
        params = {"key": key, "burst": self.burst, "rate": self.rate}
        try:
            raw = self.engine.raw_connection()
        except Exception as exc:  # the driver's own error, or the pool's TimeoutError
            error = unavailable(exc) or driver_error(exc, self._dbapi)
            if error is exc:
                raise
            raise error from exc
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
            raise driver_error(exc, self._dbapi, self._sql, params, connection_invalidated=broken) from exc
        finally:
            raw.close()

    def close(self) -> None:
        self.engine.dispose()
