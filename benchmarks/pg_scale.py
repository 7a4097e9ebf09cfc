#!/usr/bin/env python3
"""PostgreSQL at scale (run on demand, not in the suite; loopback only):

1. a throw-away PostgreSQL cluster (tests/pg.py; fsync on: production durability), migrated;
2. N users (default 1,000,000) in one tenant, bulk-loaded with COPY — the documents, name keys
   and index rows are made by the package's own code (normalize, canonical_key, index_entries),
   only the transport is COPY instead of one POST each;
3. a group with G members (default 100,000), members loaded the same way;
4. for 1, 2 and 4 workers (`identity-sync serve --workers W`): wrk (the shared lookup / patch /
   create scripts of ../shared/bench/wrk) for D seconds each, the one-member PATCH p50 on the
   big group, and the RSS of each worker process afterwards.

  .venv/bin/python benchmarks/pg_scale.py                       # 1,000,000 users, 100,000 members
  .venv/bin/python benchmarks/pg_scale.py --users 200000 --members 100000 --seconds 10

Prints one JSON document (and writes it under benchmarks/results/ with --save).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from identity_sync.clock import now_text  # noqa: E402
from identity_sync.ids import new_id  # noqa: E402
from identity_sync.scim.index import index_entries  # noqa: E402
from identity_sync.scim.registry import USER, canonical_key  # noqa: E402
from identity_sync.scim.resource import normalize  # noqa: E402
from identity_sync.service.tenants import TenantService  # noqa: E402
from identity_sync.storage import counts  # noqa: E402
from identity_sync.storage.db import Database  # noqa: E402
from tests import pg  # noqa: E402
from tests.reliability.servers import Client, Server  # noqa: E402

WRK = REPO.parent / "shared" / "bench" / "wrk"


def _user(i: int) -> dict[str, Any]:
    name = f"load-{i}@load.test"
    return {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name, "active": True,
            "externalId": f"ext-{i}", "name": {"givenName": "L", "familyName": str(i)},
            "emails": [{"type": "work", "value": name, "primary": True}], "title": "Engineer"}


def bulk_load(db: Database, tenant_id: str, users: int, members: int, batch: int = 20_000) -> tuple[list[str], str]:
    """COPY ``users`` users and a group with the first ``members`` of them; returns (ids, group id)."""
    raw = db.engine.raw_connection()
    ids: list[str] = []
    try:
        cur = raw.cursor()
        for start in range(1, users + 1, batch):
            now = now_text()
            with cur.copy("COPY resources (id, tenant_id, resource_type, name_key, doc, version, created_at, "
                          "last_modified) FROM STDIN") as res_copy:
                index_rows = []
                for i in range(start, min(start + batch, users + 1)):
                    doc = normalize(USER, _user(i))
                    rid = new_id()
                    ids.append(rid)
                    res_copy.write_row((rid, tenant_id, "User", canonical_key(doc["userName"]), json.dumps(doc), 1,
                                        now, now))
                    index_rows.extend((rid, tenant_id, path, element, key)
                                      for path, element, key in index_entries(USER, doc))
            with cur.copy("COPY attr_values (resource_id, tenant_id, path, element, key) FROM STDIN") as idx_copy:
                for row in index_rows:
                    idx_copy.write_row(row)
            raw.commit()
            print(f"  loaded {min(start + batch - 1, users):,} users", file=sys.stderr, flush=True)
        group_id, now = new_id(), now_text()
        group_doc = {"displayName": "Everyone"}
        cur.execute("INSERT INTO resources (id, tenant_id, resource_type, name_key, doc, version, created_at, "
                    "last_modified) VALUES (%s, %s, 'Group', %s, %s, 1, %s, %s)",
                    (group_id, tenant_id, canonical_key("Everyone"), json.dumps(group_doc), now, now))
        cur.execute("INSERT INTO attr_values (resource_id, tenant_id, path, element, key) VALUES (%s, %s, %s, 0, %s)",
                    (group_id, tenant_id, "displayname", canonical_key("Everyone")))
        with cur.copy("COPY memberships (group_id, member_id, tenant_id, member_type, created_at) FROM STDIN") as mc:
            for rid in ids[:members]:
                mc.write_row((group_id, rid, tenant_id, "User", now))
        raw.commit()
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
    with db.write() as conn:
        counts.recount(conn)  # the rows went in by COPY, not through storage.resources
    return ids, group_id


def wrk(script: str, base: str, seconds: int, conns: int, env: dict[str, str]) -> dict[str, Any]:
    # One wrk thread, as run.sh does: create.lua's per-thread id is a `local` that thread:set()
    # cannot reach, so with -t2 both threads make the same userNames and half the creates are 409.
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", str(WRK / script), base],
                         capture_output=True, text=True, env={**os.environ, **env}, timeout=seconds + 60).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    lat = {p: re.search(rf"^\s+{p}%\s+(\S+)", out, re.M) for p in ("50", "99")}
    errors = " ".join(re.findall(r"(Non-2xx.*|Socket errors.*)", out))
    return {"rps": float(rps.group(1)) if rps else 0.0, "p50": lat["50"] and lat["50"].group(1),
            "p99": lat["99"] and lat["99"].group(1), "errors": errors}


def one_member_patch_p50(client: Client, group_id: str, user_ids: list[str], n: int = 200) -> dict[str, float]:
    """Sequential one-member add/remove PATCHes on the big group (users outside it)."""
    times = []
    for k in range(n):
        member = user_ids[-1 - (k // 2)]
        op = "add" if k % 2 == 0 else "remove"
        body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
            {"op": op, "path": "members", "value": [{"value": member}]} if op == "add"
            else {"op": "remove", "path": f'members[value eq "{member}"]'}]}
        t = time.perf_counter()
        reply = client.call("PATCH", f"/Groups/{group_id}", body)
        times.append((time.perf_counter() - t) * 1000)
        assert reply.status == 204, (reply.status, reply.body)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 2), "p99_ms": round(times[int(len(times) * 0.99) - 1], 2)}


def worker_rss(pid: int) -> list[int]:
    """VmRSS (MiB) of every child process of the serve parent (the uvicorn workers), or of the
    process itself when it has none (--workers 1 serves in-process)."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    rss = []
    for child in children or [str(pid)]:
        try:
            status = Path(f"/proc/{child}/status").read_text()
        except OSError:
            continue
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        if b"resource_tracker" in cmdline:
            continue
        match = re.search(r"VmRSS:\s+(\d+)", status)
        if match:
            rss.append(round(int(match.group(1)) / 1024))
    return rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--members", type=int, default=100_000)
    ap.add_argument("--seconds", type=int, default=10, help="wrk duration per phase")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--save", action="store_true", help="write benchmarks/results/pg_scale-<time>.json")
    args = ap.parse_args()

    # SIGTERM must unwind through the `finally`s: they stop the serve processes and the cluster.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    server = pg.start_server_with(durable=True, shared_buffers="512MB")
    result: dict[str, Any] = {"users": args.users, "group_members": args.members, "wrk_seconds": args.seconds,
                              "wrk_connections": args.connections, "cpus": os.cpu_count(), "runs": []}
    try:
        server.admin("CREATE DATABASE idsync")
        url = server.url("idsync")
        db = Database(url)
        db.migrate()
        issued = TenantService(db).create_tenant("bench")
        tenant_id = TenantService(db).authenticate(f"Bearer {issued.token}", "bench").tenant_id
        t = time.monotonic()
        ids, group_id = bulk_load(db, tenant_id, args.users, args.members)
        result["load_seconds"] = round(time.monotonic() - t, 1)
        with db.read() as conn:
            result["database_mb"] = round(conn.exec_driver_sql(
                "SELECT pg_database_size(current_database())").scalar_one() / 2**20)
        db.dispose()
        ids_file = Path(server.root) / "ids"
        ids_file.write_text("\n".join(ids[args.members:args.members + 20_000]) + "\n")  # PATCH targets
        for workers in (int(w) for w in args.workers.split(",")):
            serve = Server(url, Path(server.root) / f"serve{workers}", workers=workers).start(timeout=60)
            try:
                base = f"{serve.base}/scim/v2/bench"
                client = Client(serve.base, "bench", issued.token)
                time.sleep(1.0 + workers)  # every worker up and its pool warm
                env = {"WRK_TOKEN": issued.token, "WRK_PREFIX": "load", "WRK_N": str(args.users),
                       "WRK_IDS": str(ids_file)}
                run: dict[str, Any] = {"workers": workers}
                run["lookup"] = wrk("lookup.lua", base, args.seconds, args.connections, env)
                run["patch_user"] = wrk("patch.lua", base, args.seconds, args.connections, env)
                run["create_user"] = wrk("create.lua", base, args.seconds, args.connections, env)
                run["group_one_member_patch"] = one_member_patch_p50(client, group_id, ids)
                run["rss_mb_per_worker"] = worker_rss(serve.process.pid if serve.process else 0)
                result["runs"].append(run)
                print(json.dumps(run), file=sys.stderr, flush=True)
            finally:
                serve.stop()
    finally:
        server.destroy()
    text = json.dumps(result, indent=2)
    print(text)
    if args.save:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        (REPO / "benchmarks" / "results" / f"pg_scale-{stamp}.json").write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
