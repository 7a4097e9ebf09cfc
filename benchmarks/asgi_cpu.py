"""CPU time per request through the app itself, without a server or a network: for comparing two
versions of the code on a machine whose speed moves under you.

wrk's requests per second on this shared two-core machine moved by a fifth between identical runs.
Here the app is called as an ASGI application by 8 concurrent callers in the same process (the
service's thread pool, group commit and logging all work as when served), on a fresh SQLite file with
``--users`` users, and each phase runs ``--rounds`` times: the *smallest* CPU time per request of the
rounds moved by 2–3 % between identical runs. uvicorn's HTTP parsing is left out, so it shows our
code's cost, not the stack's.

Phases, with the bodies of ``../shared/bench/wrk``: lookup (``filter=userName eq …``), PATCH (3 Entra
replace operations) and create (Entra's full user, enterprise extension included).

usage: .venv/bin/python benchmarks/asgi_cpu.py [--users 3000] [--rounds 6] [--tree DIR]

``--tree`` runs another checkout's code (a ``git worktree`` of an older commit) with this venv: run
the two alternately and compare. Prints one JSON line: per phase the smallest and the median CPU
µs per request, and the median requests per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CONCURRENCY = 8
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
PER_ROUND = {"lookup": 1200, "patch": 400, "create": 400}


def entra_user(name: str, number: int) -> bytes:
    """The body of ../shared/bench/wrk/create.lua."""
    return json.dumps({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE], "userName": name,
        "externalId": name, "active": True, "displayName": "Load User", "title": "Engineer",
        "name": {"givenName": "Load", "familyName": "User", "formatted": "Load User"},
        "emails": [{"type": "work", "value": name, "primary": True}],
        "phoneNumbers": [{"type": "work", "value": "+1 555 0100"}, {"type": "mobile", "value": "+1 555 0101"}],
        "addresses": [{"type": "work", "streetAddress": "1 Main St", "locality": "Redmond", "region": "WA",
                       "postalCode": "98052", "country": "US", "formatted": "1 Main St, Redmond"}],
        ENTERPRISE: {"employeeNumber": str(number), "department": "Sales", "costCenter": "42"},
    }).encode()


class Caller:
    """Requests straight into the ASGI app, as uvicorn would make them."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.headers = [(b"authorization", f"Bearer {token}".encode()), (b"host", b"127.0.0.1:8000"),
                        (b"content-type", b"application/scim+json")]

    async def __call__(self, method: str, path: str, query: bytes = b"", body: bytes = b"") -> tuple[int, bytes]:
        delivered = False
        answer: dict[str, Any] = {"body": b""}

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if delivered:  # the client stays connected until the answer is sent
                await asyncio.sleep(3600)
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body":
                answer["body"] += message.get("body", b"")

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query,
                 "root_path": "", "headers": [*self.headers, (b"content-length", str(len(body)).encode())],
                 "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}
        await self.app(scope, receive, send)
        return answer["status"], answer["body"]


async def measure(app: Any, token: str, users: int, rounds: int) -> dict[str, Any]:
    call = Caller(app, token)
    base = "/scim/v2/bench/Users"
    ids: list[str] = []
    gate = asyncio.Semaphore(CONCURRENCY)

    async def preload(i: int) -> None:
        async with gate:
            status, body = await call("POST", base, body=entra_user(f"load-{i}@load.test", i))
            if status != 201:
                raise SystemExit(f"preload: {status} {body[:200]!r}")
            ids.append(json.loads(body)["id"])

    await asyncio.gather(*(preload(i) for i in range(users)))
    serial = [10**6]

    def next_number() -> int:
        serial[0] += 1
        return serial[0]

    def lookup() -> Any:
        wanted = f"load-{random.randrange(users)}%40load.test"
        return call("GET", base, query=f"filter=userName+eq+%22{wanted}%22".encode())

    def patch() -> Any:
        n = next_number()
        body = json.dumps({"schemas": [PATCH_OP], "Operations": [
            {"op": "Replace", "path": "title", "value": f"T{n}"},
            {"op": "Replace", "path": "name.familyName", "value": f"F{n}"},
            {"op": "Replace", "path": "active", "value": "True"}]}).encode()
        return call("PATCH", f"{base}/{random.choice(ids)}", body=body)

    def create() -> Any:
        n = next_number()
        return call("POST", base, body=entra_user(f"wrk-{n}@load.test", n))

    phases = {"lookup": lookup, "patch": patch, "create": create}
    cpu: dict[str, list[float]] = {name: [] for name in phases}
    rate: dict[str, list[float]] = {name: [] for name in phases}
    for _ in range(rounds):
        for name, request in phases.items():
            statuses: list[int] = []

            async def one_caller(request: Any = request, statuses: list[int] = statuses,
                                 count: int = PER_ROUND[name] // CONCURRENCY) -> None:
                for _ in range(count):
                    statuses.append((await request())[0])

            cpu_start, wall_start = time.process_time(), time.perf_counter()
            await asyncio.gather(*(one_caller() for _ in range(CONCURRENCY)))
            cpu_used, wall = time.process_time() - cpu_start, time.perf_counter() - wall_start
            failed = [status for status in statuses if status >= 300]
            if failed:
                raise SystemExit(f"{name}: {len(failed)} answers were not 2xx (first: {failed[0]})")
            cpu[name].append(cpu_used / len(statuses) * 1e6)
            rate[name].append(len(statuses) / wall)
    return {name: {"cpu_us_min": round(min(cpu[name])), "cpu_us_median": round(statistics.median(cpu[name])),
                   "rps_median": round(statistics.median(rate[name]))} for name in phases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--tree", type=Path, default=REPO, help="the checkout whose code runs (default: this one)")
    args = parser.parse_args()
    sys.path.insert(0, str(args.tree.resolve()))
    work = Path(tempfile.mkdtemp(prefix="idsync-asgi-cpu-"))
    os.environ.update(IDSYNC_DATA_DIR=str(work), IDSYNC_DATABASE_URL=f"sqlite:///{work / 'bench.db'}",
                      IDSYNC_RATE_LIMIT_PER_SECOND="0", IDSYNC_COSTLY_REQUESTS_PROCESS="0")
    from identity_sync import logs
    from identity_sync.config import Settings
    from identity_sync.service.tenants import TenantService
    from identity_sync.storage.db import Database
    from identity_sync.web.app import create_app

    settings = Settings()
    logs.configure("INFO")  # the service's logging, written where nobody reads it
    sink = open(os.devnull, "w")  # open for the whole run
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sink)
    db = Database(settings.database_url)
    db.migrate()
    token = TenantService(db).create_tenant("bench").token
    app = create_app(settings, db)

    async def run() -> dict[str, Any]:
        async with app.router.lifespan_context(app):
            return await measure(app, token, args.users, args.rounds)

    figures = asyncio.run(run())
    module = sys.modules["identity_sync"].__file__ or ""
    print(json.dumps({"tree": str(Path(module).resolve().parent.parent), **figures}))


if __name__ == "__main__":
    main()
