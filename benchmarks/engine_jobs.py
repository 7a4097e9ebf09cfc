"""The scheduler's benchmark (issue 13): one engine process running JOBS jobs of USERS users each
into our own service, on their schedules.

    .venv/bin/python benchmarks/engine_jobs.py [--jobs 100 --users 1000 --workers 4 --idle 60]

Phases, each measured in this process (the engine; the target is a separate ``serve`` process):

1. **initial** — every job is due; the scheduler runs their initial cycles ``--workers`` at a time.
   Reported: wall time, engine CPU seconds per job, peak RSS.
2. **incremental** — after an initial cycle a job's next cycle is due at once: every job runs an
   incremental cycle with no source change. Reported: wall time and engine CPU seconds per job.
3. **idle** — every job is synchronised and waits for its interval; the scheduler only polls.
   Reported: CPU seconds per minute and RSS over ``--idle`` seconds, per job.

Taking over a dead engine's jobs is bounded by the lease: a job whose engine died is due to any
other engine when its lease expires (``LEASE_SECONDS``) plus one poll; the report states that bound.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _harness import Server

from identity_sync.config import Settings
from identity_sync.engine.jobs import Credentials
from identity_sync.engine.lease import LEASE_SECONDS
from identity_sync.engine.scheduler import Scheduler
from identity_sync.engine.service import EngineService
from identity_sync.engine.tables import engine_jobs
from identity_sync.logs import configure as configure_logs
from identity_sync.storage.db import Database


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_mb() -> float:
    """Current RSS (not the peak): what an idle engine holds."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _export(directory: Path, job: int, users: int) -> None:
    directory.mkdir(parents=True)
    with (directory / "users.csv").open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["id", "userPrincipalName", "displayName", "givenName", "surname", "department",
                         "accountEnabled"])
        for i in range(users):
            writer.writerow([f"u{i}", f"j{job}-u{i}@bench.example", f"User {i}", "Given", f"Sur{i}",
                             f"Dept {i % 20}", "true"])
    (directory / "groups.csv").write_text("id,displayName,members\n")


def _wait_until_all_ran(engine: EngineService, jobs: int, since: str) -> None:
    while True:
        with engine.db.read() as conn:
            done = conn.execute(sa.select(sa.func.count()).select_from(engine_jobs)
                                .where(engine_jobs.c.next_run_at > since)).scalar_one()
        if done >= jobs:
            return
        time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=2, help="target requests in flight per job")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of the idle phase")
    args = parser.parse_args()
    configure_logs("WARNING")  # one line per cycle would drown the figures

    with tempfile.TemporaryDirectory(prefix="idsync-jobs-bench-") as scratch, Server(log_level="WARNING") as server:
        work = Path(scratch)
        settings = Settings(database_url=f"sqlite:///{work / 'engine.db'}", data_dir=work / "data")
        db = Database(settings.resolved_database_url())
        db.migrate()
        engine = EngineService(db, settings)
        for job in range(args.jobs):
            _export(work / f"export{job}", job, args.users)
            engine.jobs.create(f"job{job:03d}", source=f"csv:{work / f'export{job}'}", target_url=server.base_url,
                               credentials=Credentials(token=server.token), scope="all",
                               concurrency=args.concurrency)
        baseline_rss = _rss_mb()
        scheduler = Scheduler(engine, workers=args.workers, poll_seconds=0.5)
        runner = threading.Thread(target=scheduler.run_forever, daemon=True)
        report: dict[str, object] = {"jobs": args.jobs, "users_per_job": args.users, "workers": args.workers,
                                     "engine_rss_before_mb": round(baseline_rss, 1)}

        def phase(name: str, ahead_minutes: int = 0) -> None:
            # Done when every job's next run is past this: an initial cycle makes the next one due at
            # once, an incremental one in the job's interval (40 minutes).
            since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + ahead_minutes * 60))
            started, cpu = time.monotonic(), _cpu()
            if not runner.is_alive():
                runner.start()
            _wait_until_all_ran(engine, args.jobs, since)
            wall, used = time.monotonic() - started, _cpu() - cpu
            report[name] = {"wall_seconds": round(wall, 1), "engine_cpu_seconds": round(used, 1),
                            "engine_cpu_seconds_per_job": round(used / args.jobs, 3),
                            "users_per_second": round(args.jobs * args.users / wall, 1) if name == "initial"
                            else None, "engine_peak_rss_mb": round(_peak_mb(), 1)}
            print(f"{name}: {report[name]}", file=sys.stderr, flush=True)

        phase("initial")
        phase("incremental", ahead_minutes=30)  # the first incremental cycles follow at once: no change
        cpu = _cpu()
        time.sleep(args.idle)
        idle_cpu = _cpu() - cpu
        report["idle"] = {"seconds": args.idle, "engine_cpu_seconds_per_minute": round(idle_cpu * 60 / args.idle, 3),
                          "engine_rss_mb": round(_rss_mb(), 1),
                          "engine_rss_per_idle_job_kb": round((_rss_mb() - baseline_rss) * 1024 / args.jobs, 1)}
        print(f"idle: {report['idle']}", file=sys.stderr, flush=True)
        report["takeover_bound_seconds"] = LEASE_SECONDS + 0.5
        scheduler.stop()
        runner.join(60)
        db.dispose()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
