#!/usr/bin/env python3
"""Load-test the Users endpoint of identity-sync with the shared scimload generator.

One command: throw-away SQLite DB under /tmp (or --database-url), a tenant, ``identity-sync
serve`` on a free loopback port (always stopped at the end, also on Ctrl-C / errors), then
``../shared/bench/scimload.py`` against the tenant with N users, skipping the group phase
(Groups are not implemented yet). Prints a summary table and writes the full JSON.

  .venv/bin/python benchmarks/load_users.py                      # N=10,000, concurrency 8
  .venv/bin/python benchmarks/load_users.py --users 1000 --json-out /tmp/r.json

Every scimload phase is time-capped (--create-seconds, --phase-seconds) and the scimload
process as a whole is killed after the sum of the caps plus a margin.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import DEFAULT_CLI, REPO, Server

SCIMLOAD = REPO.parent / "shared" / "bench" / "scimload.py"  # the shared tools beside the repository
PHASE_NAMES = {"a_create": "create", "b_lookup": "lookup (userName eq)", "c_patch": "PATCH 3x Replace",
               "e_paginate": "paginate (count=100)", "f_delete": "DELETE"}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=10_000, help="N users to create (default 10000)")
    ap.add_argument("--concurrency", type=int, default=8, help="client concurrency (peers.md §3: 8)")
    ap.add_argument("--lookups", type=int, default=2000, help="filter lookups, half missing (scimload default)")
    ap.add_argument("--patches", type=int, default=2000, help="PATCH requests (scimload default)")
    ap.add_argument("--patch-mode", default="entra_core",
                    choices=("auto", "entra", "entra_core", "lower_core", "pathless_core"),
                    help="scimload PATCH body; entra_core = what the peers were measured with (default)")
    ap.add_argument("--skip", default="d", help="scimload phase letters to skip (default 'd': no Groups yet)")
    ap.add_argument("--create-seconds", type=float, default=300, help="time cap of the create phase")
    ap.add_argument("--phase-seconds", type=float, default=120, help="time cap of every other phase")
    ap.add_argument("--request-timeout", type=float, default=30)
    ap.add_argument("--database-url", default=None, help="use this DB instead of a throw-away SQLite file")
    ap.add_argument("--cli", default=str(DEFAULT_CLI), help="identity-sync executable")
    ap.add_argument("--scimload", default=str(SCIMLOAD))
    ap.add_argument("--python", default=sys.executable, help="interpreter for scimload (needs httpx)")
    ap.add_argument("--json-out", default=None,
                    help="full JSON result (default benchmarks/results/load_users-<UTC time>.json)")
    ap.add_argument("--label", default="")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (DB + server logs)")
    a = ap.parse_args()
    if a.json_out is None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        a.json_out = str(REPO / "benchmarks" / "results" / f"load_users-{stamp}.json")
    return a


def _fmt(v: object, width: int) -> str:
    return f"{'-' if v is None else v:>{width}}"


def print_summary(res: dict, server: dict, run: dict) -> None:
    P = res.get("phases", {})
    print()
    print(f"identity-sync Users load  N={run['users']}  concurrency={run['concurrency']}  "
          f"patch_mode={run['patch_mode']}  body tier={res.get('body_tier')}  {run['started_utc']}")
    print(f"{'phase':22} {'reqs':>6} {'2xx':>6} {'errors':>6} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'max ms':>8}  note")
    for key, name in PHASE_NAMES.items():
        s = P.get(key)
        if not s:
            continue
        errors = s["requests"] - s["ok_2xx"]
        notes = []
        if s.get("truncated"):
            notes.append("TRUNCATED by time cap")
        if key == "b_lookup" and s.get("wrong_results"):
            notes.append(f"wrong totalResults {s['wrong_results']}")
        if key == "c_patch":
            notes.append(f"mode={s.get('patch_mode')}")
        if key == "e_paginate":
            notes.append(f"total {s.get('total_time_s')} s, {s.get('pages')} pages, "
                         f"{s.get('resources_seen')}/{s.get('totalResults')} users")
        non2xx = {k: v for k, v in s.get("status_codes", {}).items() if not (k.isdigit() and int(k) < 300)}
        if non2xx:
            notes.append(f"non-2xx {non2xx}")
        print(f"{name:22} {s['requests']:>6} {s['ok_2xx']:>6} {errors:>6} {_fmt(s['req_per_s'], 8)} "
              f"{_fmt(s['p50_ms'], 8)} {_fmt(s['p99_ms'], 8)} {_fmt(s.get('max_ms'), 8)}  {'; '.join(notes)}")
        for msg, n in (s.get("error_samples") or {}).items():
            print(f"{'':22}   error x{n}: {msg}")

    def mib(k: object) -> str:
        return "-" if k is None else f"{int(k) / 1024:.0f} MiB"
    print(f"\nserver RSS: before {mib(res.get('rss_kib_before'))} -> after create "
          f"{mib(res.get('rss_kib_after_create'))} -> end {mib(res.get('rss_kib_after'))}; "
          f"peak (VmHWM) {mib(server.get('rss_peak_kib'))}")
    codes = server.get("access_log_status_codes", {})
    print(f"server access log status codes: {codes}; requests >1 s: {server.get('requests_over_1s')}; "
          f"warning/error lines: {server.get('error_lines_total')}; exit code {server.get('exit_code')}")
    for line in (server.get("error_lines_sample") or [])[:5]:
        print(f"  server: {line[:300]}")
    print(f"scimload total {res.get('total_s')} s; wall {run.get('wall_s')} s")


def main() -> int:
    a = parse_args()
    out = Path(a.json_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    raw_out = out.with_name(out.stem + ".scimload.json")
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    run = {"started_utc": started, "users": a.users, "concurrency": a.concurrency, "patch_mode": a.patch_mode,
           "skip": a.skip, "lookups": a.lookups, "patches": a.patches, "create_seconds": a.create_seconds,
           "phase_seconds": a.phase_seconds, "label": a.label, "host": platform.node(), "cpus": os.cpu_count(),
           "loadavg_start": os.getloadavg(), "database": "custom" if a.database_url else "sqlite (temp)"}
    with contextlib.suppress(Exception):
        run["git_head"] = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                         capture_output=True, text=True, timeout=10).stdout.strip()

    # SIGTERM behaves like Ctrl-C so the finally-blocks stop the server.
    def on_term(*_: object) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    t0 = time.monotonic()
    load: subprocess.Popen[bytes] | None = None
    res: dict = {}
    server_info: dict = {}
    rc = 0
    with Server(cli=a.cli, database_url=a.database_url, keep=a.keep) as srv:
        print(f"# server pid {srv.proc.pid} on {srv.base_url} (dir {srv.dir})", file=sys.stderr, flush=True)
        stop_sampler = threading.Event()

        def sampler() -> None:  # keep VmHWM/VmRSS of the server fresh
            while not stop_sampler.wait(1.0):
                srv.sample_memory()
        threading.Thread(target=sampler, daemon=True).start()

        budget = a.create_seconds + 4 * a.phase_seconds + 120
        cmd = [a.python, a.scimload, "--base-url", srv.base_url, "--token", srv.token,
               "--users", str(a.users), "--concurrency", str(a.concurrency), "--lookups", str(a.lookups),
               "--patches", str(a.patches), "--patch-mode", a.patch_mode, "--skip", a.skip,
               "--create-seconds", str(a.create_seconds), "--phase-seconds", str(a.phase_seconds),
               "--request-timeout", str(a.request_timeout), "--pid", str(srv.proc.pid),
               "--label", a.label or "identity-sync", "--json-out", str(raw_out)]
        printable = [c if c != srv.token else "<token>" for c in cmd]
        run["scimload_cmd"] = " ".join(printable)
        print("# " + run["scimload_cmd"], file=sys.stderr, flush=True)
        stdout_path = srv.dir / "scimload.stdout"
        try:
            with open(stdout_path, "wb") as so:
                load = subprocess.Popen(cmd, stdout=so, stderr=None, stdin=subprocess.DEVNULL)
                try:
                    load.wait(timeout=budget)
                except subprocess.TimeoutExpired:
                    print(f"# scimload exceeded {budget:.0f} s; killing it", file=sys.stderr)
                    load.kill()
                    load.wait()
                    rc = 3
            if load.returncode != 0 and rc == 0:
                rc = 2
                print(f"# scimload exited {load.returncode}", file=sys.stderr)
            if raw_out.exists():
                res = json.loads(raw_out.read_text())
        except KeyboardInterrupt:
            print("# interrupted; stopping", file=sys.stderr)
            rc = 130
        finally:
            if load is not None and load.poll() is None:
                load.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    load.wait(timeout=5)
                if load.poll() is None:
                    load.kill()
            stop_sampler.set()
            alive = srv.proc.poll() is None
            mem = srv.sample_memory()
            srv.stop()
            server_info = {"alive_at_end": alive, "rss_kib_end": mem.get("VmRSS"), "rss_peak_kib": mem.get("VmHWM"),
                           **srv.log_summary()}
            run["wall_s"] = round(time.monotonic() - t0, 1)
            run["loadavg_end"] = os.getloadavg()
            if a.keep:
                run["kept_dir"] = str(srv.dir)
    doc = {"run": run, "server": server_info, "scimload": res}
    out.write_text(json.dumps(doc, indent=1, default=str))
    with contextlib.suppress(OSError):
        raw_out.unlink()  # folded into the main JSON
    if res:
        print_summary(res, server_info, run)
    else:
        print(json.dumps(server_info, indent=1))
    print(f"\nfull JSON: {out}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
