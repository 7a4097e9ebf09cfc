"""How long reading a ``csv:DIR`` export takes and how much memory it holds.

    .venv/bin/python benchmarks/make_directory.py DIR          # 100,000 users, once (about 3 s)
    .venv/bin/python benchmarks/csv_read.py DIR [--json-out PATH]

Measures, in one fresh process: the read (parse + validate, ``CsvSource.read``), one pass that
builds every user and group object and touches every attribute (what a cycle's mapping step does),
the effective assignments, and the peak RSS (``ru_maxrss``) after each step, next to the RSS of the
interpreter with the modules imported. The engine's budget is 300 MB for the whole cycle.
Results are printed and written as JSON to ``benchmarks/results/csv_read-<UTC>.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from identity_sync.engine.model import SourceError
from identity_sync.engine.scoping import effective_assignments
from identity_sync.engine.sources.csv_source import CsvSource

RESULTS = Path(__file__).resolve().parent / "results"


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    result: dict[str, object] = {"directory_mb": round(sum(
        path.stat().st_size for path in args.directory.glob("*.csv")) / 2**20, 1),
        "rss_after_imports_mb": round(peak_rss_mb(), 1)}

    started = time.perf_counter()
    try:
        snapshot = CsvSource(args.directory).read()
    except SourceError as error:
        print(f"csv_read: {error}", file=sys.stderr)
        return 1
    result["read_seconds"] = round(time.perf_counter() - started, 3)
    result["peak_rss_after_read_mb"] = round(peak_rss_mb(), 1)
    result["users"], result["groups"] = len(snapshot.users), len(snapshot.groups)

    started = time.perf_counter()
    attributes = memberships = 0
    for user in snapshot.users.values():
        attributes += len(user.attributes)
    for group in snapshot.groups.values():
        memberships += len(group.attributes.get("members", ()))
    result["build_all_objects_seconds"] = round(time.perf_counter() - started, 3)
    result["attributes"], result["memberships"] = attributes, memberships
    result["peak_rss_after_pass_mb"] = round(peak_rss_mb(), 1)

    started = time.perf_counter()
    assignments = effective_assignments(snapshot)
    result["assignments_seconds"] = round(time.perf_counter() - started, 3)
    result["assigned_users"], result["assigned_groups"] = len(assignments.users), len(assignments.groups)
    result["peak_rss_end_mb"] = round(peak_rss_mb(), 1)

    print(json.dumps(result, indent=2))
    out = args.json_out or RESULTS / f"csv_read-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"run": {"python": sys.version.split()[0], "argv": sys.argv[1:]}, "result": result},
                              indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
