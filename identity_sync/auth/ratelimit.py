"""Per-tenant token buckets.

Each tenant has its own bucket (``rate`` tokens per second, at most ``burst`` saved up), so a
tenant that floods the service gets 429s while every other tenant's bucket is untouched.

Anything with ``take(key)`` returning the seconds to wait (0 when allowed) is a :class:`Limiter`.
Two stores (``web/limits.py`` picks one by the database's dialect):

* :class:`DatabaseBuckets` (PostgreSQL, ``storage/rate_limit_buckets.py``): one row per tenant in
  ``rate_limit_buckets``, refilled and taken from in one autocommitted ``INSERT … ON CONFLICT DO
  UPDATE … RETURNING`` on the database clock. Every worker of every node shares the tenant's
  one budget (issue 6: nothing that matters in process memory); the row lock serializes takers,
  so two processes never both get the last token, and no lock outlives the statement.
* :class:`MemoryBuckets` (SQLite, or forced): buckets in the process, exact for one worker. A
  write per request would take SQLite's single database-wide write lock, so on SQLite each of N
  workers behind one socket gets ``1/N`` of the rate and burst (``IDSYNC_WORKERS``), which the
  kernel's even spreading of connections makes about right.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Protocol

# The PostgreSQL store is storage's (SQL, a table, the driver's errors translated there); named
# here too, beside the in-process store, for whoever picks one (web/limits.py).
from identity_sync.storage.rate_limit_buckets import TAKE_SQL as TAKE_SQL
from identity_sync.storage.rate_limit_buckets import DatabaseBuckets as DatabaseBuckets


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
