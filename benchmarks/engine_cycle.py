"""The engine's benchmark (issue 10): an initial cycle of a large directory into our own service,
then an incremental cycle after PERCENT % of the users changed, then one with no change.

    .venv/bin/python benchmarks/engine_cycle.py [--users 100000 --groups 1000 --memberships 500000]
                                               [--mutate 1] [--concurrency 8] [--dialect entra]

The target is ``identity-sync serve`` on SQLite (one process, loopback, rate limit off); the
engine runs in this process with its own SQLite state database, so ``ru_maxrss`` of this process
is the engine's peak RSS. Prints one JSON object (also written to benchmarks/results/ with --save).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _harness import Server

from identity_sync.config import Settings
from identity_sync.engine.jobs import Credentials
from identity_sync.engine.progress import Progress
from identity_sync.engine.service import EngineService
from identity_sync.engine.tables import engine_events
from identity_sync.storage.db import Database

HERE = Path(__file__).resolve().parent


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _total(server: Server, endpoint: str) -> int:
    request = urllib.request.Request(f"{server.base_url}/{endpoint}?count=1",
                                     headers={"Authorization": f"Bearer {server.token}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return int(json.load(response)["totalResults"])


def _reporter(label: str) -> Progress:
    last = [0.0]

    def report(p: Progress) -> None:
        now = time.monotonic()
        if now - last[0] >= 10 or (p.total and p.done == p.total):
            last[0] = now
            print(f"  [{label}] {p.phase:<12} {p.done:>7}/{p.total:<7} {p.as_dict()['seconds']:>7.1f} s "
                  f"rss {_rss_mb():.0f} MB", file=sys.stderr, flush=True)

    return Progress(listener=report)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cycle(engine: EngineService, label: str) -> dict[str, object]:
    started, cpu = time.monotonic(), _cpu()
    result = engine.run("bench", progress=_reporter(label))
    data = result.as_dict("bench")
    data["wall_seconds"] = round(time.monotonic() - started, 1)
    data["engine_cpu_seconds"] = round(_cpu() - cpu, 1)
    job = engine.jobs.get("bench")
    with engine.db.read() as conn:
        rows = conn.execute(sa.select(engine_events.c.status, engine_events.c.reason, sa.func.count()).where(
            engine_events.c.job_id == job.id, engine_events.c.cycle_id == result.cycle_id,
            engine_events.c.status != "success").group_by(engine_events.c.status, engine_events.c.reason))
        data["not_success"] = {f"{status}: {reason}": count for status, reason, count in rows}
    data["engine_peak_rss_mb"] = round(_rss_mb(), 1)
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=1_000)
    parser.add_argument("--memberships", type=int, default=500_000)
    parser.add_argument("--mutate", type=float, default=1.0, help="percent of users changed before cycle 2")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--dialect", default="entra")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--save", action="store_true", help="also write benchmarks/results/engine_cycle-*.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="idsync-engine-bench-") as scratch, \
            Server(log_level="WARNING") as server:
        work = Path(scratch)
        started = time.monotonic()
        # In a process of its own: the generator's memory must not count as the engine's peak RSS.
        subprocess.run([sys.executable, str(HERE / "make_directory.py"), str(work / "export"), "--users",
                        str(args.users), "--groups", str(args.groups), "--memberships", str(args.memberships),
                        "--seed", str(args.seed)], check=True, stdout=subprocess.DEVNULL)
        generated = round(time.monotonic() - started, 1)
        settings = Settings(database_url=f"sqlite:///{work / 'engine.db'}", data_dir=work / "data")
        db = Database(settings.resolved_database_url())
        db.migrate()
        engine = EngineService(db, settings)
        engine.jobs.create("bench", source=f"csv:{work / 'export'}", target_url=server.base_url,
                           credentials=Credentials(token=server.token), dialect=args.dialect,
                           concurrency=args.concurrency)
        report: dict[str, object] = {"users": args.users, "groups": args.groups, "memberships": args.memberships,
                                     "concurrency": args.concurrency, "dialect": args.dialect,
                                     "directory_seconds": generated}
        initial = _cycle(engine, "initial")
        objects = int(initial["created"]) + int(initial["updated"]) + int(initial["disabled"])
        initial["objects_per_second"] = round(objects / float(initial["seconds"]), 1)
        initial["target_users"] = _total(server, "Users")
        initial["target_groups"] = _total(server, "Groups")
        report["initial"] = initial
        subprocess.run([sys.executable, str(HERE / "make_directory.py"), str(work / "export"), "--mutate",
                        str(args.mutate), "--seed", str(args.seed + 1)], check=True, stdout=subprocess.DEVNULL)
        report["mutated_percent"] = args.mutate
        report["incremental"] = _cycle(engine, "incremental")
        report["unchanged"] = _cycle(engine, "no change")
        server.sample_memory()
        report["target_peak_rss_mb"] = round(server.peak.get("VmHWM", 0) / 1024, 1)
        db.dispose()
    text = json.dumps(report, indent=2)
    print(text)
    if args.save:
        out = Path(__file__).resolve().parent / "results" / f"engine_cycle-{args.users}-{int(time.time())}.json"
        out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
