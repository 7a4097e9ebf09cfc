#!/usr/bin/env python3
"""One-member group PATCH latency against group size (100 … 1,000,000 members), over real HTTP.

Loading a million users and memberships through HTTP would take hours, so this script
bulk-loads them straight into a throw-away SQLite DB *before* the server starts, through the
package's own code: user documents from ``scim.resource.normalize``, their value index from
``scim.index.index_entries`` (SQLAlchemy Core executemany on ``storage.tables``, large
transactions), groups through ``storage.resources.insert`` and memberships through
``storage.memberships.add``. So the rows are exactly what the service would have stored.

One DB holds every group: one group per size, members = the first ``size`` users, plus a pool of
spare users that belong to no group (the users a PATCH adds). Then ``identity-sync serve`` (one
process) starts on that DB and, per size, over HTTP:

* ``PATCH /Groups/{id}`` Add one member (a spare user), ``--samples`` times sequentially, then
  Entra's Remove (``{"op":"Remove","path":"members","value":[{"value":u}]}``) of the same users;
  the sequential samples are interleaved across the sizes (sample i of every size, then i+1 …), so
  that load drift on the shared machine hits every size alike;
* the same with ``--concurrency`` clients at once;
* ``GET /Groups?filter=displayName eq "…"&excludedAttributes=members`` and
  ``GET /Groups/{id}?excludedAttributes=members``.

Afterwards (server stopped) the same add/remove/get run once more in-process with every SQL
statement timed, and the EXPLAIN QUERY PLAN of each is printed for the largest size: if a PATCH
grows with group size, the statement responsible shows up there.

  .venv/bin/python benchmarks/bench_memberships.py                          # 100 … 1,000,000
  .venv/bin/python benchmarks/bench_memberships.py --sizes 100,10000,100000 --samples 50

Everything is time-bounded (load, each measurement phase, each request); the server is always
stopped and the DB (under /tmp) deleted unless --keep.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import DEFAULT_CLI, REPO, Server

from identity_sync.auth.tokens import Principal
from identity_sync.clock import now_text
from identity_sync.config import Settings
from identity_sync.ids import new_id
from identity_sync.scim.index import index_entries
from identity_sync.scim.registry import GROUP, USER, canonical_key
from identity_sync.scim.resource import normalize
from identity_sync.service.resources import ResourceService
from identity_sync.storage import counts
from identity_sync.storage import memberships as member_store
from identity_sync.storage import resources as store
from identity_sync.storage.db import Database
from identity_sync.storage.tables import attr_values, resources
from identity_sync.storage.tenants import get_tenant

PATCHOP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
#: Rough on-disk cost of one loaded user (document, value index, indexes) plus one membership,
#: with margin for the WAL; measured about 3.3 KiB per user (core body) on a small DB.
BYTES_PER_USER = 4_500
BYTES_PER_MEMBERSHIP = 600


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,10000,100000,1000000",
                    type=lambda s: sorted({int(x.replace("_", "")) for x in s.split(",") if x.strip()}),
                    help="group sizes (comma-separated; default 100,10000,100000,1000000)")
    ap.add_argument("--samples", type=int, default=200, help="sequential adds (and removes, and GETs) per size (>= 50)")
    ap.add_argument("--concurrency", type=int, default=8, help="clients of the concurrent phase")
    ap.add_argument("--concurrent-requests", type=int, default=48, help="adds (and removes) per size, concurrently")
    ap.add_argument("--warmup", type=int, default=3, help="untimed add+remove+GETs per size before measuring")
    ap.add_argument("--load-batch", type=int, default=25_000, help="users per load transaction")
    ap.add_argument("--load-seconds", type=float, default=1800, help="abort if the bulk load takes longer")
    ap.add_argument("--phase-seconds", type=float, default=240, help="time cap of each measurement phase")
    ap.add_argument("--request-timeout", type=float, default=60)
    ap.add_argument("--min-free-gb", type=float, default=5.0, help="keep this much of /tmp free (else scale down)")
    ap.add_argument("--no-explain", action="store_true", help="skip the in-process statement timing / query plans")
    ap.add_argument("--cli", default=str(DEFAULT_CLI))
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (DB + server log)")
    a = ap.parse_args()
    if a.json_out is None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        a.json_out = str(REPO / "benchmarks" / "results" / f"bench_memberships-{stamp}.json")
    return a


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return round(s[k] * 1000, 2)


def lat_summary(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50_ms": pct(values, 50), "p90_ms": pct(values, 90), "p99_ms": pct(values, 99),
            "max_ms": round(max(values) * 1000, 2) if values else None}


def user_body(i: int) -> dict[str, Any]:
    """A core Entra-like user (what Entra sends minus the extensions: keeps the 1M DB a few GB)."""
    upn = f"mb-{i:07d}@bench.example.com"
    return {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": upn, "externalId": f"ext-{i}",
            "active": True, "displayName": f"Member {i}", "name": {"givenName": "Member", "familyName": str(i)},
            "emails": [{"type": "work", "value": upn, "primary": True}]}


def group_name(size: int) -> str:
    return f"bench-members-{size}"


# -- bulk load ----------------------------------------------------------------------------------

class Loader:
    """The ``prepare`` hook of the harness: fills the DB after the tenant exists, before serve."""

    def __init__(self, sizes: list[int], spare: int, batch: int, budget_s: float) -> None:
        self.sizes, self.spare, self.batch, self.budget_s = sizes, spare, batch, budget_s
        self.users = max(sizes) + spare
        self.user_ids: list[str] = []
        self.group_ids: dict[int, str] = {}
        self.tenant_id = ""
        self.timing: dict[str, float] = {}

    def __call__(self, srv: Server) -> None:
        t0 = time.monotonic()
        deadline = t0 + self.budget_s
        db = Database(srv.database_url)

        def bulk_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cur = dbapi_connection.cursor()
            cur.execute("PRAGMA cache_size=-1048576")  # 1 GiB page cache for the load only
            cur.execute("PRAGMA synchronous=OFF")      # a throw-away DB: no fsync per commit
            cur.close()
        sa.event.listen(db.engine, "connect", bulk_pragmas)
        try:
            with db.read() as conn:
                self.tenant_id = get_tenant(conn, srv.tenant_name)["id"]
            now = now_text()
            done = 0
            while done < self.users:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"bulk load exceeded {self.budget_s:.0f} s at {done} users")
                rows, index_rows = [], []
                for i in range(done, min(done + self.batch, self.users)):
                    doc = normalize(USER, user_body(i))
                    rid = new_id()
                    self.user_ids.append(rid)
                    rows.append({"id": rid, "tenant_id": self.tenant_id, "resource_type": USER.name,
                                 "name_key": canonical_key(doc["userName"]), "doc": doc, "version": 1,
                                 "created_at": now, "last_modified": now})
                    index_rows.extend({"resource_id": rid, "tenant_id": self.tenant_id, "path": path,
                                       "element": element, "key": key}
                                      for path, element, key in index_entries(USER, doc))
                with db.write() as conn:
                    conn.execute(resources.insert(), rows)
                    conn.execute(attr_values.insert(), index_rows)
                done += len(rows)
                if done % (self.batch * 8) == 0 or done == self.users:
                    print(f"# load: {done:,} users in {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
            with db.write() as conn:
                counts.recount(conn)  # the users went in straight, not through storage.resources
            self.timing["users_s"] = round(time.monotonic() - t0, 1)
            t1 = time.monotonic()
            for size in self.sizes:
                gid = new_id()
                self.group_ids[size] = gid
                name = group_name(size)
                with db.write() as conn:
                    store.insert(conn, self.tenant_id, GROUP, gid, canonical_key(name),
                                 normalize(GROUP, {"schemas": [GROUP.core.id], "displayName": name}), now)
                for start in range(0, size, self.batch * 4):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"bulk load exceeded {self.budget_s:.0f} s in group {size}")
                    chunk = {uid: "User" for uid in self.user_ids[start:min(size, start + self.batch * 4)]}
                    with db.write() as conn:
                        member_store.add(conn, self.tenant_id, gid, chunk, now)
            with db.write() as conn:
                counts.recount(conn)  # the groups went in through storage.insert, which counts nothing
            self.timing["memberships_s"] = round(time.monotonic() - t1, 1)
            t2 = time.monotonic()
            with db.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            self.timing["checkpoint_s"] = round(time.monotonic() - t2, 1)
            self.timing["total_s"] = round(time.monotonic() - t0, 1)
        finally:
            db.dispose()

    @property
    def spare_ids(self) -> list[str]:
        return self.user_ids[max(self.sizes):]


# -- measurement over HTTP ------------------------------------------------------------------------

class Probe:
    def __init__(self, srv: Server, timeout: float) -> None:
        self.client = httpx.Client(base_url=srv.base_url, timeout=timeout,
                                   headers={"Authorization": f"Bearer {srv.token}",
                                            "Content-Type": "application/scim+json"},
                                   limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))
        self.codes: dict[str, Counter[str]] = {}
        self.errors: dict[str, Counter[str]] = {}

    def call(self, kind: str, method: str, url: str, expect: int, **kw: Any) -> tuple[float, httpx.Response | None]:
        t = time.perf_counter()
        try:
            r = self.client.request(method, url, **kw)
        except httpx.HTTPError as e:
            d = time.perf_counter() - t
            self.codes.setdefault(kind, Counter())["EXC"] += 1
            self.errors.setdefault(kind, Counter())[type(e).__name__] += 1
            return d, None
        d = time.perf_counter() - t
        self.codes.setdefault(kind, Counter())[str(r.status_code)] += 1
        if r.status_code != expect:
            self.errors.setdefault(kind, Counter())[f"{r.status_code} {r.text[:160]}"] += 1
            return d, None
        return d, r

    def member_op(self, kind: str, gid: str, uid: str, op: str) -> tuple[float, bool]:
        body = {"schemas": [PATCHOP], "Operations": [{"op": op, "path": "members", "value": [{"value": uid}]}]}
        d, r = self.call(kind, "PATCH", f"/Groups/{gid}", 204, json=body)
        return d, r is not None

    def get_filter(self, size: int) -> tuple[float, bool]:
        d, r = self.call("get_filter", "GET", "/Groups", 200, params={
            "filter": f'displayName eq "{group_name(size)}"', "excludedAttributes": "members"})
        ok = r is not None and r.json().get("totalResults") == 1 and "members" not in r.json()["Resources"][0]
        return d, ok

    def get_by_id(self, gid: str) -> tuple[float, bool]:
        d, r = self.call("get_by_id", "GET", f"/Groups/{gid}", 200, params={"excludedAttributes": "members"})
        return d, r is not None and r.json().get("id") == gid and "members" not in r.json()

    def groups_of(self, uid: str) -> list[str] | None:
        _, r = self.call("verify", "GET", f"/Users/{uid}", 200, params={"attributes": "groups"})
        return None if r is None else [g["value"] for g in r.json().get("groups", [])]


def measure(srv: Server, loader: Loader, a: argparse.Namespace) -> dict[str, Any]:
    sizes, gids = loader.sizes, loader.group_ids
    spare = loader.spare_ids
    probe = Probe(srv, a.request_timeout)
    res: dict[str, dict[str, Any]] = {str(s): {"size": s, "group_id": gids[s]} for s in sizes}
    wrong: Counter[str] = Counter()
    truncated: list[str] = []
    rss: dict[str, Any] = {"after_start_kib": srv.sample_memory().get("VmRSS")}

    # warm-up (untimed): the first requests to a group read cold pages
    warm = spare[-a.warmup:] if a.warmup else []
    for size in sizes:
        for uid in warm:
            probe.member_op("warmup", gids[size], uid, "Add")
            probe.member_op("warmup", gids[size], uid, "Remove")
            probe.get_filter(size)
            probe.get_by_id(gids[size])

    seq_users = spare[:a.samples]
    conc_users = spare[a.samples:a.samples + a.concurrent_requests]

    def sequential(kind: str, op: str) -> None:
        lat: dict[int, list[float]] = {s: [] for s in sizes}
        deadline = time.monotonic() + a.phase_seconds
        for uid in seq_users:
            if time.monotonic() > deadline:
                truncated.append(kind)
                break
            for size in sizes:  # interleaved: sample i of every size, then i+1
                d, ok = probe.member_op(kind, gids[size], uid, op)
                if ok:
                    lat[size].append(d)
        for size in sizes:
            res[str(size)][kind] = lat_summary(lat[size])

    def concurrent(kind: str, op: str) -> None:
        for size in sizes:
            lat: list[float] = []
            lock = threading.Lock()
            deadline = time.monotonic() + a.phase_seconds

            def one(uid: str, gid: str = gids[size], lat: list[float] = lat, lock: Any = lock,
                    deadline: float = deadline) -> None:
                if time.monotonic() > deadline:
                    return
                d, ok = probe.member_op(kind, gid, uid, op)
                if ok:
                    with lock:
                        lat.append(d)
            t = time.perf_counter()
            with ThreadPoolExecutor(a.concurrency) as pool:
                list(pool.map(one, conc_users))
            wall = time.perf_counter() - t
            if len(lat) < len(conc_users):
                truncated.append(f"{kind}@{size}")
            res[str(size)][kind] = {**lat_summary(lat), "req_per_s": round(len(lat) / wall, 1) if wall else None,
                               "concurrency": a.concurrency}

    def gets(kind: str, fn: Any) -> None:
        lat: dict[int, list[float]] = {s: [] for s in sizes}
        deadline = time.monotonic() + a.phase_seconds
        for _ in range(a.samples):
            if time.monotonic() > deadline:
                truncated.append(kind)
                break
            for size in sizes:
                d, ok = fn(size)
                lat[size].append(d)
                if not ok:
                    wrong[f"{kind}@{size}"] += 1
        for size in sizes:
            res[str(size)][kind] = lat_summary(lat[size])

    t0 = time.monotonic()
    sequential("add1", "Add")
    rss["after_adds_kib"] = srv.sample_memory().get("VmRSS")
    for size in sizes:  # the add is visible from the user's side
        got = probe.groups_of(seq_users[0])
        if got is None or gids[size] not in got:
            wrong[f"after add: user not in group {size}"] += 1
    sequential("remove1", "Remove")
    for size in sizes:
        got = probe.groups_of(seq_users[0])
        if got is None or gids[size] in got:
            wrong[f"after remove: user still in group {size}"] += 1
    concurrent("add1_concurrent", "Add")
    concurrent("remove1_concurrent", "Remove")
    gets("get_filter_excl_members", probe.get_filter)
    gets("get_by_id_excl_members", lambda size: probe.get_by_id(gids[size]))
    rss["end_kib"] = srv.sample_memory().get("VmRSS")
    rss["peak_kib"] = srv.peak.get("VmHWM")
    probe.client.close()
    return {"by_size": res, "status_codes": {k: dict(v) for k, v in probe.codes.items()},
            "errors": {k: dict(v.most_common(5)) for k, v in probe.errors.items()}, "wrong": dict(wrong),
            "truncated": truncated, "rss": rss, "measure_s": round(time.monotonic() - t0, 1)}


def check_counts(db_path: str, gids: dict[int, str]) -> dict[str, int]:
    """Members per group straight from the DB after the add/remove cycles (must equal the size)."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        return {str(s): con.execute("SELECT count(*) FROM memberships WHERE group_id=?", (g,)).fetchone()[0]
                for s, g in gids.items()}
    finally:
        con.close()


# -- in-process statement timing and query plans ----------------------------------------------------

def explain(srv: Server, loader: Loader) -> dict[str, Any]:
    """Run add / remove / GETs once per size in-process (server stopped), timing each SQL statement,
    and EXPLAIN QUERY PLAN every statement of the largest size."""
    db = Database(srv.database_url)
    captured: list[dict[str, Any]] = []

    @sa.event.listens_for(db.engine, "before_cursor_execute")
    def _before(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        conn.info["t"] = time.perf_counter()

    @sa.event.listens_for(db.engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        captured.append({"sql": statement, "params": params, "ms": (time.perf_counter() - conn.info["t"]) * 1000,
                         "many": executemany})

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))  # no info lines
    service = ResourceService(db, Settings())
    principal = Principal(loader.tenant_id, srv.tenant_name, "bench")
    uid = loader.spare_ids[-1]
    out: dict[str, Any] = {}
    try:
        for size in [min(loader.sizes), *loader.sizes]:  # the first round warms up, and is overwritten
            gid = loader.group_ids[size]
            steps = {
                "add1": lambda gid=gid: service.patch(principal, GROUP, gid, {"schemas": [PATCHOP], "Operations": [
                    {"op": "Add", "path": "members", "value": [{"value": uid}]}]}, None),
                "remove1": lambda gid=gid: service.patch(principal, GROUP, gid, {"schemas": [PATCHOP], "Operations": [
                    {"op": "Remove", "path": "members", "value": [{"value": uid}]}]}, None),
                "get_filter": lambda size=size: service.query(
                    principal, GROUP, f'displayName eq "{group_name(size)}"', 1, 100),
                "get_by_id": lambda gid=gid: service.get(principal, GROUP, gid),
            }
            out[str(size)] = {}
            for name, fn in steps.items():
                captured.clear()
                t = time.perf_counter()
                fn()
                total = (time.perf_counter() - t) * 1000
                stmts = [c for c in captured if not c["sql"].lstrip().upper().startswith(("BEGIN", "COMMIT", "PRAGMA"))]
                out[str(size)][name] = {"total_ms": round(total, 2), "statements": [
                    {"ms": round(c["ms"], 3), "sql": " ".join(c["sql"].split())[:300]} for c in stmts]}
                if size == max(loader.sizes):
                    with db.engine.connect() as conn:
                        for entry, c in zip(out[str(size)][name]["statements"], stmts, strict=True):
                            params = c["params"][0] if c["many"] else c["params"]
                            with contextlib.suppress(Exception):
                                rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + c["sql"], params).all()
                                entry["plan"] = [r[-1] for r in rows]
                        conn.rollback()
    finally:
        db.dispose()
    return out


# -- report ---------------------------------------------------------------------------------------

def print_report(doc: dict[str, Any]) -> None:
    m, run = doc["measure"], doc["run"]
    sizes = run["sizes"]
    print(f"\nidentity-sync one-member group PATCH vs group size  ({run['started_utc']}, load avg "
          f"{run['loadavg_start']} -> {run.get('loadavg_end')})")
    print(f"bulk load: {run['users_loaded']:,} users + {sum(sizes):,} memberships in {run['load']['total_s']} s "
          f"(users {run['load']['users_s']} s, memberships {run['load']['memberships_s']} s, checkpoint "
          f"{run['load']['checkpoint_s']} s); DB {run['db_mib']} MiB")
    cols = [("add1", "add 1 (seq)"), ("remove1", "remove 1 (seq)"),
            ("add1_concurrent", f"add 1 (x{run['concurrency']})"),
            ("remove1_concurrent", f"remove 1 (x{run['concurrency']})"),
            ("get_filter_excl_members", "GET filter excl"), ("get_by_id_excl_members", "GET id excl")]
    print(f"{'':22}" + "".join(f"{s:>26,}" for s in sizes))
    for key, label in cols:
        for stat in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "n") + (("req_per_s",) if "concurrent" in key else ()):
            vals = [m["by_size"][str(s)].get(key, {}).get(stat) for s in sizes]
            print(f"{label + ' ' + stat:22}" + "".join(f"{'-' if v is None else v:>26}" for v in vals))
    lo, hi = str(min(sizes)), str(max(sizes))
    print(f"\nratio p50 at {int(hi):,} vs {int(lo):,} (target for add/remove: <= 1.5):")
    for key, label in cols:
        a, b = m["by_size"][lo].get(key, {}).get("p50_ms"), m["by_size"][hi].get(key, {}).get("p50_ms")
        if a and b:
            print(f"  {label:22} {b / a:6.2f}")
    print(f"\nclient status codes: {m['status_codes']}")
    if m["errors"]:
        print(f"client errors: {m['errors']}")
    print(f"wrong results: {m['wrong'] or 'none'}; truncated phases: {m['truncated'] or 'none'}; "
          f"members per group after the run: {doc.get('member_counts')}")
    r = m["rss"]
    mib = lambda k: "-" if k is None else f"{k / 1024:.0f} MiB"  # noqa: E731
    print(f"server RSS: after start {mib(r.get('after_start_kib'))}, after adds {mib(r.get('after_adds_kib'))}, "
          f"end {mib(r.get('end_kib'))}, peak {mib(r.get('peak_kib'))}")
    s = doc["server"]
    print(f"server access log: {s.get('access_log_status_codes')}; requests >1 s: {s.get('requests_over_1s')}; "
          f"warning/error lines: {s.get('error_lines_total')}; exit {s.get('exit_code')}")
    for line in (s.get("error_lines_sample") or [])[:5]:
        print(f"  server: {line[:300]}")
    ex = doc.get("explain")
    if ex:
        print("\nin-process (server stopped), one call each, ms: total / slowest statement")
        for size, steps in ex.items():
            parts = []
            for name, v in steps.items():
                slow = max(v["statements"], key=lambda x: x["ms"], default={"ms": 0})
                parts.append(f"{name} {v['total_ms']:.1f} / {slow['ms']:.1f}")
            print(f"  {int(size):>9,}: " + "; ".join(parts))
        big = ex[str(max(sizes))]
        print(f"query plans at {max(sizes):,} members:")
        for name, v in big.items():
            for st in v["statements"]:
                print(f"  [{name}] {st['ms']:.2f} ms  {st['sql'][:150]}")
                for p in st.get("plan", []):
                    print(f"      {p}")


def main() -> int:
    a = parse_args()
    if a.samples < 1 or not a.sizes:
        sys.exit("need --samples >= 1 and at least one size")
    spare = a.samples + a.concurrent_requests + a.warmup
    sizes = list(a.sizes)
    free = shutil.disk_usage("/tmp").free
    need = lambda ss: (max(ss) + spare) * BYTES_PER_USER + sum(ss) * BYTES_PER_MEMBERSHIP  # noqa: E731
    notes = []
    while len(sizes) > 1 and need(sizes) > free - a.min_free_gb * 2**30:
        notes.append(f"/tmp has {free / 2**30:.1f} GiB free, {need(sizes) / 2**30:.1f} GiB needed: "
                     f"dropping size {sizes[-1]:,}")
        sizes.pop()
    for n in notes:
        print("# " + n, file=sys.stderr)
    run: dict[str, Any] = {"started_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "sizes": sizes,
                           "samples": a.samples, "concurrency": a.concurrency,
                           "concurrent_requests": a.concurrent_requests, "users_loaded": max(sizes) + spare,
                           "loadavg_start": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
                           "tmp_free_gib": round(free / 2**30, 1), "notes": notes}
    with contextlib.suppress(Exception):
        run["git_head"] = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                         capture_output=True, text=True, timeout=10).stdout.strip()
        run["git_dirty"] = subprocess.run(["git", "-C", str(REPO), "diff", "--stat", "--", "identity_sync"],
                                          capture_output=True, text=True, timeout=10).stdout.strip().splitlines()

    def on_term(*_: object) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    loader = Loader(sizes, spare, a.load_batch, a.load_seconds)
    doc: dict[str, Any] = {"run": run}
    out = Path(a.json_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rc = 0
    print(f"# loading {max(sizes) + spare:,} users and groups of {sizes} ...", file=sys.stderr, flush=True)
    with Server(cli=a.cli, keep=a.keep, prepare=loader, start_timeout=180) as srv:
        db_path = sa.engine.make_url(srv.database_url).database
        run["load"] = loader.timing
        run["db_mib"] = round(sum(p.stat().st_size for p in Path(db_path).parent.glob("bench.db*")) / 2**20)
        print(f"# loaded in {loader.timing['total_s']} s, DB {run['db_mib']} MiB; server pid {srv.proc.pid} on "
              f"{srv.base_url}", file=sys.stderr, flush=True)
        stop = threading.Event()

        def sampler() -> None:
            while not stop.wait(1.0):
                srv.sample_memory()
        threading.Thread(target=sampler, daemon=True).start()
        try:
            doc["measure"] = measure(srv, loader, a)
            doc["member_counts"] = check_counts(db_path, loader.group_ids)
            m = doc["measure"]
            if any(int(k) != v for k, v in doc["member_counts"].items()) or m["errors"] or m["wrong"] or m["truncated"]:
                rc = 1  # a figure built on failed or missing requests is not a result
                doc["invalid"] = True
        except KeyboardInterrupt:
            print("# interrupted; stopping", file=sys.stderr)
            rc = 130
        finally:
            stop.set()
            srv.stop()
            doc["server"] = {"rss_peak_kib": srv.peak.get("VmHWM"), **srv.log_summary()}
            run["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        if rc == 0 and not a.no_explain:
            try:
                doc["explain"] = explain(srv, loader)
            except Exception as e:  # evidence only: never fail the run for it
                doc["explain_error"] = repr(e)
        if a.keep:
            run["kept_dir"] = str(srv.dir)
    out.write_text(json.dumps(doc, indent=1, default=str))
    if "measure" in doc:
        print_report(doc)
    if doc.get("invalid"):
        print("\nINVALID RUN: errors, wrong results, truncated phases or wrong member counts (see above)")
    print(f"\nfull JSON: {out}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
