"""The request history behind the console's overview (docs/observability.md, Request history):
requests per tenant, minute and status class, kept 7 days in ``request_counts``.

Cheap by design, so that the serving path does not slow down: a request only adds one to a
counter in this process's memory (a dict under an uncontended lock; ``benchmarks/request_history.py``
measures it). Every :data:`FLUSH_SECONDS` — and when the process stops — a background task adds
the counts to the table with one upsert (``count = count + new``), so with ``serve --workers N``
and several nodes the table holds the sum of all of them. A flush that fails (the database away)
keeps its counts for the next one; past :data:`MAX_PENDING_KEYS` the oldest are dropped rather
than let memory grow. The ``tenant`` is the name of the tenant that authenticated, ``-`` for every
other request (a stranger naming tenants in URLs cannot add rows); the overview shows the
requests of the last 24 hours and their errors (status 400 and above).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import anyio.to_thread
import sqlalchemy as sa
import structlog
from sqlalchemy.dialects import postgresql, sqlite

from identity_sync.storage.db import Database
from identity_sync.storage.tables import request_counts

log = structlog.get_logger("identity_sync.history")
FLUSH_SECONDS = 10.0
#: The longest the last flush, when the process stops, may take.
FINAL_FLUSH_SECONDS = 5.0
KEEP_DAYS = 7
#: How often a process deletes rows older than :data:`KEEP_DAYS` (every process does; a second
#: delete finds nothing).
PRUNE_EVERY_SECONDS = 3_600.0
MAX_PENDING_KEYS = 100_000
NO_TENANT = "-"
#: The status class of ``status // 100`` (anything out of range is counted as 5xx). Two keys of one
#: flush may then name one row (0 and 5): the upsert is given them summed.
CLASSES = ("5xx", "1xx", "2xx", "3xx", "4xx", "5xx")
ERROR_CLASSES = ("4xx", "5xx")

Key = tuple[str, int, int]  # tenant, minute, status // 100


class RequestHistory:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock
        self._counts: dict[Key, int] = {}
        self._lock = threading.Lock()
        self._pruned_at = 0.0

    def add(self, tenant: str | None, status: int) -> None:
        """Count one request (the serving path: no I/O, no allocation but the key)."""
        # The class as a number (2 for 2xx), named only at flush: this runs for every request.
        key = (tenant or NO_TENANT, int(self.clock()) // 60, status // 100)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def pending(self) -> dict[Key, int]:
        with self._lock:
            return dict(self._counts)

    def flush(self) -> int:
        """Add the counts so far to the table; returns how many rows were written. Blocking: call
        it off the event loop."""
        with self._lock:
            counts, self._counts = self._counts, {}
        if counts:
            try:
                self._write(counts)
            except Exception:
                self._keep(counts)
                raise
        now = self.clock()
        if now - self._pruned_at >= PRUNE_EVERY_SECONDS:
            self._pruned_at = now
            oldest = int(now) // 60 - KEEP_DAYS * 24 * 60
            with self.db.write() as conn:
                conn.execute(sa.delete(request_counts).where(request_counts.c.minute < oldest))
        return len(counts)

    def _write(self, counts: dict[Key, int]) -> None:
        merged: dict[tuple[str, int, str], int] = {}
        for (tenant, minute, index), count in counts.items():
            key = (tenant[:64], minute, CLASSES[index] if 0 < index < 6 else "5xx")
            merged[key] = merged.get(key, 0) + count
        rows = [{"tenant": t, "minute": m, "status_class": c, "count": n} for (t, m, c), n in sorted(merged.items())]
        with self.db.write() as conn:
            insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
            statement = insert(request_counts)
            # Sorted: two processes upserting the same keys take their row locks in one order
            # (PostgreSQL), never each waiting for the other.
            conn.execute(statement.on_conflict_do_update(
                index_elements=["tenant", "minute", "status_class"],
                set_={"count": request_counts.c.count + statement.excluded.count}),
                rows)

    def _keep(self, counts: dict[Key, int]) -> None:
        with self._lock:
            for key, count in counts.items():
                self._counts[key] = self._counts.get(key, 0) + count
            if len(self._counts) > MAX_PENDING_KEYS:
                for key in sorted(self._counts, key=lambda k: k[1])[:len(self._counts) - MAX_PENDING_KEYS]:
                    del self._counts[key]

    async def run(self, seconds: float = FLUSH_SECONDS) -> None:
        """Flush every ``seconds`` until cancelled (web/jobs.py then flushes once more)."""
        while True:
            await asyncio.sleep(seconds)
            await self.flush_logged()

    async def flush_logged(self, within: float | None = None) -> None:
        """Flush, logging a failure; ``within`` seconds at most (the last flush at shutdown: a
        database that hangs must not hold the process up — those counts are then lost)."""
        try:
            with anyio.fail_after(within):
                await anyio.to_thread.run_sync(self.flush, abandon_on_cancel=within is not None)
        except TimeoutError:
            log.warning("history.flush_timed_out", seconds=within)
        except Exception as exc:  # the database away: counts kept for the next flush
            log.warning("history.flush_failed", error=type(exc).__name__)
