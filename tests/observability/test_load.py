"""``/metrics`` under load: a few hundred concurrent requests (httpx2, async, 50 connections) at a
real ``serve --workers 2``; the scraped ``idsync_http_requests_total`` equals what was sent, by
tenant, route, method and status. Then the request history (observability/history.py): each
worker flushed its counts when stopped, and the table holds their sum."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path

import httpx2
import sqlalchemy as sa

from identity_sync.service.tenants import TenantService
from identity_sync.storage.db import Database
from identity_sync.storage.tables import request_counts
from tests.observability.scrape import samples
from tests.reliability.servers import Server

REQUESTS = "idsync_http_requests_total"
SENT = 360
CONNECTIONS = 50


async def _load(base: str, tokens: dict[str, str]) -> list[tuple[str, str, int]]:
    """SENT requests, 50 at a time: (tenant label expected, route template, status) of each."""
    plan = []
    for i in range(SENT):
        kind = i % 6
        if kind in (0, 1):
            plan.append(("acme", tokens["acme"], "/Users", "/scim/v2/{tenant}/Users"))
        elif kind == 2:
            plan.append(("acme", tokens["acme"], "/Users/no-such-id", "/scim/v2/{tenant}/Users/{id}"))
        elif kind in (3, 4):
            plan.append(("globex", tokens["globex"], "/Groups", "/scim/v2/{tenant}/Groups"))
        else:
            plan.append(("-", "idsync_" + "W" * 43, "/Users", "/scim/v2/{tenant}/Users"))
    limits = httpx2.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    async with httpx2.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        async def one(tenant: str, token: str, path: str, route: str) -> tuple[str, str, int]:
            name = "globex" if tenant == "globex" else "acme"
            response = await client.get(f"/scim/v2/{name}{path}", headers={"Authorization": f"Bearer {token}"})
            return tenant, route, response.status_code
        return await asyncio.gather(*(one(*step) for step in plan))


def test_scraped_counters_equal_the_requests_sent_under_load(db_url: str, tmp_path: Path) -> None:
    db = Database(db_url)
    tokens = {name: TenantService(db).create_tenant(name).token for name in ("acme", "globex")}
    server = Server(db_url, tmp_path / "serve", workers=2).start()
    try:
        replies = asyncio.run(_load(server.base, tokens))
        scraped = httpx2.get(server.base + "/metrics", timeout=30).text
    finally:
        server.stop()

    sent = collections.Counter(replies)
    assert sum(sent.values()) == SENT
    assert set(sent) == {("acme", "/scim/v2/{tenant}/Users", 200), ("acme", "/scim/v2/{tenant}/Users/{id}", 404),
                         ("globex", "/scim/v2/{tenant}/Groups", 200), ("-", "/scim/v2/{tenant}/Users", 401)}
    counted = {(dict(labels)["tenant"], dict(labels)["route"], int(dict(labels)["status"])): value
               for labels, value in samples(scraped, REQUESTS).items() if dict(labels)["route"] != "/metrics"}
    assert counted == dict(sent)

    # Both workers stopped: each flushed what it had counted (status classes, per tenant).
    with db.read() as conn:
        rows = conn.execute(sa.select(request_counts.c.tenant, request_counts.c.status_class,
                                      sa.func.sum(request_counts.c.count))
                            .group_by(request_counts.c.tenant, request_counts.c.status_class)).all()
    db.dispose()
    history = {(tenant, status_class): int(count) for tenant, status_class, count in rows}
    assert history == {("acme", "2xx"): 120, ("acme", "4xx"): 60, ("globex", "2xx"): 120,
                       ("-", "4xx"): 60, ("-", "2xx"): 1}  # the scrape of /metrics: a request of no tenant
