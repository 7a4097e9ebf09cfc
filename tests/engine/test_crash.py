"""An engine killed at random moments (SIGKILL: no cleanup, no finally) mid-cycle, again and again:
the next cycle converges — every user and group exists once in the target, with its members, and
then a cycle sends nothing — and the job's watermark never goes backwards (issue 13)."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from identity_sync.config import Settings
from identity_sync.engine.jobs import Credentials
from identity_sync.engine.service import EngineService
from identity_sync.storage.db import Database
from tests.engine.conftest import unique
from tests.engine.directory import group, user, write_directory
from tests.engine.readback import Readback
from tests.engine.targets import Target

KILLS = 25  # per database kind: 50 in all
LEASE_SECONDS = 1.0
WRITES = ("POST", "PATCH", "PUT", "DELETE")


def test_killed_cycles_converge_without_duplicates(db_url: str, settings: Settings, our_target: Target,
                                                   readback: Readback, tmp_path: Path) -> None:
    prefix = unique("kill")
    users = [user(f"u{i:03d}", userPrincipalName=f"{prefix}-u{i:03d}@example.com",
                  manager=f"u{i // 10:03d}" if i >= 10 else None) for i in range(200)]
    groups = [group(f"g{g}", [f"u{i:03d}" for i in range(g, 200, 5)], displayName=f"{prefix} g{g}")
              for g in range(5)]
    source = write_directory(tmp_path / "export", users, groups, assignments=[f"g{g}" for g in range(5)])
    settings = settings.model_copy(update={"engine_lease_seconds": LEASE_SECONDS})
    db = Database(db_url)
    engine = EngineService(db, settings)
    engine.jobs.create("crash", source=f"csv:{source}", target_url=our_target.base_url,
                       credentials=Credentials(token=our_target.token))
    env = {"IDSYNC_DATABASE_URL": db_url, "IDSYNC_DATA_DIR": str(settings.data_dir), "PATH": "/usr/bin:/bin",
           "IDSYNC_ENGINE_LEASE_SECONDS": str(LEASE_SECONDS), "IDSYNC_LOG_LEVEL": "WARNING"}
    chance = random.Random(7)
    watermarks: list[str | None] = []
    for _ in range(KILLS):
        process = subprocess.Popen([sys.executable, "-m", "identity_sync", "job", "run", "crash"], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(chance.uniform(0.8, 3.5))
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        watermarks.append(engine.jobs.get("crash").watermark)
        _wait_for_the_lease_to_expire(engine)
    # Once a cycle completed, the watermark stays (the source did not change): never back to none.
    first = next((i for i, w in enumerate(watermarks) if w is not None), len(watermarks))
    assert len(set(watermarks[first:])) <= 1 and None not in watermarks[first:]

    converged = engine.run("crash")
    assert converged.state == "completed" and converged.counts["failed"] == 0
    found = readback.users(prefix)
    assert len(found) == 200  # each user once
    ids = {upn.split("@")[0].removeprefix(f"{prefix}-"): r["id"] for upn, r in found.items()}
    target_groups = readback.groups(prefix)
    assert sorted(target_groups) == sorted(f"{prefix} g{g}" for g in range(5))  # no group created twice
    for g in range(5):
        expected = {ids[f"u{i:03d}"] for i in range(g, 200, 5)}
        assert readback.member_ids(target_groups[f"{prefix} g{g}"]["id"]) == expected
    quiet = engine.run("crash")
    assert not any(quiet.requests.get(method, 0) for method in WRITES), quiet.requests
    db.dispose()


def _wait_for_the_lease_to_expire(engine: EngineService) -> None:
    """The dead process's lease expires by itself, at most LEASE_SECONDS after its last renewal:
    wait for that moment (not a fixed LEASE_SECONDS, nor at all when it was killed before taking
    the lease), so that the next process can take the job."""
    deadline = time.monotonic() + LEASE_SECONDS + 10
    while engine.jobs.get("crash").running_by is not None:
        assert time.monotonic() < deadline, "the killed process's lease never expired"
        time.sleep(0.05)
