"""One cycle of a job at a time (engine/lease.py): a second process finds the job busy; a dead
process's lease expires; a cycle whose job was taken over stops before writing anything more."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from identity_sync.config import Settings
from identity_sync.engine.errors import CycleAborted
from identity_sync.engine.jobs import Credentials
from identity_sync.engine.progress import Progress
from identity_sync.engine.service import EngineService
from identity_sync.engine.state import ConnectorStore
from identity_sync.engine.tables import engine_jobs
from identity_sync.storage.db import Database
from tests.engine.conftest import unique
from tests.engine.directory import user, write_directory
from tests.engine.readback import Readback
from tests.engine.targets import Target


def _engine(db: Database, settings: Settings, target: Target, tmp_path: Path, count: int = 3) -> tuple[
        EngineService, str]:
    prefix = unique("lease")
    users = [user(f"u{i:03d}", userPrincipalName=f"{prefix}-u{i:03d}@example.com") for i in range(count)]
    source = write_directory(tmp_path / "export", users, [], assignments=[u["id"] for u in users])
    engine = EngineService(db, settings)
    engine.jobs.create("job", source=f"csv:{source}", target_url=target.base_url,
                       credentials=Credentials(token=target.token))
    return engine, prefix


def _set_lease(db: Database, owner: str | None, expires_at: str | None) -> None:
    with db.write() as conn:
        conn.execute(sa.update(engine_jobs).values(lease_owner=owner, lease_expires_at=expires_at))


def test_a_job_another_process_runs_is_busy_until_its_lease_expires(
        db: Database, settings: Settings, our_target: Target, readback: Readback, tmp_path: Path) -> None:
    engine, prefix = _engine(db, settings, our_target, tmp_path)
    _set_lease(db, "other-host:42:abcd", "9999-12-31T00:00:00.000000Z")
    assert engine.jobs.get("job").running_by == "other-host:42:abcd"
    with pytest.raises(CycleAborted) as raised:
        engine.run("job")
    assert raised.value.error_code == "JobBusy" and "other-host:42:abcd" in str(raised.value)
    assert readback.users(prefix) == {}

    _set_lease(db, "other-host:42:abcd", "2000-01-01T00:00:00.000000Z")  # that process died long ago
    assert engine.jobs.get("job").running_by is None
    assert engine.run("job").counts["created"] == 3
    job = engine.jobs.get("job")
    assert job.lease_owner is None and job.running_by is None  # released at the end


def test_a_cycle_whose_job_was_taken_over_stops_before_writing(
        db: Database, settings: Settings, our_target: Target, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import identity_sync.engine.cycle as cycle_module

    monkeypatch.setattr(cycle_module, "BATCH", 2)
    engine, _ = _engine(db, settings, our_target, tmp_path, count=6)
    stolen = {"done": False}

    def steal(progress: Progress) -> None:
        if progress.phase == "users" and progress.done >= 2 and not stolen["done"]:
            stolen["done"] = True
            _set_lease(db, "thief:1:ffff", "9999-12-31T00:00:00.000000Z")

    with pytest.raises(CycleAborted) as raised:
        engine.run("job", progress=Progress(listener=steal))
    assert raised.value.error_code == "LeaseLost"
    job = engine.jobs.get("job")
    assert job.watermark is None and job.lease_owner == "thief:1:ffff"  # the thief's lease is untouched
    assert len(ConnectorStore(db, job.id).index("user")) == 2  # the first batch only

