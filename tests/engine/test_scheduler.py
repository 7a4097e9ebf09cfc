"""The scheduler (engine/scheduler.py): due jobs on their intervals, pause, a graceful stop at an
object boundary that the next cycle resumes without duplicates, one engine per SQLite file, two
engines on one PostgreSQL never running a job at once, and ``identity-sync engine`` under SIGTERM."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest

from identity_sync.config import Settings
from identity_sync.engine.errors import CycleAborted
from identity_sync.engine.jobs import Credentials
from identity_sync.engine.scheduler import EngineAlreadyRunning, Scheduler
from identity_sync.engine.service import EngineService
from identity_sync.storage.db import Database
from tests.engine.clock import Clock
from tests.engine.conftest import unique
from tests.engine.directory import user, write_directory
from tests.engine.readback import Readback
from tests.engine.targets import Target


def _job(engine: EngineService, name: str, target: Target, tmp_path: Path, users: int = 2, **options: object) -> str:
    prefix = unique(name)
    source = write_directory(tmp_path / name, [user(f"u{i}", userPrincipalName=f"{prefix}-u{i}@example.com")
                                               for i in range(users)], [], assignments=[f"u{i}" for i in range(users)])
    engine.jobs.create(name, source=f"csv:{source}", target_url=target.base_url,
                       credentials=Credentials(token=target.token), **options)  # type: ignore[arg-type]
    return prefix


def test_jobs_run_on_their_intervals_and_paused_ones_do_not(
        db: Database, settings: Settings, our_target: Target, tmp_path: Path) -> None:
    clock = Clock()
    engine = EngineService(db, settings, clock=clock)
    _job(engine, "fast", our_target, tmp_path, interval=10)
    _job(engine, "slow", our_target, tmp_path, interval=60)
    _job(engine, "held", our_target, tmp_path)
    engine.operations.pause("held")
    scheduler = Scheduler(engine, clock=clock)
    assert scheduler.due() == ["fast", "slow"]  # new jobs are due at once; a paused one never
    with ThreadPoolExecutor(2) as pool:
        assert sorted(scheduler.tick(pool)) == ["fast", "slow"]
    # After an initial cycle a job still has work (what changed meanwhile): its next cycle at once.
    assert scheduler.due() == ["fast", "slow"]
    with ThreadPoolExecutor(2) as pool:
        assert sorted(scheduler.tick(pool)) == ["fast", "slow"]
    assert scheduler.due() == []
    clock.now += timedelta(minutes=10)
    assert scheduler.due() == ["fast"]
    clock.now += timedelta(minutes=50)
    assert scheduler.due() == ["fast", "slow"]
    engine.operations.start("held", clock())
    assert "held" in scheduler.due()


def test_a_stopped_cycle_resumes_without_duplicates(
        db: Database, settings: Settings, our_target: Target, readback: Readback, tmp_path: Path) -> None:
    engine = EngineService(db, settings)
    prefix = _job(engine, "big", our_target, tmp_path, users=600)
    asked = 0

    def stop_after_first_batch() -> bool:
        nonlocal asked
        asked += 1
        return asked > 1

    with pytest.raises(CycleAborted) as raised:
        engine.run("big", should_stop=stop_after_first_batch)
    assert raised.value.error_code == "Interrupted"
    job = engine.jobs.get("big")
    assert job.state == "active" and job.failures_in_a_row == 0 and job.quarantine is None
    assert 0 < len(readback.users(prefix)) < 600  # stopped part-way, at a batch boundary
    resumed = engine.run("big")
    assert resumed.counts["failed"] == 0
    users = readback.users(prefix)
    assert len(users) == 600  # every user once: no duplicate creates


def test_sqlite_allows_one_engine_process(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    db = Database(settings.resolved_database_url())
    db.migrate()
    first = Scheduler(EngineService(db, settings), poll_seconds=0.05)
    runner = threading.Thread(target=first.run_forever)
    runner.start()
    try:
        time.sleep(0.3)
        second = Scheduler(EngineService(db, settings))
        with pytest.raises(EngineAlreadyRunning, match="SQLite allows one"):
            second.run_forever()
    finally:
        first.stop()
        runner.join(10)
    db.dispose()


def test_two_engines_never_run_one_job_at_once(db_kind: str, db_url: str, settings: Settings,
                                               our_target: Target, tmp_path: Path) -> None:
    if db_kind != "postgresql":
        pytest.skip("several engine processes share jobs through PostgreSQL")
    nodes = [Database(db_url), Database(db_url)]
    engines = [EngineService(node, settings) for node in nodes]
    _job(engines[0], "shared", our_target, tmp_path, users=40)
    schedulers = [Scheduler(engine) for engine in engines]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda s: [s.run_job("shared") for _ in range(10)], schedulers))  # 20 runs
    history = engines[0].operations.history(engines[0].jobs.get("shared"), limit=100)
    spans = sorted((c["began"], c["ended"]) for c in history)
    assert len(spans) >= 2 and all(c["state"] == "completed" for c in history)
    for (_, ended), (began, _) in zip(spans, spans[1:], strict=False):
        assert ended <= began  # no two cycles of the job overlap
    for node in nodes:
        node.dispose()


def test_the_engine_command_stops_gracefully_on_sigterm(
        db_url: str, settings: Settings, our_target: Target, tmp_path: Path) -> None:
    db = Database(db_url)
    engine = EngineService(db, settings)
    _job(engine, "cmd", our_target, tmp_path)
    env = {"IDSYNC_DATABASE_URL": db_url, "IDSYNC_DATA_DIR": str(settings.data_dir), "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen([sys.executable, "-m", "identity_sync", "engine", "--poll", "0.2"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60

        def states() -> list[str]:
            return [c["state"] for c in engine.operations.history(engine.jobs.get("cmd"))]

        while time.monotonic() < deadline and states() in ([], ["running"]):
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    history = engine.operations.history(engine.jobs.get("cmd"))[::-1]  # oldest first
    assert re.search(rf"Engine stopped after {len(history)} cycle\(s\)\.", err), err
    initial = history[0]
    assert (initial["kind"], initial["state"]) == ("initial", "completed")
    assert (initial["exported"], initial["imported"]) == (2, 2)
    # The initial cycle is followed at once by an incremental one: it completed, or stopped at SIGTERM.
    for later in history[1:]:
        assert later["state"] == "completed" or "interrupted" in (later["error"] or ""), later
    db.dispose()


def test_serve_runs_the_engine_too(db_url: str, settings: Settings, our_target: Target, tmp_path: Path) -> None:
    """``serve --engine``: the single-machine default runs the jobs in the service's process and
    stops them with it."""
    from tests.pg import free_port

    db = Database(db_url)
    engine = EngineService(db, settings)
    _job(engine, "served", our_target, tmp_path)
    env = {"IDSYNC_DATABASE_URL": db_url, "IDSYNC_DATA_DIR": str(settings.data_dir), "PATH": "/usr/bin:/bin"}
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "identity_sync", "serve", "--engine", "--port", str(port)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            history = engine.operations.history(engine.jobs.get("served"))
            if history and history[0]["state"] == "completed" and _answers(f"http://127.0.0.1:{port}/healthz"):
                break
            time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGTERM, err  # uvicorn ends the process by the signal it got
    assert "The provisioning engine runs here too" in out and "Provisioning engine stopped." in err
    initial = engine.operations.history(engine.jobs.get("served"))[-1]  # the oldest
    assert (initial["kind"], initial["state"], initial["exported"]) == ("initial", "completed", 2)
    db.dispose()


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False
