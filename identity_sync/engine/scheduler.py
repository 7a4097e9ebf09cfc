"""The scheduler (issue 13, item 1): ``identity-sync engine`` — and ``serve --engine`` — run every
job that is on, each on its own interval, unattended.

* A job is **due** when it is ``active`` or ``quarantined`` and its ``next_run_at`` has come (a new
  job, ``job start`` and ``job restart`` make it due at once). After a cycle, engine/operations.py
  sets the next run: the job's interval after a completed cycle, the quarantine's next attempt,
  or at once after a cycle that was interrupted (it has work left).
* Due jobs run ``workers`` at a time, each cycle in a thread of its own (a cycle is a blocking
  call with its own event loop: engine/service.py). Which process runs a job is decided by the
  job's lease (engine/lease.py), so several engines on several machines share the jobs through
  PostgreSQL: a job never runs twice at once, and a dead engine's job is taken over when its
  lease expires (at most ``LEASE_SECONDS``). SQLite allows one engine process: a second one
  stops at once and says why (an exclusive lock on a file beside the database).
* ``stop()`` (SIGTERM, SIGINT): no new cycle starts; running cycles stop at their next object
  boundary (``CycleAborted("Interrupted")``, nothing half-written: links are saved per batch) and
  the jobs are due again, to resume where they left off.
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import sqlalchemy as sa
import structlog

from identity_sync.clock import format_timestamp
from identity_sync.engine.errors import CycleAborted
from identity_sync.engine.notify import Notifier
from identity_sync.engine.service import EngineService
from identity_sync.engine.tables import engine_jobs

log = structlog.get_logger("identity_sync.engine.scheduler")

#: How often the scheduler looks for due jobs when none is running.
POLL_SECONDS = 5.0


class EngineAlreadyRunning(RuntimeError):
    """A second engine process on one SQLite database."""


class Scheduler:
    def __init__(self, engine: EngineService, *, workers: int = 4, poll_seconds: float = POLL_SECONDS,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.engine = engine
        self.workers = workers
        self.poll_seconds = poll_seconds
        self.clock = clock or (lambda: datetime.now(UTC))
        self._stopping = threading.Event()
        self._running: dict[str, Future[None]] = {}
        self._lock_file: IO[str] | None = None
        self.notifier = Notifier(engine.db, engine.settings, clock=self.clock)
        #: Cycles this scheduler ran (completed or not), for logs and tests.
        self.cycles_run = 0

    # -- lifecycle -------------------------------------------------------------------------------

    def run_forever(self) -> None:
        """Run due jobs until :meth:`stop`; returns when every running cycle has stopped."""
        self._claim_sqlite()
        try:
            with ThreadPoolExecutor(self.workers, thread_name_prefix="engine-job") as pool:
                while not self._stopping.is_set():
                    self.tick(pool)
                    self._stopping.wait(self.poll_seconds)
                for future in list(self._running.values()):
                    future.result()
        finally:
            if self._lock_file is not None:
                self._lock_file.close()

    def stop(self) -> None:
        """Graceful: no new cycle; running cycles stop at an object boundary."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def tick(self, pool: ThreadPoolExecutor) -> list[str]:
        """Start every due job that is not running here yet; returns their names. Failure e-mails
        that could not be sent yet are tried again here (engine/notify.py; it never raises)."""
        self.notifier.deliver()
        self._running = {name: f for name, f in self._running.items() if not f.done()}
        started = []
        for name in self.due():
            if self._stopping.is_set() or len(self._running) >= self.workers:
                break
            if name in self._running:
                continue
            self._running[name] = pool.submit(self.run_job, name)
            started.append(name)
        return started

    def due(self) -> list[str]:
        """Names of the jobs due now, the longest-waiting first."""
        t = engine_jobs.c
        now = format_timestamp(self.clock())
        query = (sa.select(t.name).where(t.state.in_(("active", "quarantined")),
                                         sa.or_(t.next_run_at.is_(None), t.next_run_at <= now))
                 .order_by(t.next_run_at.is_(None).desc(), t.next_run_at, t.name))
        with self.engine.db.read() as conn:
            return list(conn.execute(query).scalars())

    def run_job(self, name: str) -> None:
        """One cycle of one job; every outcome is recorded by the engine, none escapes."""
        try:
            result = self.engine.run(name, should_stop=self._stopping.is_set)
            log.info("cycle completed", job=name, kind=result.kind, failed=result.counts.get("failed", 0))
        except CycleAborted as exc:
            if exc.error_code != "JobBusy":  # JobBusy: another engine runs it now
                log.warning("cycle stopped", job=name, error_code=exc.error_code)
        except Exception:  # a bug must not stop the other jobs
            log.exception("cycle crashed", job=name)
        finally:
            self.cycles_run += 1

    # -- one engine per SQLite database ----------------------------------------------------------

    def _claim_sqlite(self) -> None:
        url = sa.engine.make_url(self.engine.db.url)
        if not url.drivername.startswith("sqlite") or not url.database:
            return
        path = Path(url.database).with_suffix(".engine.lock")
        handle = path.open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise EngineAlreadyRunning(
                f"another engine process already runs the jobs of {url.database} (SQLite allows one; "
                "use PostgreSQL to run several)") from None
        self._lock_file = handle
