#!/usr/bin/env python3
"""Soak run (docs/reliability.md row 19): mixed Entra-like SCIM traffic at a fixed request rate
against one ``identity-sync serve``, with pass/fail criteria.

Set-up: a throw-away SQLite DB (or, with ``--database postgresql``, a throw-away durable cluster
from tests/pg.py), a tenant, ``--users`` users bulk-loaded like lookup_scale.py (the package's
own normalization and value index, then ``counts.recount``), ``--groups`` groups created through
the API. Then, for ``--minutes``, requests are due at fixed times (``--rate`` per second, open
loop) and ``--threads`` workers with one keep-alive httpx.Client each take them in order. Every
50 requests (one "cycle", shuffled) hold Entra's provisioning mix:

  25 lookups GET /Users?filter=userName eq "…" (1 in 5 a name that never exists: must find 0)
   5 GET /Users/{id}                      10 PATCH: Replace displayName, title,
   4 POST /Users (core + enterprise +        emails[type eq "work"].value, enterprise department
     GlobalRelay with proxyAddresses)      4 PATCH /Groups/{id} Add or Remove one member
   2 PATCH active=false or DELETE /Users/{id}

Latency is measured from the due time, so a server (or client) that falls behind shows as
queueing. Each response's status must be the expected one; 404 is expected only where a user
was deleted by another request (the client knows which). RSS of the server (and its workers) is
sampled every 10 s. Criteria: 0 × 5xx, p99 < ``--p99-ms`` per minute and overall (enforced on
SQLite; on PostgreSQL only if given), RSS growth < 10 % from the end of minute 5 (or of the first
20 % of a shorter run) to the end. Prints a JSON summary, writes it to
benchmarks/results/soak-<UTC>.json, exits 1 if a criterion fails.

  .venv/bin/python benchmarks/soak.py                     # 20 req/s for 30 min on SQLite
  .venv/bin/python benchmarks/soak.py --minutes 3 --database postgresql --workers 2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from _harness import REPO, Server, proc_status
from lookup_scale import ENTERPRISE, load

from identity_sync.storage import counts
from identity_sync.storage.db import Database
from identity_sync.storage.tenants import get_tenant

CORE, GROUP = "urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:core:2.0:Group"
GLOBALRELAY, PATCHOP = "urn:ietf:params:scim:schemas:extension:GlobalRelay:2.0:User", \
    "urn:ietf:params:scim:api:messages:2.0:PatchOp"
CYCLE = ["lookup"] * 25 + ["get"] * 5 + ["patch"] * 10 + ["create"] * 4 + ["group"] * 4 + ["retire"] * 2


class Pool:
    """The users and group memberships the client knows of. A user picked for DELETE leaves
    ``live`` before the request is sent and enters ``deleted``: a 404 is legitimate exactly for
    ids in ``deleted`` (another thread picked the user just before)."""

    def __init__(self, users: list[tuple[str, str]], groups: list[str], seed: int) -> None:
        self.lock = threading.Lock()
        self.live, self.deleted, self.groups = users, set[str](), groups
        self.members: dict[str, list[str]] = {g: [] for g in groups}
        self.rng, self.created = random.Random(seed), 0

    def pick(self) -> tuple[str, str]:
        with self.lock:
            return self.rng.choice(self.live)

    def retire(self) -> tuple[str, str]:
        with self.lock:
            user = self.live.pop(self.rng.randrange(len(self.live)))
            self.deleted.add(user[0])
            return user


def entra_user(n: int, tag: str) -> dict[str, Any]:
    upn = f"soak-{tag}-{n}@contoso.com"
    return {"schemas": [CORE, ENTERPRISE, GLOBALRELAY], "externalId": f"{tag}-{n}", "userName": upn,
            "active": True, "displayName": f"Soak {n}", "title": "Engineer", "preferredLanguage": "en-US",
            "name": {"formatted": f"Soak {n}", "givenName": "Soak", "familyName": str(n)},
            "emails": [{"type": "work", "value": upn, "primary": True}],
            "addresses": [{"type": "work", "locality": "Redmond", "country": "US", "primary": True}],
            "phoneNumbers": [{"type": "work", "value": f"+1 425 555 {n % 10000:04d}"}],
            ENTERPRISE: {"employeeNumber": f"S{n:07d}", "department": f"D{n % 50}", "costCenter": "CC1"},
            GLOBALRELAY: {"proxyAddresses": [f"SMTP:{upn}", f"smtp:soak-{tag}-{n}@alias.contoso.com"]}}


@dataclass
class Call:
    """One request and what may come back: ``ok`` statuses, ``if_deleted`` ones that are right
    only if ``target`` was deleted meanwhile, and for lookups the ``total`` users it must find."""

    op: str
    method: str
    path: str
    body: Any = None
    ok: frozenset[int] = frozenset({200})
    if_deleted: frozenset[int] = frozenset()
    target: str = ""
    total: int | None = None


def make_call(op: str, k: int, pool: Pool, tag: str) -> Call:
    patch, done, gone = {"schemas": [PATCHOP]}, frozenset({200, 204}), frozenset({404})
    if op == "lookup":
        uid, name = ("", f"never-{k}@contoso.com") if k % 5 == 0 else pool.pick()
        return Call(op, "GET", f'/Users?filter=userName eq "{name}"', target=uid, total=1 if uid else 0)
    if op == "create":
        with pool.lock:
            pool.created += 1
            n = pool.created
        return Call(op, "POST", "/Users", entra_user(n, tag), ok=frozenset({201}))
    if op == "group":
        with pool.lock:  # Entra adds and later removes: a group's members stay few
            group = pool.rng.choice(pool.groups)
            members = pool.members[group]
            add = not members or pool.rng.random() < 0.5
            member = pool.rng.choice(pool.live)[0] if add else members.pop(pool.rng.randrange(len(members)))
            if add:
                members.append(member)
        body = {**patch, "Operations": [{"op": "Add" if add else "Remove", "path": "members",
                                         "value": [{"value": member}]}]}
        return Call("group_add" if add else "group_remove", "PATCH", f"/Groups/{group}", body, done,
                    frozenset({400, 404}) if add else frozenset(), member)
    if op == "retire" and k % 2 == 0:
        return Call("delete", "DELETE", f"/Users/{pool.retire()[0]}", ok=frozenset({204}))
    uid = pool.pick()[0]
    if op == "get":
        return Call(op, "GET", f"/Users/{uid}", if_deleted=gone, target=uid)
    ops = ([{"op": "Replace", "path": "active", "value": False}] if op == "retire" else
           [{"op": "Replace", "path": "displayName", "value": f"Renamed {k}"},
            {"op": "Replace", "path": "title", "value": f"Title {k % 17}"},
            {"op": "Replace", "path": 'emails[type eq "work"].value', "value": f"renamed-{k}@contoso.com"},
            {"op": "Replace", "path": f"{ENTERPRISE}:department", "value": f"Dept {k % 23}"}])
    return Call("disable" if op == "retire" else op, "PATCH", f"/Users/{uid}", {**patch, "Operations": ops},
                done, gone, uid)


def judge(call: Call, reply: httpx.Response, pool: Pool) -> bool:
    """True if the reply is wrong: an unexpected status, or a lookup finding the wrong number."""
    deleted = call.target in pool.deleted
    if reply.status_code not in call.ok:
        return not (deleted and reply.status_code in call.if_deleted)
    return call.total is not None and not deleted and reply.json().get("totalResults") != call.total


def rss_tree(pid: int) -> int:
    """VmRSS (KiB) of the serve process plus its direct children (the uvicorn workers with
    ``--workers`` > 1); multiprocessing's resource tracker is not the server and is left out."""
    total = proc_status(pid).get("VmRSS", 0)
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid \
                    and b"resource_tracker" not in (entry / "cmdline").read_bytes():
                total += proc_status(int(entry.name)).get("VmRSS", 0)
        except (OSError, ValueError, IndexError):
            continue  # a process that ended while we looked
    return total


def pct(sorted_ms: list[float], p: float) -> float | None:
    return round(sorted_ms[max(0, math.ceil(p * len(sorted_ms)) - 1)], 1) if sorted_ms else None


def stats(rows: list[tuple[int, str, float, int | str, bool]]) -> dict[str, Any]:
    """count, p50/p99/max (ms from the due time), 5xx, and other wrong replies (transport errors,
    unexpected 4xx, wrong totalResults) counted apart from the 5xx."""
    ms = sorted(r[2] for r in rows)
    fives = [isinstance(r[3], int) and r[3] >= 500 for r in rows]
    return {"count": len(rows), "p50_ms": pct(ms, 0.5), "p99_ms": pct(ms, 0.99), "max_ms": pct(ms, 1.0),
            "5xx": sum(fives), "unexpected": sum(r[4] and not f for r, f in zip(rows, fives, strict=True))}


def soak(srv: Server, a: argparse.Namespace, tag: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {srv.token}", "Content-Type": "application/scim+json"}
    with httpx.Client(base_url=srv.base_url, headers=headers, timeout=30) as c:
        users: list[tuple[str, str]] = []
        while len(users) < a.users:
            page = c.get("/Users", params={"startIndex": len(users) + 1, "count": 500, "attributes": "userName"})
            users += [(r["id"], r["userName"]) for r in page.raise_for_status().json()["Resources"]]
        groups = [c.post("/Groups", json={"schemas": [GROUP], "displayName": f"Soak {tag} {g}"})
                  .raise_for_status().json()["id"] for g in range(a.groups)]
    pool, stop = Pool(users, groups, a.seed), threading.Event()
    rows: list[tuple[int, str, float, int | str, bool]] = []  # minute, op, ms from due time, status, unexpected
    rss: list[tuple[float, int]] = []
    lag = [0.0]
    duration, interval, seq, seq_lock = a.minutes * 60, 1 / a.rate, iter(range(10**9)), threading.Lock()
    pid = srv.proc.pid if srv.proc else 0
    t0 = time.monotonic() + 0.5

    def sampler() -> None:
        while True:
            rss.append((round(time.monotonic() - t0, 1), rss_tree(pid)))
            if stop.wait(10 - (time.monotonic() - t0) % 10):
                return

    def worker() -> None:
        with httpx.Client(base_url=srv.base_url, headers=headers, timeout=30) as client:
            while not stop.is_set():
                with seq_lock:
                    k = next(seq)
                due = k * interval
                if due >= duration:
                    return
                cycle = CYCLE.copy()
                random.Random(a.seed * 1_000_003 + k // len(CYCLE)).shuffle(cycle)
                op = cycle[k % len(CYCLE)]
                call = make_call(op, k, pool, tag)
                time.sleep(max(0.0, t0 + due - time.monotonic()))
                lag[0] = max(lag[0], time.monotonic() - t0 - due)  # > 0: the client itself fell behind
                try:
                    reply = client.request(call.method, call.path, json=call.body)
                    status: int | str = reply.status_code
                    bad = judge(call, reply, pool)
                    if status == 201:  # Entra goes on to read, patch and delete the users it created
                        with pool.lock:
                            pool.live.append((reply.json()["id"], call.body["userName"]))
                except httpx.HTTPError as exc:  # a refused or timed-out request is a failure too
                    status, bad = type(exc).__name__, True
                ms = (time.monotonic() - t0 - due) * 1000
                rows.append((int(due // 60), call.op, ms, status, bad))

    threads = [threading.Thread(target=sampler, daemon=True)] + \
        [threading.Thread(target=worker, daemon=True) for _ in range(a.threads)]
    for t in threads:
        t.start()
    try:
        for t in threads[1:]:
            t.join()
    finally:
        stop.set()
        threads[0].join()
    rss.append((round(time.monotonic() - t0, 1), rss_tree(pid)))
    by_minute: dict[int, list[Any]] = defaultdict(list)
    by_op: dict[str, list[Any]] = defaultdict(list)
    for r in rows:
        by_minute[r[0]].append(r)
        by_op[r[1]].append(r)
    base_s = min(300.0, 0.2 * duration)
    base_at, base = next(((s, kib) for s, kib in rss if s >= base_s), rss[-1])
    return {"overall": stats(rows), "per_minute": {m: stats(v) for m, v in sorted(by_minute.items())},
            "per_op": {op: stats(v) for op, v in sorted(by_op.items())},
            "unexpected": dict(Counter(f"{r[1]} -> {r[3]}" for r in rows if r[4])),
            "status_codes": dict(Counter(str(r[3]) for r in rows)), "max_client_start_lag_ms": round(lag[0] * 1000, 1),
            "users_at_end": len(pool.live), "rss_samples_kib": rss, "rss_kib_start": rss[0][1],
            "rss_baseline_at_s": base_at, "rss_kib_baseline": base, "rss_kib_end": rss[-1][1],
            "rss_growth_pct": round(100 * (rss[-1][1] - base) / base, 2) if base else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--rate", type=float, default=20, help="requests per second, all threads together")
    ap.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--users", type=int, default=2_000, help="users bulk-loaded before the server starts")
    ap.add_argument("--groups", type=int, default=5)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--workers", type=int, default=1, help="identity-sync serve --workers")
    ap.add_argument("--p99-ms", type=float, default=None, help="p99 bound (default 250 ms, enforced on SQLite only)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json-out", default=None)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: stop serve and the cluster
    started = datetime.now(UTC)
    tag = started.strftime("%H%M%S")
    run = {"started_utc": started.isoformat(timespec="seconds"), **vars(a), "cpus": os.cpu_count(),
           "loadavg_start": os.getloadavg()}
    cluster, url = None, None
    if a.database == "postgresql":
        sys.path.insert(0, str(REPO))
        from tests import pg
        cluster = pg.start_server_with(durable=True)  # production durability, as pg_scale.py
        cluster.admin("CREATE DATABASE idsync")
        url = cluster.url("idsync")

    def prepare(srv: Server) -> None:
        db = Database(srv.database_url)
        with db.read() as conn:
            tenant_id = get_tenant(conn, srv.tenant_name)["id"]
        load(db, tenant_id, 0, a.users)
        with db.write() as conn:
            counts.recount(conn)  # the rows went in straight, not through storage.resources
            conn.exec_driver_sql("ANALYZE")
        db.dispose()

    try:
        with Server(database_url=url, prepare=prepare, serve_args=("--workers", str(a.workers))) as srv:
            result = soak(srv, a, tag)
            srv.stop()
            result["server_log"] = srv.log_summary()
            result["server_status_codes"] = result["server_log"]["access_log_status_codes"]
    finally:
        if cluster is not None:
            cluster.destroy()
    run["loadavg_end"] = os.getloadavg()
    bound = a.p99_ms if a.p99_ms is not None else 250.0 if a.database == "sqlite" else None
    worst = max((m["p99_ms"] or 0 for m in result["per_minute"].values()), default=0)
    verdict = {"no_5xx": result["overall"]["5xx"] == 0 and
               not any(k.startswith("5") for k in result["server_status_codes"]),
               "no_unexpected_status": result["overall"]["unexpected"] == 0,
               "p99_per_minute_and_overall": None if bound is None else
               worst < bound and (result["overall"]["p99_ms"] or 0) < bound,
               "rss_growth_under_10pct": result["rss_growth_pct"] is not None and result["rss_growth_pct"] < 10}
    doc = {"run": run, "p99_bound_ms": bound, "verdict": verdict, "pass": all(v is not False for v in verdict.values()),
           **result}
    out = Path(a.json_out or REPO / "benchmarks" / "results" / f"soak-{started:%Y%m%dT%H%M%SZ}.json")
    out.write_text(json.dumps(doc, indent=1) + "\n")
    brief = {k: v for k, v in doc.items() if k not in ("rss_samples_kib", "server_log")}
    print(json.dumps(brief, indent=1))
    print("written", out, file=sys.stderr)
    return 0 if doc["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
