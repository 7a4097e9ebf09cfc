"""Issue 4's paging benchmark end to end: ``GET /Users?startIndex=…&count=100`` through HTTP, page
after page, against ``identity-sync serve`` with 1 and with 2 workers, next to the cursor walk
(RFC 9865) of the same users. With several workers, consecutive pages land on different
processes, and each remembers only the pages it served (storage/marks.py): this shows what that
costs. Every walk must list the same users in the same order, and every page's ``totalResults``
must be the number of users.

Users are bulk-loaded with ``lookup_scale.load`` (the package's own normalization and value
index) before the server starts.

Usage: .venv/bin/python benchmarks/paging_http.py [SIZES...]   (default 10000 100000;
results in benchmarks/results/)
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from _harness import Server
from lookup_scale import load

from identity_sync.storage import counts
from identity_sync.storage.db import Database
from identity_sync.storage.tenants import get_tenant

COUNT = 100


def walk_index(client: httpx.Client, size: int) -> tuple[float, list[str]]:
    ids: list[str] = []
    t0 = time.perf_counter()
    for start in range(1, size + 1, COUNT):
        body = client.get("/Users", params={"startIndex": start, "count": COUNT, "attributes": "id"}).json()
        assert body["totalResults"] == size, body
        ids += [r["id"] for r in body["Resources"]]
    return time.perf_counter() - t0, ids


def walk_cursor(client: httpx.Client) -> tuple[float, list[str]]:
    ids: list[str] = []
    cursor = ""
    t0 = time.perf_counter()
    while True:
        body = client.get("/Users", params={"cursor": cursor, "count": COUNT, "attributes": "id"}).json()
        ids += [r["id"] for r in body["Resources"]]
        cursor = body.get("nextCursor")
        if not cursor:
            return time.perf_counter() - t0, ids


def run(size: int, workers: int) -> dict[str, float]:
    def prepare(server: Server) -> None:
        db = Database(server.database_url)
        with db.read() as conn:
            tenant_id = get_tenant(conn, server.tenant_name)["id"]
        load(db, tenant_id, 0, size)
        with db.write() as conn:
            counts.recount(conn)  # the rows went in straight, not through storage.resources
            conn.exec_driver_sql("ANALYZE")
        db.dispose()

    with Server(prepare=prepare, serve_args=("--workers", str(workers)), log_level="WARNING") as server, \
            httpx.Client(base_url=server.base_url, timeout=60,
                         headers={"Authorization": f"Bearer {server.token}"}) as client:
        index_s, by_index = walk_index(client, size)
        again_s, again = walk_index(client, size)  # every worker now holds marks of the first walk
        cursor_s, by_cursor = walk_cursor(client)
        assert len(by_cursor) == size and by_index == by_cursor == again
        return {"index_s": round(index_s, 2), "index_again_s": round(again_s, 2), "cursor_s": round(cursor_s, 2)}


def main(sizes: list[int]) -> None:
    results: dict[str, dict[str, object]] = {}
    for size in sizes:
        for workers in (1, 2):
            row = run(size, workers)
            results.setdefault(str(size), {})[f"workers_{workers}"] = row
            print(size, workers, json.dumps(row), flush=True)
    out = Path(__file__).parent / "results" / f"paging_http-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps({"count": COUNT, "sizes": results}, indent=2))
    print("written", out)


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [10_000, 100_000])
