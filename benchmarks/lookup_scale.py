"""Issue 4's benchmarks: filter lookups stay flat as a tenant grows, and paging is linear.

For each size (default 10,000 and 100,000 users; add 1000000 on the command line):
* p50/p99 of ``userName eq``, ``emails[type eq "work"].value eq`` and one extension attribute
  chosen as a matching property (``…:enterprise:2.0:User:employeeNumber eq``), each on a random
  existing user, through ``ResourceService.query`` (parse, compile, prepared SQL, decode): the
  service's whole read path minus HTTP;
* paging through all users (up to 100,000) with ``count=100``: index-based (startIndex) as one
  process serves it, index-based without remembered positions, and cursor-based (RFC 9865),
  total seconds.

Users are bulk-loaded straight into the tables with the package's own document normalization
and value index (``normalize``, ``index_entries``), so set-up takes minutes, not hours.

Usage: .venv/bin/python benchmarks/lookup_scale.py [SIZES...]   (results in benchmarks/results/)
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from identity_sync.clock import format_timestamp
from identity_sync.config import Settings
from identity_sync.ids import new_id
from identity_sync.scim.index import index_entries
from identity_sync.scim.registry import USER, canonical_key
from identity_sync.scim.resource import normalize
from identity_sync.service.resources import ResourceService
from identity_sync.service.tenants import TenantService
from identity_sync.storage import counts
from identity_sync.storage.db import Database
from identity_sync.storage.listing import ListRequest
from identity_sync.storage.marks import PositionMarks
from identity_sync.storage.tables import attr_values, resources

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
LOOKUPS = 2_000
PAGE_THROUGH = 100_000


def load(db: Database, tenant_id: str, start: int, stop: int) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    batch_size = 5_000
    for first in range(start, stop, batch_size):
        rows, index = [], []
        for i in range(first, min(stop, first + batch_size)):
            doc = normalize(USER, {
                "userName": f"user{i}@contoso.com", "active": True, "displayName": f"User {i}",
                "emails": [{"type": "work", "value": f"user{i}@contoso.com", "primary": True},
                           {"type": "home", "value": f"u{i}@home.example"}],
                ENTERPRISE: {"employeeNumber": f"E{i:07d}", "department": f"D{i % 50}"},
            })
            rid, now = new_id(), format_timestamp(base + timedelta(milliseconds=i))
            rows.append({"id": rid, "tenant_id": tenant_id, "resource_type": "User", "doc": doc, "version": 1,
                         "name_key": canonical_key(doc["userName"]), "created_at": now, "last_modified": now})
            index += [{"resource_id": rid, "tenant_id": tenant_id, "path": p, "element": e, "key": k}
                      for p, e, k in index_entries(USER, doc)]
        with db.write() as conn:
            conn.execute(resources.insert(), rows)
            conn.execute(attr_values.insert(), index)


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 3),
            "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 3)}


def main(sizes: list[int]) -> None:
    results: dict[str, object] = {"lookups_per_measure": LOOKUPS, "sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        db = Database(url)
        db.migrate()
        settings = Settings(database_url=url, data_dir=Path(tmp))
        tenants = TenantService(db)
        issued = tenants.create_tenant("bench")
        principal = tenants.authenticate(f"Bearer {issued.token}", "bench")
        service = ResourceService(db, settings)
        loaded = 0
        for size in sorted(sizes):
            started = time.perf_counter()
            load(db, principal.tenant_id, loaded, size)
            loaded = size
            with db.write() as conn:
                counts.recount(conn)  # the rows went in straight, not through storage.resources
                conn.exec_driver_sql("ANALYZE")
            row: dict[str, object] = {"load_s": round(time.perf_counter() - started, 1)}
            rng = random.Random(size)
            for name, template in [
                ("userName_eq", 'userName eq "USER{i}@contoso.com"'),
                ("emails_work_value_eq", 'emails[type eq "work"].value eq "user{i}@contoso.com"'),
                ("extension_eq", f'{ENTERPRISE}:employeeNumber eq "E{{i:07d}}"'),
            ]:
                samples = []
                for _ in range(LOOKUPS):
                    text = template.format(i=rng.randrange(size))
                    t0 = time.perf_counter()
                    total, page = service.query(principal, USER, text, 1, 100)
                    samples.append(time.perf_counter() - t0)
                    assert total == 1 and len(page) == 1, text
                row[name] = percentiles(samples)
            if size <= PAGE_THROUGH:
                row["paging"] = paging(service, principal, size)
            results["sizes"][str(size)] = row  # type: ignore[index]
            print(size, json.dumps(row), flush=True)
        db.dispose()
    out = Path(__file__).parent / "results" / f"lookup_scale-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(results, indent=2))
    print("written", out)


def paging(service: ResourceService, principal: object, size: int) -> dict[str, float]:
    """Seconds to page through all ``size`` users, 100 at a time: by ``startIndex`` as one process
    serves it (each page seeks from where the previous one ended, storage/marks.py), by
    ``startIndex`` with no remembered position (every page skips its offset: a request on a
    worker that served no earlier page), and by cursor. All three must list the same users in
    the same order."""
    walks: dict[str, list[str]] = {}
    seconds: dict[str, float] = {}
    for name, forget in (("index_s", False), ("index_unmarked_s", True)):
        ids: list[str] = []
        t0 = time.perf_counter()
        for start in range(1, size + 1, 100):
            if forget:
                service.db.marks = PositionMarks()
            page = service.search(principal, USER, None, ListRequest(start_index=start, count=100))  # type: ignore[arg-type]
            assert page.total == size
            ids += [r.id for r in page.resources]
        seconds[name] = round(time.perf_counter() - t0, 2)
        walks[name] = ids
    t0, ids, cursor = time.perf_counter(), [], ""
    while True:
        page = service.search(principal, USER, None, ListRequest(count=100, cursor=cursor))  # type: ignore[arg-type]
        ids += [r.id for r in page.resources]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    seconds["cursor_s"] = round(time.perf_counter() - t0, 2)
    assert len(ids) == size and walks["index_s"] == ids and walks["index_unmarked_s"] == ids
    return seconds


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [10_000, 100_000])
