"""A bounded queue of small writes, done by a background thread of the process, that a request
hands over and never waits for: the rejections a tenant's admin sees (service/rejections.py) and
the time a token was last used (auth/authenticator.py). Both are records about requests, written
exactly when the database may be busiest; neither may slow or fail the request itself.

The thread is started by the first item and ends after a second with nothing to write, so that no
thread lingers for an app that is gone. A full queue drops the item (the caller logs it).
:meth:`BackgroundWriter.flush` waits for what was queued: the app's shutdown calls it, so that no
write outlives the app's database, and tests call it."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class BackgroundWriter(Generic[T]):
    def __init__(self, write: Callable[[T], object], name: str, size: int) -> None:
        self._write = write  # must not raise: it logs its own failures
        self._name = name
        self._queue: queue.Queue[T] = queue.Queue(size)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, item: T) -> bool:
        """Queue ``item``; returns at once (``False``: the queue is full, the item dropped)."""
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            return False
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
        return True

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued item is written, at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():  # under the lock: submit() sees the thread gone and starts one
                        self._thread = None
                        return
                continue
            try:
                self._write(item)
            finally:
                self._queue.task_done()
