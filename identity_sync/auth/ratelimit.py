"""Per-tenant token buckets.

Each tenant has its own bucket (``rate`` tokens per second, at most ``burst`` saved up), so a
tenant that floods the service gets 429s while every other tenant's bucket is untouched.

The seam for several workers or nodes (issue 6) is :class:`Limiter`: anything with ``take(key)``
returning the seconds to wait (0 when allowed). :class:`MemoryBuckets` keeps the buckets in the
process, which is exact for one worker. With N workers behind one socket the kernel spreads
connections evenly, so :func:`create_limiter` gives each worker ``1/N`` of the rate and burst
(``IDSYNC_WORKERS``). A shared bucket (one UPDATE per request on the database, or Redis) would be
exact across nodes but would put a write on every read request — on SQLite a global write lock —
for a limit whose purpose is protection, not billing; so the per-process share is the default and
a shared store can be dropped in behind the same protocol.
"""

from __future__ import annotations

import math
import os
import threading
import time
from typing import Protocol


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
                if len(self._buckets) > 100_000:  # forget idle buckets (they are full anyway)
                    self._buckets.clear()
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


def create_limiter(rate: float, burst: int, workers: int | None = None) -> Limiter:
    if rate <= 0:
        return Unlimited()
    workers = workers or int(os.environ.get("IDSYNC_WORKERS", "1") or 1)
    workers = max(1, workers)
    return MemoryBuckets(rate / workers, max(1.0, burst / workers))
