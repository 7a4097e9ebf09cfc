#!/usr/bin/env python3
"""identity-sync against scim2-server 0.8.3, side by side, in one invocation: the same workload,
each figure for both and the ratio.

Set-up:
* identity-sync: the harness (``_harness.py``): a throw-away SQLite DB, a tenant, ``identity-sync
  serve`` on a free loopback port;
* scim2-server: ``python3 -m venv`` + ``pip install scim2-server==0.8.3`` into a throw-away venv
  in the temporary directory (``--peer-venv DIR`` reuses one), started as in ../shared/bench/peers/
  setup_and_run.sh (``--hostname 127.0.0.1 --bearer-token peertoken``) with the GlobalRelay schema
  and resource-type files of ../shared/bench/peers/ registered (peers.md §5), so both servers
  get the full Entra body.

Workload, each on a fresh server, identity-sync first, then scim2-server:
1. ``../shared/bench/scimload.py --users N --concurrency 8 --patch-mode entra_core`` with the
   group phase ``d`` (fill one group to N members, 100 per PATCH, sequential; at the checkpoints,
   single-member add and remove samples and ``GET /Groups?filter=…&excludedAttributes=members``);
2. ``../shared/bench/wrk/run.sh`` (preload N core users, then wrk lookup / PATCH / create,
   one thread, 8 connections, D s each).

  .venv/bin/python benchmarks/compare_peers.py                       # N=10,000, about 12 min
  .venv/bin/python benchmarks/compare_peers.py --users 2000 --wrk-seconds 5 --peer-venv .venv-peer

Every scimload phase is capped (--create-seconds, --phase-seconds), scimload and run.sh are
killed after their budget, and the servers are always stopped (also on Ctrl-C / SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import DEFAULT_CLI, REPO, ManagedProcess, Server, free_port

SHARED = REPO.parent / "shared" / "bench"  # the shared tools beside the repository
SCIMLOAD = SHARED / "scimload.py"
RUN_SH = SHARED / "wrk" / "run.sh"
PEERS = SHARED / "peers"
PEER_VERSION = "scim2-server==0.8.3"
PEER_TOKEN = "peertoken"


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=10_000, help="N users (and group size) for scimload")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--group-samples", type=int, default=10, help="single-member add/remove samples per checkpoint")
    ap.add_argument("--checkpoints", default="100,1000,10000")
    ap.add_argument("--create-seconds", type=float, default=300)
    ap.add_argument("--phase-seconds", type=float, default=300,
                    help="cap of every other scimload phase (the group phase must reach N within it)")
    ap.add_argument("--wrk-users", type=int, default=10_000, help="users run.sh preloads")
    ap.add_argument("--wrk-seconds", type=int, default=10)
    ap.add_argument("--wrk-conns", type=int, default=8)
    ap.add_argument("--skip", default="", help="'scimload' and/or 'wrk' to leave out")
    ap.add_argument("--targets", default="identity-sync,scim2-server")
    ap.add_argument("--peer-venv", default=None, help="reuse this venv with scim2-server (else a throw-away one)")
    ap.add_argument("--cli", default=str(DEFAULT_CLI))
    ap.add_argument("--python", default=sys.executable, help="interpreter for scimload / run.sh (needs httpx)")
    ap.add_argument("--json-out", default=None)
    a = ap.parse_args()
    if a.json_out is None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        a.json_out = str(REPO / "benchmarks" / "results" / f"compare_peers-{stamp}.json")
    return a


# -- scim2-server ---------------------------------------------------------------------------------

def install_peer(venv: Path) -> float:
    t = time.monotonic()
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", PEER_VERSION], check=True, timeout=600,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return round(time.monotonic() - t, 1)


class PeerServer(ManagedProcess):
    """scim2-server in its own process group, on a free loopback port; always stopped."""

    _LINE = re.compile(r'"(GET|POST|PUT|PATCH|DELETE) \S+ HTTP/[\d.]+" (\d{3})')

    def __init__(self, venv: Path, start_timeout: float = 60.0) -> None:
        self.venv, self.start_timeout = venv, start_timeout
        self.dir = Path(tempfile.mkdtemp(prefix="idsync-peer-"))
        self.token = PEER_TOKEN
        self.proc: subprocess.Popen[bytes] | None = None
        self.peak: dict[str, int] = {}
        self.log_path = self.dir / "server.stderr.log"

    def __enter__(self) -> PeerServer:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        self.port = free_port()
        self._err = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(self.venv / "bin" / "scim2-server"), "--hostname", "127.0.0.1", "--port", str(self.port),
             "--bearer-token", PEER_TOKEN, "--schema", str(PEERS / "scim2-server-schemas-globalrelay.json"),
             "--resource-type", str(PEERS / "scim2-server-resource-types-globalrelay.json")],
            stdout=self._err, stderr=self._err, stdin=subprocess.DEVNULL, start_new_session=True)
        self.base_url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"scim2-server exited with {self.proc.returncode}: {self.stderr_tail()}")
            with contextlib.suppress(OSError):
                req = urllib.request.Request(self.base_url + "/Users?count=1",
                                             headers={"Authorization": f"Bearer {PEER_TOKEN}"})
                with urllib.request.urlopen(req, timeout=2) as resp:
                    if resp.status == 200:
                        return
            time.sleep(0.2)
        raise RuntimeError(f"scim2-server did not answer within {self.start_timeout}s")

    def close(self) -> None:
        self.stop()
        with contextlib.suppress(AttributeError):
            self._err.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_summary(self) -> dict[str, Any]:
        """Status codes of wsgiref's access log lines, and the other (traceback) lines."""
        codes: Counter[str] = Counter()
        other: list[str] = []
        with contextlib.suppress(OSError), open(self.log_path, errors="replace") as f:
            for line in f:
                m = self._LINE.search(line)
                if m:
                    codes[m.group(2)] += 1
                    if m.group(2).startswith("5"):
                        other.append(line.strip()[:300])
                elif line.strip() and not line.startswith(("Serving SCIM", "INFO:")):
                    other.append(line.strip()[:300])  # warnings, errors, tracebacks
        return {"access_log_status_codes": dict(codes), "error_lines_total": len(other),
                "error_lines_sample": other[:10],
                "exit_code": None if self.proc is None else self.proc.returncode}


# -- runs -----------------------------------------------------------------------------------------

def start(target: str, a: argparse.Namespace, venv: Path | None) -> Any:
    if target == "identity-sync":
        return Server(cli=a.cli)
    assert venv is not None
    return PeerServer(venv)


def with_sampler(srv: Any) -> threading.Event:
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(1.0):
            srv.sample_memory()
    threading.Thread(target=loop, daemon=True).start()
    return stop


def run_scimload(target: str, srv: Any, a: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    out = workdir / f"scimload-{target}.json"
    cmd = [a.python, str(SCIMLOAD), "--base-url", srv.base_url, "--token", srv.token, "--users", str(a.users),
           "--concurrency", str(a.concurrency), "--patch-mode", "entra_core", "--checkpoints", a.checkpoints,
           "--group-samples", str(a.group_samples), "--create-seconds", str(a.create_seconds),
           "--phase-seconds", str(a.phase_seconds), "--request-timeout", "60", "--pid", str(srv.proc.pid),
           "--label", target, "--json-out", str(out)]
    budget = a.create_seconds + 5 * a.phase_seconds + 120
    info: dict[str, Any] = {"cmd": " ".join(c if c != srv.token else "<token>" for c in cmd),
                            "loadavg_start": [round(x, 2) for x in os.getloadavg()]}
    print(f"# [{target}] scimload N={a.users} (budget {budget:.0f} s)", file=sys.stderr, flush=True)
    t = time.monotonic()
    with open(workdir / f"scimload-{target}.stdout", "wb") as so:
        p = subprocess.Popen(cmd, stdout=so, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            _, err = p.communicate(timeout=budget)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
            info["killed_after_s"] = budget
    info.update({"rc": p.returncode, "wall_s": round(time.monotonic() - t, 1),
                 "loadavg_end": [round(x, 2) for x in os.getloadavg()],
                 "notes": [ln for ln in err.decode(errors="replace").splitlines() if ln.startswith("#")][-20:]})
    if out.exists():
        info["result"] = json.loads(out.read_text())
    return info


def run_wrk(target: str, srv: Any, a: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    budget = 900 + 3 * a.wrk_seconds
    print(f"# [{target}] wrk run.sh N={a.wrk_users} {a.wrk_seconds}s/phase (budget {budget} s)",
          file=sys.stderr, flush=True)
    info: dict[str, Any] = {"loadavg_start": [round(x, 2) for x in os.getloadavg()]}
    t = time.monotonic()
    try:
        r = subprocess.run(["bash", str(RUN_SH), srv.base_url, srv.token, str(a.wrk_users), str(a.wrk_seconds),
                            str(a.wrk_conns)], env={**os.environ, "PY": a.python}, capture_output=True, text=True,
                           timeout=budget, start_new_session=True)
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
        info["rc"] = r.returncode
        info["result"] = json.loads(lines[-1]) if lines else {"unparsed": (r.stdout + r.stderr)[-2000:]}
    except subprocess.TimeoutExpired:
        info["killed_after_s"] = budget
    info["wall_s"] = round(time.monotonic() - t, 1)
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    return info


# -- report ---------------------------------------------------------------------------------------

def _wrk_ms(text: Any) -> float | None:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", str(text or ""))
    if not m:
        return None
    return round(float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)], 2)


def figures(doc: dict[str, Any], target: str) -> dict[str, Any]:
    """The compared figures of one target: (value, higher_is_better, unit)."""
    f: dict[str, Any] = {}
    sl = doc.get("scimload", {}).get(target, {}).get("result") or {}
    P = sl.get("phases", {})

    def phase(key: str, label: str) -> None:
        s = P.get(key)
        if s:
            f[f"{label} req/s"] = (s.get("req_per_s"), True, "req/s", s.get("truncated"))
            f[f"{label} p50"] = (s.get("p50_ms"), False, "ms", None)
            f[f"{label} p99"] = (s.get("p99_ms"), False, "ms", None)
    phase("a_create", "create (scimload, full body)")
    phase("b_lookup", "userName eq lookup (scimload)")
    phase("c_patch", "user PATCH 3x Replace (scimload)")
    e = P.get("e_paginate")
    if e:
        f["paginate all users, total"] = (e.get("total_time_s"), False, "s", e.get("truncated"))
        f["paginate per page p50"] = (e.get("p50_ms"), False, "ms", None)
    g = P.get("d_group") or {}
    if g.get("batch_summary"):
        b = g["batch_summary"]
        f[f"group fill to {g.get('final_size_by_client')} (100/PATCH, incl. samples), total"] = (
            b.get("wall_s"), False, "s", b.get("truncated"))
        for bucket, v in (g.get("batch_add_100") or {}).items():
            f[f"group fill batch p50, size {bucket}"] = (v.get("p50_ms"), False, "ms", None)
    for cp, c in (g.get("checkpoints") or {}).items():
        if int(cp) >= 1000:
            f[f"add 1 member p50 @ {int(cp):,}"] = (c.get("add1_p50_ms"), False, "ms", None)
            f[f"remove 1 member p50 @ {int(cp):,}"] = (c.get("remove1_p50_ms"), False, "ms", None)
            f[f"GET group excl members p50 @ {int(cp):,}"] = (
                c.get("get_group_excl_members_p50_ms"), False, "ms", None)
    if g.get("get_group_full_ms") is not None:
        f["GET group with all members"] = (g.get("get_group_full_ms"), False, "ms", None)
    w = doc.get("wrk", {}).get(target, {}).get("result") or {}
    for k, label in (("lookup", "userName eq lookup"), ("patch", "user PATCH 3x Replace"), ("create", "create")):
        if f"{k}_rps" in w:
            f[f"{label} (wrk) req/s"] = (w.get(f"{k}_rps"), True, "req/s", None)
            f[f"{label} (wrk) p99"] = (_wrk_ms(w.get(f"{k}_p99")), False, "ms", None)
    return f


TARGETS_5X = ("create (scimload, full body) req/s", "userName eq lookup (scimload) req/s",
              "user PATCH 3x Replace (scimload) req/s", "paginate all users, total",
              "userName eq lookup (wrk) req/s", "user PATCH 3x Replace (wrk) req/s", "create (wrk) req/s")


def print_report(doc: dict[str, Any]) -> None:
    ours, peer = figures(doc, "identity-sync"), figures(doc, "scim2-server")
    run = doc["run"]
    print(f"\nidentity-sync vs {PEER_VERSION}  N={run['users']} concurrency={run['concurrency']}  "
          f"wrk N={run['wrk_users']} {run['wrk_seconds']}s x {run['wrk_conns']} conns  {run['started_utc']}")
    print(f"{'figure':62} {'identity-sync':>14} {'scim2-server':>14} {'ratio':>8}  target")
    ratios = {}
    for key in list(dict.fromkeys([*ours, *peer])):
        o, p = ours.get(key), peer.get(key)
        ov, pv = (o[0] if o else None), (p[0] if p else None)
        higher = (o or p)[1]
        unit = (o or p)[2]
        ratio = None
        if ov and pv:
            ratio = ov / pv if higher else pv / ov  # > 1: identity-sync is better
            ratios[key] = round(ratio, 2)
        target = ""
        if key in TARGETS_5X:
            target = ">= 5x " + ("ok" if ratio and ratio >= 5 else "MISSED")
        elif key.startswith(("add 1 member p50 @ 10,000", "remove 1 member p50 @ 10,000")):
            target = ">= 50x " + ("ok" if ratio and ratio >= 50 else "MISSED")
        trunc = " (TRUNCATED)" if (o and len(o) > 3 and o[3]) or (p and len(p) > 3 and p[3]) else ""
        fmt = lambda v: "-" if v is None else f"{v:,.1f}" if v >= 10 else f"{v:.3g}"  # noqa: E731
        print(f"{key + ' [' + unit + ']':62} {fmt(ov):>14} {fmt(pv):>14} "
              f"{'-' if ratio is None else f'{ratio:.2f}x':>8}  {target}{trunc}")
    doc["ratios"] = ratios
    for t in ("identity-sync", "scim2-server"):
        s = doc.get("servers", {}).get(t, {})
        for tool, v in s.items():
            print(f"[{t} / {tool}] status codes {v.get('access_log_status_codes')}; error lines "
                  f"{v.get('error_lines_total')}; RSS end {v.get('rss_kib_end')} KiB, peak {v.get('rss_peak_kib')} KiB")
            for ln in (v.get("error_lines_sample") or [])[:3]:
                print(f"    {ln[:240]}")
        for tool in ("scimload", "wrk"):
            x = doc.get(tool, {}).get(t)
            if x:
                res = x.get("result") or {}
                errs = {k: v.get("error_samples") for k, v in (res.get("phases") or {}).items()
                        if isinstance(v, dict) and v.get("error_samples")}
                modes = {cp: c.get("remove_mode") for cp, c in
                         ((res.get("phases") or {}).get("d_group", {}).get("checkpoints") or {}).items()}
                print(f"[{t} / {tool}] wall {x.get('wall_s')} s, load avg {x.get('loadavg_start')} -> "
                      f"{x.get('loadavg_end')}" + (f", client errors {errs}" if errs else "")
                      + (f", member remove form {modes}" if modes else "")
                      + (f", wrk errors: {res.get('errors')}" if tool == "wrk" and res.get("errors") else ""))


def main() -> int:
    a = parse_args()
    skip = {s.strip() for s in a.skip.split(",") if s.strip()}
    targets = [t.strip() for t in a.targets.split(",") if t.strip()]
    run: dict[str, Any] = {"started_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "users": a.users,
                           "concurrency": a.concurrency, "wrk_users": a.wrk_users, "wrk_seconds": a.wrk_seconds,
                           "wrk_conns": a.wrk_conns, "peer": PEER_VERSION, "cpus": os.cpu_count(),
                           "loadavg_start": [round(x, 2) for x in os.getloadavg()]}
    with contextlib.suppress(Exception):
        run["git_head"] = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                         capture_output=True, text=True, timeout=10).stdout.strip()

    def on_term(*_: object) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    doc: dict[str, Any] = {"run": run, "scimload": {}, "wrk": {}, "servers": {}}
    workdir = Path(tempfile.mkdtemp(prefix="idsync-compare-", dir="/tmp"))
    venv: Path | None = None
    throwaway = False
    rc = 0
    try:
        if "scim2-server" in targets:
            if a.peer_venv:
                venv = Path(a.peer_venv)
                if not (venv / "bin" / "scim2-server").exists():
                    run["peer_install_s"] = install_peer(venv)
            else:
                venv, throwaway = workdir / "scim2server-venv", True
                print(f"# installing {PEER_VERSION} into {venv}", file=sys.stderr, flush=True)
                run["peer_install_s"] = install_peer(venv)
            run["peer_pip_freeze"] = subprocess.run([str(venv / "bin" / "pip"), "freeze"], capture_output=True,
                                                    text=True, timeout=60).stdout.split()
        for tool, fn in (("scimload", run_scimload), ("wrk", run_wrk)):
            if tool in skip:
                continue
            for target in targets:
                with start(target, a, venv) as srv:
                    stop = with_sampler(srv)
                    try:
                        doc[tool][target] = fn(target, srv, a, workdir)
                    finally:
                        stop.set()
                        mem = srv.sample_memory()
                        srv.stop()
                        doc["servers"].setdefault(target, {})[tool] = {
                            "rss_kib_end": mem.get("VmRSS"), "rss_peak_kib": mem.get("VmHWM"), **srv.log_summary()}
    except KeyboardInterrupt:
        print("# interrupted; servers stopped", file=sys.stderr)
        rc = 130
    finally:
        run["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        shutil.rmtree(workdir, ignore_errors=True)  # includes the throw-away venv
        if throwaway:
            run["peer_venv"] = "throw-away (deleted)"
    print_report(doc)
    out = Path(a.json_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, default=str))
    print(f"\nfull JSON: {out}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
