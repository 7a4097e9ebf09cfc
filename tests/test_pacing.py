"""The yield points (pacing.py): a request's hook runs at each; a process that serves only
costly requests (web/offload_process.py) also gives up its core there, at most once per interval."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from identity_sync import pacing


@pytest.fixture
def yields(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """The times os.sched_yield was called; the process-wide setting restored afterwards."""
    calls: list[float] = []
    monkeypatch.setattr(pacing.os, "sched_yield", lambda: calls.append(time.perf_counter()))
    yield calls
    pacing.yield_core_every(0.0)


def test_a_pause_gives_up_no_core_by_default(yields: list[float]) -> None:
    for _ in range(1_000):
        pacing.pause()
    assert yields == []


def test_a_pause_gives_up_the_core_at_most_once_per_interval(yields: list[float]) -> None:
    pacing.yield_core_every(0.002)
    started = time.perf_counter()
    while time.perf_counter() - started < 0.05:
        pacing.pause()
    assert 5 <= len(yields) <= 26  # 50 ms at one per 2 ms at most
    # (recorded a few microseconds after the pause read the clock)
    assert all(later - earlier >= 0.0019 for earlier, later in zip(yields, yields[1:], strict=False))


def test_the_request_hook_still_runs(yields: list[float]) -> None:
    pacing.yield_core_every(0.001)
    seen: list[int] = []
    token = pacing.install(lambda: seen.append(1))
    try:
        pacing.pause()
        pacing.pause()
    finally:
        pacing.uninstall(token)
    assert seen == [1, 1] and len(yields) == 1
