"""One tenant budget across processes: two real ``serve`` processes on one PostgreSQL, with a
small per-tenant limit, grant together what one bucket holds — not twice — and refuse the rest
with 429 and an integer Retry-After, while another tenant is not affected."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from identity_sync.service.tenants import TenantService
from identity_sync.storage.db import Database
from tests.reliability.conftest import running_servers
from tests.reliability.servers import Client, Reply, Server

RATE, BURST = 1, 10


@pytest.fixture(scope="module")
def limited_servers(db_kind: str, service_url: str, tmp_path_factory: pytest.TempPathFactory,
                    token: str) -> Iterator[list[Server]]:
    if db_kind != "postgresql":
        pytest.skip("on SQLite the limiter is per process (one node only; docs/deployment.md)")
    env = {"IDSYNC_RATE_LIMIT_PER_SECOND": str(RATE), "IDSYNC_RATE_LIMIT_BURST": str(BURST)}
    with running_servers(2, service_url, tmp_path_factory.mktemp("limited"), env) as servers:
        yield servers


def test_two_servers_share_one_tenant_budget(limited_servers: list[Server], service_db: Database) -> None:
    tenants = TenantService(service_db)
    noisy, quiet = tenants.create_tenant("noisy"), tenants.create_tenant("quiet")
    noisy_clients = [Client(s.base, "noisy", noisy.token) for s in limited_servers]
    quiet_clients = [Client(s.base, "quiet", quiet.token) for s in limited_servers]

    def get(i: int) -> tuple[int, Reply]:
        return i % 2, noisy_clients[i % 2].call("GET", "/Users?count=1")

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(get, range(60)))
    elapsed = time.monotonic() - started

    statuses = [reply.status for _, reply in replies]
    assert set(statuses) <= {200, 429}, statuses
    ok = statuses.count(200)
    # One bucket: the burst plus what the rate refilled meanwhile; per-process buckets would
    # have granted 2 x BURST.
    assert BURST <= ok <= BURST + math.ceil(RATE * elapsed), (ok, elapsed)
    assert all(any(s == i and r.ok for s, r in replies) for i in (0, 1))  # both servers served
    for _, reply in replies:
        if reply.status == 429:
            assert reply.headers["retry-after"].isdigit() and int(reply.headers["retry-after"]) >= 1
            assert reply.body["status"] == "429" and "Resources" not in reply.body

    # The other tenant, on either server, has its whole budget.
    assert [quiet_clients[i % 2].call("GET", "/Users?count=1").status for i in range(BURST)] == [200] * BURST

    # Retry-After is honest: after waiting that long, the tenant is served again (on either server).
    refused = next(r for r in (noisy_clients[0].call("GET", "/Users?count=1") for _ in range(BURST)) if not r.ok)
    assert refused.status == 429
    time.sleep(int(refused.headers["retry-after"]))
    assert noisy_clients[1].call("GET", "/Users?count=1").status == 200
