"""``/metrics``: the counters match the requests sent — by tenant, route template, method and
status —, every request is in the latency histogram, auth failures are counted by reason and
rate-limit rejections by limit, engine metrics come from the database, and the endpoint can be
locked with a token or turned off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from identity_sync.config import Settings
from identity_sync.engine.tables import engine_cycles, engine_jobs
from identity_sync.service.clients import ClientService
from identity_sync.service.tenants import TenantService
from identity_sync.storage.db import Database
from identity_sync.storage.tables import credentials
from identity_sync.web.app import create_app
from tests.conftest import ScimClient
from tests.observability.scrape import samples, total, value

REQUESTS = "idsync_http_requests_total"
USERS, USER = "/scim/v2/{tenant}/Users", "/scim/v2/{tenant}/Users/{id}"


def scrape(http: TestClient, **headers: str) -> str:
    response = http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def test_counters_match_the_requests_sent(scim: ScimClient, other_scim: ScimClient) -> None:
    sent: dict[tuple[str, str, str, str], int] = {}

    def send(client: ScimClient, method: str, path: str, key: tuple[str, str, str, str], **kwargs: Any) -> None:
        response = client.request(method, path, **kwargs)
        assert response.status_code == int(key[3]), response.text
        sent[key] = sent.get(key, 0) + 1

    for i in range(5):
        send(scim, "POST", "/Users", ("acme", USERS, "POST", "201"),
             json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": f"u{i}@example.test"})
    for _ in range(7):
        send(scim, "GET", "/Users", ("acme", USERS, "GET", "200"))
    for i in range(3):
        send(scim, "GET", f"/Users/no-such-id-{i}", ("acme", USER, "GET", "404"))
    for _ in range(2):
        send(other_scim, "GET", "/Users", ("globex", USERS, "GET", "200"))
    for i in range(4):  # not authenticated: no tenant label, whatever the URL names
        send(scim, "GET", f"/Users/x{i}", ("-", USER, "GET", "401"), headers={"Authorization": "Bearer wrong"})
    unmatched = scim.http.get("/no/such/endpoint")
    assert unmatched.status_code == 404
    sent[("-", "unmatched", "GET", "404")] = 1

    text = scrape(scim.http)

    counted = {tuple(dict(labels)[k] for k in ("tenant", "route", "method", "status")): v
               for labels, v in samples(text, REQUESTS).items()}
    assert counted == sent  # exactly: nothing missing, nothing extra (this scrape is counted after it)
    # Every request is in the histogram, under its route.
    assert total(text, "idsync_http_request_duration_seconds_count") == sum(sent.values())
    assert value(text, "idsync_http_request_duration_seconds_count", route=USERS, method="GET") == 9
    assert value(text, "idsync_http_request_duration_seconds_bucket", route=USERS, method="GET", le="+Inf") == 9

    again = scrape(scim.http)
    assert value(again, REQUESTS, tenant="-", route="/metrics", method="GET", status="200") == 1


def test_unknown_tenants_make_no_new_series(scim: ScimClient) -> None:
    for i in range(20):
        assert scim.http.get(f"/scim/v2/random{i}/Users").status_code == 401
    text = scrape(scim.http)
    assert value(text, REQUESTS, tenant="-", route=USERS, method="GET", status="401") == 20
    assert not any("random" in v for labels in samples(text, REQUESTS) for _, v in labels)


def test_auth_failures_are_counted_by_reason(scim: ScimClient, other_scim: ScimClient, tenants: TenantService,
                                             settings: Settings) -> None:
    revoked = tenants.create_token("acme")
    tenants.revoke_token("acme", revoked.credential_id)
    expired = tenants.create_token("acme", expires_in_days=1)
    with tenants.db.write() as conn:
        conn.execute(credentials.update().where(credentials.c.id == expired.credential_id)
                     .values(expires_at="2000-01-01T00:00:00.000000Z"))
    disabled = tenants.create_tenant("initech")
    tenants.set_status("initech", "disabled")
    reader = ClientService(tenants.db, settings).create_client("acme", frozenset({"scim:read"}))
    access = scim.http.post(scim.base + "/oauth/token", data={
        "grant_type": "client_credentials", "client_id": reader.client_id,
        "client_secret": reader.client_secret}).json()["access_token"]
    # A token is looked for in the URL's tenant only: another tenant's static token is unknown
    # here; an access token names its tenant, so one of another tenant is told apart.
    globex = ClientService(tenants.db, settings).create_client("globex", frozenset({"scim:read"}))
    globex_access = other_scim.http.post(other_scim.base + "/oauth/token", data={
        "grant_type": "client_credentials", "client_id": globex.client_id,
        "client_secret": globex.client_secret}).json()["access_token"]
    cases = {
        "missing": {},
        "malformed": {"Authorization": f"Basic {scim.token}"},
        "unknown": {"Authorization": "Bearer idsync_" + "A" * 43},
        "unknown_too": {"Authorization": f"Bearer {other_scim.token}"},
        "revoked": {"Authorization": f"Bearer {revoked.token}"},
        "expired": {"Authorization": f"Bearer {expired.token}"},
        "wrong_tenant": {"Authorization": f"Bearer {globex_access}"},
        "bad_signature": {"Authorization": f"Bearer {access[:-6]}AAAAAA"},
    }
    for headers in cases.values():
        assert scim.http.get(scim.base + "/Users", headers=headers).status_code == 401
    assert scim.http.get("/scim/v2/initech/Users",
                         headers={"Authorization": f"Bearer {disabled.token}"}).status_code == 401
    # Authenticated, but a read-only credential may not write: 403.
    forbidden = scim.http.post(scim.base + "/Users", json={"userName": "x"},
                               headers={"Authorization": f"Bearer {access}"})
    assert forbidden.status_code == 403
    refused = scim.http.post(scim.base + "/oauth/token", data={
        "grant_type": "client_credentials", "client_id": reader.client_id, "client_secret": "wrong"})
    assert refused.status_code == 401

    text = scrape(scim.http)

    expected = {**dict.fromkeys(cases, 1), "unknown": 2, "tenant_disabled": 1, "insufficient_scope": 1,
                "invalid_client": 1}
    del expected["unknown_too"]
    assert {dict(labels)["reason"]: v for labels, v in samples(text, "idsync_auth_failures_total").items()} == expected
    # The 403 was authenticated: it counts under its tenant; the 401s under none.
    assert value(text, REQUESTS, tenant="acme", route=USERS, method="POST", status="403") == 1
    assert value(text, REQUESTS, tenant="-", route=USERS, method="GET", status="401") == len(cases) + 1  # + initech


def test_rate_limit_rejections_are_counted(settings: Settings, db: Database, scim: ScimClient) -> None:
    limited = settings.model_copy(update={"rate_limit_per_second": 0.001, "rate_limit_burst": 2})
    with TestClient(create_app(limited, db), base_url="https://scim.example.test") as http:
        client = ScimClient(http, "acme", scim.token)
        statuses = [client.get("/Users").status_code for _ in range(5)]
        assert statuses == [200, 200, 429, 429, 429]
        text = scrape(http)
    assert samples(text, "idsync_rate_limit_rejections_total") == {(("limit", "rate"), ("tenant", "acme")): 3}
    assert value(text, REQUESTS, tenant="acme", route=USERS, method="GET", status="429") == 3


def _job(conn: Any, job_id: str, name: str, state: str) -> None:
    now = "2026-01-01T00:00:00.000000Z"
    conn.execute(sa.insert(engine_jobs).values(id=job_id, name=name, source="json:x", target_url="https://t",
                                               credentials="x", settings={}, mapping={}, state=state,
                                               created_at=now, updated_at=now))


def _cycle(conn: Any, job_id: str, n: int, kind: str, state: str, counts: dict[str, int], ended: bool = True) -> None:
    conn.execute(sa.insert(engine_cycles).values(
        id=f"{job_id}-{n}", job_id=job_id, kind=kind, state=state, started_at="2026-01-01T00:00:00.000000Z",
        ended_at="2026-01-01T00:01:00.000000Z" if ended else None, counts=counts))


def test_engine_metrics_are_read_from_the_database(http: TestClient, db: Database) -> None:
    """The engine runs in other processes: its cycles, exports and quarantined jobs are whatever
    the database says at scrape time."""
    with db.write() as conn:
        _job(conn, "j1", "hr-to-app", "active")
        _job(conn, "j2", "ad-to-app", "quarantined")
        _job(conn, "j3", "ldap-to-app", "quarantined")
        _cycle(conn, "j1", 1, "initial", "completed", {"created": 10, "updated": 0, "deleted": 0, "disabled": 0})
        _cycle(conn, "j1", 2, "incremental", "completed", {"created": 1, "updated": 4, "disabled": 2, "deleted": 1})
        _cycle(conn, "j1", 3, "incremental", "failed", {"updated": 3})
        _cycle(conn, "j1", 4, "incremental", "running", {"created": 99}, ended=False)  # not finished: not counted
        _cycle(conn, "j2", 1, "initial", "failed", {})

    text = scrape(http)

    assert value(text, "idsync_engine_quarantined_jobs") == 2
    assert value(text, "idsync_engine_jobs", state="active") == 1
    assert value(text, "idsync_engine_cycles_total", job="hr-to-app", kind="incremental", state="completed") == 1
    assert value(text, "idsync_engine_cycles_total", job="hr-to-app", kind="incremental", state="failed") == 1
    assert value(text, "idsync_engine_cycles_total", job="ad-to-app", kind="initial", state="failed") == 1
    assert total(text, "idsync_engine_cycles_total") == 4
    exported = {dict(labels)["action"]: v for labels, v in samples(text, "idsync_engine_exported_objects_total").items()
                if dict(labels)["job"] == "hr-to-app"}
    assert exported == {"created": 11, "updated": 7, "disabled": 2, "deleted": 1}
    assert value(text, "idsync_engine_metrics_up") == 1


def test_a_metrics_token_locks_the_endpoint(settings: Settings, db: Database, tmp_path: Path) -> None:
    token_file = tmp_path / "metrics-token"
    token_file.write_text("s3cret-scraper\n")
    locked = settings.model_copy(update={"metrics_token_file": token_file})
    with TestClient(create_app(locked, db)) as http:
        assert http.get("/metrics").status_code == 401
        assert http.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
        text = scrape(http, Authorization="Bearer s3cret-scraper")
        assert value(text, "idsync_auth_failures_total", reason="metrics_token") == 2
        token_file.write_text("")  # an empty token opens nothing
        assert http.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401


def test_metrics_can_be_turned_off(settings: Settings, db: Database) -> None:
    with TestClient(create_app(settings.model_copy(update={"metrics_enabled": False}), db)) as http:
        assert http.get("/metrics").status_code == 404


@pytest.mark.parametrize("count", [2])
def test_each_app_counts_its_own_requests(settings: Settings, db: Database, count: int) -> None:
    """One registry per app: two apps in one process (tests, embedding) do not add up."""
    apps = [create_app(settings, db) for _ in range(count)]
    with TestClient(apps[0]) as first, TestClient(apps[1]) as second:
        first.get("/healthz")
        first.get("/healthz")
        second.get("/healthz")
        assert value(scrape(first), REQUESTS, tenant="-", route="/healthz", method="GET", status="200") == 2
        assert value(scrape(second), REQUESTS, tenant="-", route="/healthz", method="GET", status="200") == 1


def test_the_dashboard_and_the_docs_name_only_metrics_that_exist(http: TestClient) -> None:
    import json
    import re

    docs = Path(__file__).parents[2] / "docs"
    exposed = set(re.findall(r"^# TYPE (\w+) (\w+)", scrape(http), re.MULTILINE))
    # (prometheus-client adds a `_created` gauge beside each counter and histogram: the time it began.)
    names = {name for name, _ in exposed if not name.endswith("_created")}
    dashboard = json.loads((docs / "grafana-dashboard.json").read_text())
    queried = {m for p in dashboard["panels"] for t in p["targets"] for m in re.findall(r"idsync_\w+", t["expr"])}
    assert queried, "the dashboard queries something"
    assert {re.sub(r"_(bucket|count|sum)$", "", m) for m in queried} <= names | {"idsync_http_request_duration_seconds"}
    documented = set(re.findall(r"^\| `(idsync_\w+)`", (docs / "observability.md").read_text(), re.MULTILINE))
    assert documented == names
