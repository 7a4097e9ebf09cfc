"""Background work of a serving process: the tombstone retention job (service/tombstones.py)
and the request history's flush (observability/history.py: every few seconds, and once more
when the process stops, so that a restart loses no count).

Every process runs it: with several workers or nodes, each purges what has expired and the
purge destroys each tombstone once (``storage.resources.purge``), so running it twice costs a
query, nothing more. The first run comes a minute after start (not a whole interval: a service
redeployed more often than the interval would otherwise never run it), then one per interval.
A failure (the database down) is logged and the next run tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio.to_thread
import structlog

from identity_sync.observability.history import FINAL_FLUSH_SECONDS, RequestHistory
from identity_sync.service.tombstones import TombstoneService

log = structlog.get_logger("identity_sync.jobs")

FIRST_RUN_AFTER_SECONDS = 60.0


async def _every(seconds: float, job: Callable[[], Any]) -> None:
    await asyncio.sleep(min(seconds, FIRST_RUN_AFTER_SECONDS))
    while True:
        try:
            await anyio.to_thread.run_sync(job)
        except Exception:  # a job must survive the database being away
            log.exception("job.failed", job=getattr(job, "__name__", "job"))
        await asyncio.sleep(seconds)


def lifespan(tombstones: TombstoneService, retention_interval_seconds: float,
             history: RequestHistory | None = None) -> Callable[[Any], Any]:
    """A Starlette lifespan running the retention job every ``retention_interval_seconds`` (0:
    never) and the request history's flush while the app serves."""

    @contextlib.asynccontextmanager
    async def run(_app: Any) -> AsyncIterator[None]:
        tasks = []
        if retention_interval_seconds > 0:
            tasks.append(asyncio.create_task(_every(retention_interval_seconds, tombstones.purge_expired)))
        if history is not None:
            tasks.append(asyncio.create_task(history.run()))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if history is not None:
                await history.flush_logged(FINAL_FLUSH_SECONDS)  # the counts since the last flush

    return run
