"""Per-request cost (ns) of the request history (observability/history.py): what the access-log
middleware adds to every request by counting it for the console's overview, next to what
``Metrics.record`` costs in all (the Prometheus counter and histogram included), and the cost of
one flush of a busy interval (200 tenants x 4 status classes, one upsert) — paid every 10 s by a
background task, off the request path.

Run: ``.venv/bin/python benchmarks/request_history.py`` (a few seconds; a throw-away SQLite database)."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from identity_sync.observability.history import RequestHistory
from identity_sync.observability.metrics import Metrics
from identity_sync.storage.db import Database


def _per_call_ns(fn: Callable[[], None], n: int = 200_000) -> float:
    for _ in range(10_000):
        fn()
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - started) / n * 1e9)
    return statistics.median(runs)


def main() -> None:
    directory = Path(tempfile.mkdtemp())
    db = Database(f"sqlite:///{directory}/bench.db")
    db.migrate()
    history = RequestHistory(db)
    metrics = Metrics(db)

    def empty() -> None:
        pass

    baseline = _per_call_ns(empty)
    add = _per_call_ns(lambda: history.add("acme", 200)) - baseline
    record = _per_call_ns(lambda: metrics.record(tenant="acme", route="/scim/v2/{tenant}/Users", method="GET",
                                                 status=200, seconds=0.003, auth_failure=None,
                                                 limited_by=None)) - baseline
    for tenant in range(200):
        for status in (200, 302, 404, 500):
            history.add(f"tenant-{tenant}", status)
    started = time.perf_counter()
    rows = history.flush()
    flush_ms = (time.perf_counter() - started) * 1000
    print(f"RequestHistory.add:         {add:8.0f} ns per request")
    print(f"Metrics.record (with add):  {record:8.0f} ns per request")
    print(f"flush of {rows} keys:        {flush_ms:8.1f} ms (every 10 s, background)")
    db.dispose()


if __name__ == "__main__":
    main()
