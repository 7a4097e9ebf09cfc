"""Issue 11, item 6: a lookup in one of 10,000 tenants of 100 users costs what it costs in a
database holding a single tenant of 100 users (goal: within 1.2×).

Two SQLite databases, each loaded straight into the tables with the package's own document
normalization and value index (as ``lookup_scale.py`` does):
* ``single``: one tenant of ``--users`` users;
* ``many``: ``--tenants`` tenants of ``--users`` users each (10,000 × 100 = 1,000,000 users).

Measured in-process, the service's whole read path minus HTTP: authenticate the tenant's bearer
token (``Authenticator``, with its credential cache), then ``userName eq`` on a random existing
user through ``ResourceService.query`` (parse, compile, prepared SQL, decode). In ``many`` each
lookup picks a random tenant, so the credential cache and SQLite's page cache see 10,000
tenants' worth of rows. Before measuring, every tenant's token is presented once, as on a server
that has run a while (a credential's first use writes its ``last_used_at``: a write transaction,
five times the cost of the lookup, once a minute per credential at most). The two databases are
measured in alternating rounds, so that the shared machine's load drifts over both alike.

Usage: .venv/bin/python benchmarks/tenant_scale.py [--tenants 10000] [--users 100] [--lookups 4000]
[--keep DIR] (results in benchmarks/results/tenant_scale-<UTC>.json). ``--keep DIR`` keeps the two
databases and their tokens in DIR and reuses them on the next run with the same DIR (loading the
million users takes minutes; measuring a change to the read path does not need it again).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from identity_sync.auth import tokens
from identity_sync.auth.authenticator import Authenticator
from identity_sync.clock import format_timestamp
from identity_sync.config import Settings
from identity_sync.ids import new_id
from identity_sync.scim.filter import _parse_filter_cached
from identity_sync.scim.index import index_entries
from identity_sync.scim.registry import USER, canonical_key
from identity_sync.scim.resource import normalize
from identity_sync.service.resources import ResourceService
from identity_sync.storage import counts
from identity_sync.storage.db import Database
from identity_sync.storage.tables import attr_values, credentials, resources, tenants

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def load(db: Database, n_tenants: int, n_users: int) -> list[tuple[str, str]]:
    """``n_tenants`` tenants of ``n_users`` users; returns (tenant name, token) per tenant."""
    base = datetime(2026, 1, 1, tzinfo=UTC)
    now = format_timestamp(base)
    issued: list[tuple[str, str]] = []
    per_batch = max(1, 20_000 // n_users)
    for first in range(0, n_tenants, per_batch):
        tenant_rows, credential_rows, rows, index = [], [], [], []
        for t in range(first, min(n_tenants, first + per_batch)):
            tenant_id, name, token = new_id(), f"t{t:05d}", tokens.new_token()
            issued.append((name, token))
            tenant_rows.append({"id": tenant_id, "name": name, "status": "active", "created_at": now})
            credential_rows.append({"id": tokens.new_credential_id(), "tenant_id": tenant_id, "kind": "bearer",
                                    "secret_hash": tokens.digest(token), "created_at": now})
            for i in range(n_users):
                doc = normalize(USER, {
                    "userName": f"user{i}@t{t}.example", "active": True, "displayName": f"User {i}",
                    "emails": [{"type": "work", "value": f"user{i}@t{t}.example", "primary": True}],
                    ENTERPRISE: {"employeeNumber": f"E{i:07d}", "department": f"D{i % 50}"},
                })
                rid, at = new_id(), format_timestamp(base + timedelta(milliseconds=i))
                rows.append({"id": rid, "tenant_id": tenant_id, "resource_type": "User", "doc": doc, "version": 1,
                             "name_key": canonical_key(doc["userName"]), "created_at": at, "last_modified": at})
                index += [{"resource_id": rid, "tenant_id": tenant_id, "path": p, "element": e, "key": k}
                          for p, e, k in index_entries(USER, doc)]
        with db.write() as conn:
            conn.execute(tenants.insert(), tenant_rows)
            conn.execute(credentials.insert(), credential_rows)
            conn.execute(resources.insert(), rows)
            conn.execute(attr_values.insert(), index)
    with db.write() as conn:
        counts.recount(conn)  # the rows went in straight, not through storage.resources
    return issued


def lookups(db: Database, settings: Settings, auth: Authenticator, issued: list[tuple[str, str]], n_users: int,
            count: int, rng: random.Random, parse_cache: bool = False) -> list[float]:
    """``count`` lookups, each in a random tenant: authenticate its token, then ``userName eq``.

    Unless ``parse_cache``, each lookup parses its filter: the parsed-filter cache (the last
    1,024 filter texts, scim/filter.py) is emptied before each. One tenant of 100 users has only
    100 possible filters, always cached; a million users' are never: compared as they are, the
    two would differ by the parse (~20 µs), not by the database. Entra's lookups are of names
    not looked up moments before, so a parse each is the realistic case for both."""
    service = ResourceService(db, settings)
    samples = []
    for _ in range(count):
        t = rng.randrange(len(issued))
        name, token = issued[t]
        text = f'userName eq "user{rng.randrange(n_users)}@{name[0]}{int(name[1:])}.example"'
        if not parse_cache:
            _parse_filter_cached.cache_clear()
        t0 = time.perf_counter()
        principal = auth.authenticate(f"Bearer {token}", name)
        total, page = service.query(principal, USER, text, 1, 100)
        samples.append(time.perf_counter() - t0)
        assert total == 1 and len(page) == 1, text
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--lookups", type=int, default=4_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the databases in this directory")
    parser.add_argument("--parse-cache", action="store_true",
                        help="let repeated filter texts hit the parse cache (favours the single tenant)")
    args = parser.parse_args()
    result: dict[str, object] = {"tenants": args.tenants, "users_per_tenant": args.users,
                                 "parse_cache": args.parse_cache, "loadavg_start": os.getloadavg()}
    with contextlib.ExitStack() as stack:
        tmp = args.keep or stack.enter_context(tempfile.TemporaryDirectory(prefix="idsync-bench-"))
        Path(tmp).mkdir(parents=True, exist_ok=True)
        dbs, issued = {}, {}
        for kind, n_tenants in (("single", 1), ("many", args.tenants)):
            url = f"sqlite:///{Path(tmp) / kind}.db"
            kept = Path(tmp) / f"{kind}-{n_tenants}x{args.users}.tokens.json"
            db = Database(url)
            db.migrate()
            started = time.perf_counter()
            if kept.exists():
                issued[kind] = [tuple(pair) for pair in json.loads(kept.read_text())]
            else:
                issued[kind] = load(db, n_tenants, args.users)
                if args.keep:
                    kept.write_text(json.dumps(issued[kind]))
            with db.read() as conn:
                users = conn.execute(sa.select(sa.func.count()).select_from(resources)).scalar_one()
            result[f"{kind}_load_s"] = round(time.perf_counter() - started, 1)
            result[f"{kind}_users"] = users
            print(kind, "loaded", users, "users in", result[f"{kind}_load_s"], "s", flush=True)
            dbs[kind] = (db, Settings(database_url=url, data_dir=Path(tmp)))
        samples: dict[str, list[float]] = {"single": [], "many": []}
        rng = random.Random(11)
        auths = {kind: Authenticator(*dbs[kind]) for kind in dbs}
        for kind in ("single", "many"):
            # Warm-up, as on a server that has run a while: every tenant's token seen once (its
            # first use writes last_used_at, once a minute at most), some lookups.
            for name, token in issued[kind]:
                auths[kind].authenticate(f"Bearer {token}", name)
            lookups(*dbs[kind], auths[kind], issued[kind], args.users, 200, rng)
        for _ in range(args.rounds):
            for kind in ("single", "many"):
                samples[kind] += lookups(*dbs[kind], auths[kind], issued[kind], args.users,
                                         args.lookups // args.rounds, rng, args.parse_cache)
        for kind, values in samples.items():
            ordered = sorted(values)
            result[kind] = {"p50_ms": round(statistics.median(ordered) * 1000, 3),
                            "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 3), "n": len(ordered)}
        single, many = result["single"], result["many"]
        result["ratio_p50"] = round(many["p50_ms"] / single["p50_ms"], 2)  # type: ignore[index]
        result["ratio_p99"] = round(many["p99_ms"] / single["p99_ms"], 2)  # type: ignore[index]
        result["loadavg_end"] = os.getloadavg()
        for db, _ in dbs.values():
            db.dispose()
    print(json.dumps(result, indent=2))
    out = Path(__file__).parent / "results" / f"tenant_scale-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(result, indent=2))
    print("written", out)


if __name__ == "__main__":
    main()
