"""CPU time per request, ours and scim2-server's, under the same wrk phases as side_by_side.sh.

Requests per second measured on a shared 2-core machine move with everybody else's load (the
hello-world ceiling itself moved 5,000–37,000 GET/s between runs); the CPU time the server
process spends per request moves much less, and is what a change to the hot path changes. Both
servers are single processes, so at saturation requests/s ≈ 1 / (CPU per request) for each,
and the ratio of CPU per request predicts the throughput ratio a quiet machine would show.

usage: .venv/bin/python benchmarks/cpu_per_request.py [--peers PEERS_DIR] [--users 5000]
       [--seconds 10] [--connections 8] [--only ours|peer]

PEERS_DIR is where ``../shared/bench/peers/setup_and_run.sh PEERS_DIR install`` put the peers
(scim2-server). Loopback only; everything is written under a temporary directory. Prints one JSON
line per server and the ratios; writes benchmarks/results/cpu_per_request-<UTC>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _harness import REPO, Server, free_port  # type: ignore[import-not-found]

WRK_DIR = REPO.parent / "shared" / "bench" / "wrk"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
PHASES = ("lookup", "patch", "create")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process and of its waited-for children (uvicorn's workers), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_port(port: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit(f"nothing listening on 127.0.0.1:{port} after {seconds} s")


async def preload(base: str, token: str, users: int) -> list[str]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
    ids: list[str] = []
    async with httpx.AsyncClient(headers=headers, timeout=60) as client:
        gate = asyncio.Semaphore(8)

        async def one(i: int) -> None:
            async with gate:
                answer = await client.post(f"{base}/Users", json={
                    "schemas": [USER_SCHEMA], "userName": f"load-{i}@load.test", "active": True,
                    "name": {"givenName": "L", "familyName": str(i)},
                    "emails": [{"type": "work", "value": f"load-{i}@load.test"}]})
                if answer.status_code == 201:
                    ids.append(answer.json()["id"])

        await asyncio.gather(*(one(i) for i in range(1, users + 1)))
    return ids


def run_phases(pid: int, base: str, token: str, users: int, seconds: int, connections: int,
               work: Path) -> dict[str, dict[str, float]]:
    ids = asyncio.run(preload(base, token, users))
    (work / "ids").write_text("\n".join(ids) + "\n")
    env = {**os.environ, "WRK_TOKEN": token, "WRK_PREFIX": "load", "WRK_N": str(users), "WRK_IDS": str(work / "ids")}
    results: dict[str, dict[str, float]] = {"preloaded": {"users": len(ids)}}
    for phase in PHASES:
        before = cpu_seconds(pid)
        command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(WRK_DIR / f"{phase}.lua"), base]
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
        spent = cpu_seconds(pid) - before
        count = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
        non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        results[phase] = {"requests": count, "rps": rps, "cpu_s": round(spent, 2),
                          "cpu_us_per_request": round(spent / max(count, 1) * 1e6, 1),
                          "non_2xx": int(non_2xx.group(1)) if non_2xx else 0}
    return results


def ours(args: argparse.Namespace, work: Path) -> dict[str, dict[str, float]]:
    # The benchmarks' usual server (_harness.Server): throw-away SQLite, a tenant, rate limit off.
    with Server() as server:
        assert server.proc is not None
        work.mkdir(parents=True)
        return run_phases(server.proc.pid, server.base_url, server.token, args.users, args.seconds,
                          args.connections, work)


def peer(args: argparse.Namespace, work: Path) -> dict[str, dict[str, float]]:
    work.mkdir(parents=True)
    port = free_port()
    binary = Path(args.peers) / "scim2server" / "bin" / "scim2-server"
    server = subprocess.Popen([str(binary), "--hostname", "127.0.0.1", "--port", str(port), "--bearer-token=peertoken"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        return run_phases(server.pid, f"http://127.0.0.1:{port}", "peertoken", args.users, args.seconds,
                          args.connections, work)
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", help="the peers' directory (setup_and_run.sh PEERS install)")
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--only", choices=("ours", "peer"))
    args = parser.parse_args()
    report: dict[str, object] = {"load_average_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="idsync-cpu-") as tmp:
        if args.only != "peer":
            report["identity-sync"] = ours(args, Path(tmp) / "ours")
            print(json.dumps({"system": "identity-sync", **report["identity-sync"]}), flush=True)  # type: ignore[dict-item]
        if args.only != "ours" and args.peers:
            report["scim2-server"] = peer(args, Path(tmp) / "peer")
            print(json.dumps({"system": "scim2-server", **report["scim2-server"]}), flush=True)  # type: ignore[dict-item]
    report["load_average_end"] = os.getloadavg()[0]
    if "identity-sync" in report and "scim2-server" in report:
        mine, theirs = report["identity-sync"], report["scim2-server"]
        report["ratios"] = {phase: {  # >1: we spend less CPU per request / serve more per second
            "cpu_per_request": round(theirs[phase]["cpu_us_per_request"] / mine[phase]["cpu_us_per_request"], 2),  # type: ignore[index]
            "rps": round(mine[phase]["rps"] / theirs[phase]["rps"], 2)} for phase in PHASES}  # type: ignore[index]
        print(json.dumps({"ratios": report["ratios"]}))
    out = REPO / "benchmarks" / "results" / f"cpu_per_request-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
