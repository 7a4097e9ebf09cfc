"""Fairness between tenants (issue 11, item 1): one tenant's latency while another sends the
worst requests the service's limits allow.

A real ``identity-sync serve`` (one worker, SQLite, the service's default limits: 100 req/s and
8 concurrent requests per tenant, 1,000 values per attribute, 200 attribute names, 1,000 PATCH
operations, 1 MiB bodies) with two tenants:

* ``victim``: one client, one request at a time, ``GET /Users/{id}`` — first alone (idle), then
  while the attacker runs; the figure is its latency under attack relative to idle;
* ``attacker``: ``--attackers`` processes × ``--threads`` connections, each looping over the
  costliest requests the caps allow, waiting ``Retry-After`` after a 429 as Entra and Okta do
  (``--flood``: ignoring it, sending the next request at once):
  - PATCH with 1,000 operations each re-adding an email of a user holding 1,000 emails;
  - PATCH with 1,000 filtered operations (``emails[value eq "…"].display``) on that user;
  - ``GET /Users?count=1000`` with 200 names in ``attributes`` over 1,000 users;
  - ``GET /Users`` with a 50-term ``co`` filter, 1,000 per page;
  - ``POST /Bulk`` with 1,000 operations: users whose managers are created later in the request
    (a reversed bulkId chain).

Attackers run in their own processes so that their client-side work does not slow the victim's
client. Loopback only; the data directory is temporary; the server is always stopped.

    .venv/bin/python benchmarks/fairness.py                  # 20 s idle, 40 s under attack
    .venv/bin/python benchmarks/fairness.py --seconds 10 --json-out /tmp/fairness.json
    IDSYNC_TENANT_LANES=0 IDSYNC_COSTLY_REQUEST_PAUSE_SECONDS=0 .venv/bin/python benchmarks/fairness.py
        # as before lanes and pacing (benchmarks/README.md, Fairness)
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import REPO, Server

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
BULK = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
CAP_VALUES, CAP_NAMES, CAP_OPERATIONS, CAP_TERMS, PAGE = 1_000, 200, 1_000, 50, 1_000
FAIRNESS_SETTINGS = ("IDSYNC_COSTLY_REQUESTS_PROCESS", "IDSYNC_TENANT_MAX_CONCURRENT_REQUESTS",
                     "IDSYNC_TENANT_CPU_SECONDS_PER_SECOND", "IDSYNC_TENANT_CPU_BURST_SECONDS", "IDSYNC_TENANT_LANES",
                     "IDSYNC_COSTLY_REQUEST_PAUSE_SECONDS",
                     "IDSYNC_THREAD_SWITCH_INTERVAL_SECONDS")


class Connection:
    """One keep-alive HTTP/1.1 connection to the server for one tenant."""

    def __init__(self, port: int, tenant: str, token: str) -> None:
        self.port, self.prefix = port, f"/scim/v2/{tenant}"
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
        self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        status, _, content = self.exchange(method, path, body)
        return status, content

    def exchange(self, method: str, path: str, body: bytes | None = None) -> tuple[int, str | None, bytes]:
        """One request: its status, ``Retry-After`` header and body."""
        for attempt in (1, 2):
            try:
                self.http.request(method, self.prefix + path, body=body, headers=self.headers)
                response = self.http.getresponse()
                return response.status, response.getheader("Retry-After"), response.read()
            except (http.client.HTTPException, OSError):
                self.http.close()
                self.http = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
                if attempt == 2:
                    raise
        raise AssertionError("not reached")


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _emails(count: int, prefix: str) -> list[dict[str, str]]:
    return [{"value": f"{prefix}{i}@example.com", "type": "work"} for i in range(count)]


def worst_requests(user_id: str) -> list[tuple[str, str, bytes | None]]:
    """The costliest requests the default caps allow, pre-encoded (method, path, body)."""
    names = ",".join(["userName", "emails.value", "name.givenName", "displayName"] * (CAP_NAMES // 4))
    terms = " or ".join(f'userName co "{chr(97 + i % 26)}{i}"' for i in range(CAP_TERMS))
    from urllib.parse import quote

    chain = [{"method": "POST", "path": "/Users", "bulkId": f"b{i}", "data": {
        "schemas": [USER], "userName": f"chain-{{run}}-{i}@example.com",
        **({ENTERPRISE: {"manager": {"value": f"bulkId:b{i + 1}"}}} if i + 1 < CAP_OPERATIONS else {})}}
        for i in range(CAP_OPERATIONS)]
    return [
        ("PATCH", f"/Users/{user_id}", _json({"schemas": [PATCH], "Operations": [
            {"op": "add", "path": "emails", "value": [{"value": f"u{i}@example.com", "type": "work"}]}
            for i in range(CAP_OPERATIONS)]})),
        ("PATCH", f"/Users/{user_id}", _json({"schemas": [PATCH], "Operations": [
            {"op": "replace", "path": f'emails[value eq "u{i}@example.com"].display', "value": f"d{i}"}
            for i in range(CAP_OPERATIONS)]})),
        ("GET", f"/Users?count={PAGE}&attributes={quote(names)}", None),
        ("GET", f"/Users?count={PAGE}&filter={quote(terms)}", None),
        ("POST", "/Bulk", _json({"schemas": [BULK], "Operations": chain})),
    ]


def attack(port: int, token: str, user_id: str, threads: int, until: float, honor_retry_after: bool,
           out: Any, niceness: int = 0) -> None:
    """One attacker process: ``threads`` connections looping over the worst requests; after a
    429 a connection waits ``Retry-After`` (bounded by the end of the attack) if
    ``honor_retry_after``, else it sends the next request at once (a flood). ``niceness``: this
    process's, so that building requests and reading answers here does not take the cores from
    the server and the victim's client (a real attacker runs on its own machine)."""
    import threading

    os.nice(niceness)

    requests = worst_requests(user_id)
    statuses: Counter[str] = Counter()
    lock = threading.Lock()

    def loop(offset: int) -> None:
        connection = Connection(port, "attacker", token)
        run = 0
        while time.monotonic() < until:
            method, path, body = requests[(offset + run) % len(requests)]
            if body is not None and b"{run}" in body:
                body = body.replace(b"{run}", f"{os.getpid()}-{offset}-{run}".encode())
            run += 1
            try:
                status, wait, _ = connection.exchange(method, path, body)
            except OSError:
                status, wait = 0, None
            if status == 429 and honor_retry_after and wait:
                time.sleep(max(0.0, min(float(wait), until - time.monotonic())))
            with lock:
                statuses[f"{method} {path.split('?')[0].split('/')[1]} {status}"] += 1

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    out.put(dict(statuses))


def victim_latencies(port: int, token: str, user_ids: list[str], seconds: float) -> list[float]:
    """``GET /Users/{id}`` one at a time for ``seconds``: each latency in milliseconds."""
    connection = Connection(port, "victim", token)
    samples, deadline, i = [], time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        started = time.perf_counter()
        status, _ = connection.call("GET", f"/Users/{user_ids[i % len(user_ids)]}")
        samples.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise RuntimeError(f"victim GET answered {status}")
        i += 1
        time.sleep(0.015)  # a steady client (~60 req/s, under the rate limit), not a saturating one
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"requests": len(ordered), "p50_ms": pick(0.50), "p90_ms": pick(0.90), "p99_ms": pick(0.99),
            "max_ms": round(ordered[-1], 2), "mean_ms": round(statistics.fmean(ordered), 2)}


def _create_tenant(server: Server, name: str) -> str:
    result = subprocess.run([server.cli, "tenant", "create", name, "--json"],
                            env={**server.env, "IDSYNC_PUBLIC_URL": "http://127.0.0.1"}, capture_output=True,
                            text=True, timeout=120, check=True)
    return str(json.loads(result.stdout)["token"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=40.0, help="length of the attack phase (idle: half)")
    parser.add_argument("--attackers", type=int, default=2, help="attacker processes")
    parser.add_argument("--threads", type=int, default=8, help="connections per attacker process")
    parser.add_argument("--flood", action="store_true",
                        help="attackers ignore 429 and Retry-After (default: they wait as told, as Entra and Okta do)")
    parser.add_argument("--attacker-nice", type=int, default=10,
                        help="niceness of the attacker processes (default 10: their client-side work yields the "
                             "cores to the server and the victim's client; 0: as before 2026-12-06)")
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    args = parser.parse_args()

    tokens: dict[str, str] = {}

    def prepare(server: Server) -> None:
        tokens["victim"] = _create_tenant(server, "victim")
        tokens["attacker"] = _create_tenant(server, "attacker")

    # The service's default limits, not the harness's "no rate limit".
    os.environ["IDSYNC_RATE_LIMIT_PER_SECOND"] = "100"
    with Server(tenant="setup", prepare=prepare, keep=args.keep, log_level="WARNING") as server:
        victim = Connection(server.port, "victim", tokens["victim"])
        victim_ids = [json.loads(victim.call("POST", "/Users", _json(
            {"schemas": [USER], "userName": f"v{i}@example.com"}))[1])["id"] for i in range(100)]
        attacker = Connection(server.port, "attacker", tokens["attacker"])
        status, body = attacker.call("POST", "/Users", _json({"schemas": [USER], "userName": "target@example.com",
                                                              "emails": _emails(CAP_VALUES, "u")}))
        assert status == 201, body[:300]
        target = json.loads(body)["id"]
        for chunk in range(PAGE // 250):  # 1,000 users for the page-sized requests
            status, body = attacker.call("POST", "/Bulk", _json({"schemas": [BULK], "Operations": [
                {"method": "POST", "path": "/Users", "bulkId": f"p{i}",
                 "data": {"schemas": [USER], "userName": f"page{chunk}-{i}@example.com"}} for i in range(250)]}))
            assert status == 200, body[:300]

        idle = victim_latencies(server.port, tokens["victim"], victim_ids, args.seconds / 2)
        until = time.monotonic() + args.seconds
        results: Any = multiprocessing.get_context("spawn").Queue()
        processes = [multiprocessing.get_context("spawn").Process(
            target=attack, args=(server.port, tokens["attacker"], target, args.threads, until, not args.flood,
                                 results, args.attacker_nice))
            for _ in range(args.attackers)]
        for process in processes:
            process.start()
        time.sleep(1.0)  # let the attack reach its steady state before measuring
        attacked = victim_latencies(server.port, tokens["victim"], victim_ids, max(1.0, until - time.monotonic()))
        attacker_statuses: Counter[str] = Counter()
        for process in processes:
            process.join(timeout=300)
            attacker_statuses.update(results.get(timeout=60))
        log = server.log_summary()

    report = {
        "run": {"at": datetime.now(UTC).isoformat(timespec="seconds"), "load_average": os.getloadavg(),
                "cpus": os.cpu_count(), "seconds": args.seconds, "attackers": args.attackers,
                "threads": args.threads, "flood": args.flood, "attacker_nice": args.attacker_nice,
                "repo": REPO.name,
                # The fairness settings the server ran with when set here (else their defaults).
                "settings": {k: v for k, v in os.environ.items() if k in FAIRNESS_SETTINGS}},
        "victim_idle": summary(idle),
        "victim_under_attack": summary(attacked),
        "attacker_statuses": dict(sorted(attacker_statuses.items())),
        "server": {k: log[k] for k in ("access_log_status_codes", "error_lines_total", "error_lines_sample")},
    }
    report["ratio_p50"] = round(report["victim_under_attack"]["p50_ms"] / report["victim_idle"]["p50_ms"], 2)
    report["ratio_p99"] = round(report["victim_under_attack"]["p99_ms"] / report["victim_idle"]["p99_ms"], 2)
    out = args.json_out or REPO / "benchmarks" / "results" / f"fairness-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: report[k] for k in ("victim_idle", "victim_under_attack", "ratio_p50", "ratio_p99",
                                             "attacker_statuses")}, indent=1))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
