"""``serve --workers 2``: ``/metrics`` — answered by whichever worker — counts the requests of
both (prometheus-client's multiprocess mode), and every worker logs JSON lines, uvicorn's too."""

from __future__ import annotations

import json
import socket
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from identity_sync.service.tenants import TenantService
from identity_sync.storage.db import Database
from tests.observability.scrape import total, value
from tests.reliability.servers import Client, Server

REQUESTS = "idsync_http_requests_total"
USERS = "/scim/v2/{tenant}/Users"


def _scrape(base: str) -> str:
    with urllib.request.urlopen(base + "/metrics", timeout=30) as response:
        assert response.status == 200
        return response.read().decode()


def test_metrics_add_up_across_workers(db_url: str, tmp_path: Path) -> None:
    db = Database(db_url)
    try:
        token = TenantService(db).create_tenant("acme").token
    finally:
        db.dispose()
    server = Server(db_url, tmp_path / "serve", workers=2, env={"IDSYNC_LOG_LEVEL": "INFO"}).start()
    try:
        good, bad = Client(server.base, "acme", token), Client(server.base, "acme", "idsync_" + "W" * 43)
        # New connections, 8 at a time: the kernel hands them to both workers. Scraped meanwhile too.
        during = []
        with ThreadPoolExecutor(8) as pool:
            load = pool.map(lambda i: (good if i % 4 else bad).call("GET", "/Users"), range(40))
            for _ in range(3):
                during.append(total(_scrape(server.base), REQUESTS, {"route": USERS}))
            replies = list(load)
        assert sorted(r.status for r in replies) == [200] * 30 + [401] * 10
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:  # not HTTP at all
            raw.sendall(b"\x16\x03\x01 not http\r\n\r\n")
            raw.recv(1024)

        first = _scrape(server.base)
        second = _scrape(server.base)
    finally:
        server.stop()

    assert during == sorted(during) and all(seen <= 40 for seen in during)  # only grow, never past what was sent
    assert value(first, REQUESTS, tenant="acme", route=USERS, method="GET", status="200") == 30
    assert value(first, REQUESTS, tenant="-", route=USERS, method="GET", status="401") == 10
    # Each scrape is counted once answered: the 3 during the load are in the first one after it.
    assert total(first, REQUESTS) == 40 + 3
    assert total(first, "idsync_http_request_duration_seconds_count") == 40 + 3
    assert value(first, "idsync_auth_failures_total", reason="unknown") == 10
    assert total(second, REQUESTS) == 40 + 4
    assert value(second, REQUESTS, tenant="-", route="/metrics", method="GET", status="200") == 4

    output = (tmp_path / "serve" / f"serve-{server.port}.log").read_text()
    lines = [line for line in output.splitlines() if line.startswith("{")]  # not serve's own messages
    parsed = [json.loads(line) for line in lines]
    access = [p for p in parsed if p.get("event") == "http.request"]
    assert len(access) == 40 + 5 and all(p.get("request_id") for p in access)
    assert {r.headers["x-request-id"] for r in replies} <= {p["request_id"] for p in access}
    assert any(p.get("logger") == "uvicorn.error" and "Invalid HTTP request" in p["event"] for p in parsed)
