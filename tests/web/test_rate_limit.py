"""Per-tenant rate limits (429 with an integer Retry-After; a noisy tenant does not slow the
others) and resource limits (none of them can produce a 5xx)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from identity_sync.auth.ratelimit import MemoryBuckets, create_limiter, retry_after
from identity_sync.config import Settings
from identity_sync.service.tenants import TenantService
from identity_sync.storage.db import Database
from identity_sync.web.app import create_app
from tests.conftest import ScimClient

PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    clock = [1000.0]
    buckets = MemoryBuckets(rate=25, burst=50)
    buckets._monotonic = lambda: clock[0]
    assert all(buckets.take("a") == 0 for _ in range(50))
    wait = buckets.take("a")
    assert 0 < wait <= 1 / 25 + 1e-9 and retry_after(wait) == 1
    assert buckets.take("b") == 0  # another key has its own bucket
    clock[0] += 1.0  # one second later: 25 more
    assert sum(buckets.take("a") == 0 for _ in range(40)) == 25


def test_the_default_is_comfortably_above_25_per_second_sustained_with_bursts() -> None:
    settings = Settings()
    assert settings.rate_limit_per_second >= 4 * 25 and settings.rate_limit_burst >= 100
    assert create_limiter(0, 1).take("x") == 0  # 0 turns the limit off
    assert isinstance(create_limiter(100, 300, workers=4), MemoryBuckets)
    assert create_limiter(100, 300, workers=4).rate == 25  # type: ignore[attr-defined]


@pytest.fixture
def limited(db: Database, settings: Settings) -> Iterator[tuple[ScimClient, ScimClient]]:
    yield from _limited(db, settings, rate=5.0)


@pytest.fixture
def slowly_refilled(db: Database, settings: Settings) -> Iterator[tuple[ScimClient, ScimClient]]:
    # One request every 2 s once the burst is spent: a loaded machine (PostgreSQL buckets, two
    # test workers) may take well over 200 ms between two requests, which at 5/s refills one.
    yield from _limited(db, settings, rate=0.5)


def _limited(db: Database, settings: Settings, rate: float) -> Iterator[tuple[ScimClient, ScimClient]]:
    strict = settings.model_copy(update={"rate_limit_per_second": rate, "rate_limit_burst": 10})
    tenants = TenantService(db)
    noisy, quiet = tenants.create_tenant("noisy"), tenants.create_tenant("quiet")
    with TestClient(create_app(strict, db), base_url="https://scim.example.test") as http:
        yield ScimClient(http, "noisy", noisy.token), ScimClient(http, "quiet", quiet.token)


def test_a_refused_create_changes_nothing_and_its_retry_after_the_wait_creates_once(
        slowly_refilled: tuple[ScimClient, ScimClient]) -> None:
    """Case 51: Entra and Okta wait `Retry-After`, then send the same request again. The 429'd
    POST must have created nothing, and the retry exactly one user."""
    noisy, _ = slowly_refilled
    while noisy.get("/Users?count=0").status_code != 429:
        pass  # spend the burst
    body = {"schemas": [USER_SCHEMA], "userName": "retried@x.com"}
    refused = noisy.post("/Users", body)
    assert refused.status_code == 429
    time.sleep(int(refused.headers["Retry-After"]))
    retried = noisy.post("/Users", body)
    assert retried.status_code == 201, retried.text
    while (listing := noisy.get('/Users?filter=userName eq "retried@x.com"')).status_code == 429:
        time.sleep(int(listing.headers["Retry-After"]))  # the retry took the one token refilled
    assert [u["id"] for u in listing.json()["Resources"]] == [retried.json()["id"]]


def test_over_the_limit_is_429_with_an_integer_retry_after(limited: tuple[ScimClient, ScimClient]) -> None:
    noisy, quiet = limited
    statuses = [noisy.get("/Users").status_code for _ in range(30)]
    assert statuses[:10] == [200] * 10 and 429 in statuses
    refused = noisy.get("/Users")
    assert refused.status_code == 429
    assert refused.headers["retry-after"].isdigit() and int(refused.headers["retry-after"]) >= 1
    body = refused.json()
    assert body["status"] == "429" and "Resources" not in body
    # The other tenant is not affected at all.
    assert [quiet.get("/Users").status_code for _ in range(10)] == [200] * 10
    # Unauthenticated requests do not spend a tenant's budget (no anonymous denial of service):
    # they are 401 and the quiet tenant's next request is still served.
    for _ in range(20):
        assert quiet.http.get("/scim/v2/quiet/Users", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_a_noisy_tenant_does_not_slow_the_others(limited: tuple[ScimClient, ScimClient]) -> None:
    noisy, quiet = limited
    stop = threading.Event()
    noisy_statuses: list[int] = []

    def flood() -> None:
        while not stop.is_set():
            noisy_statuses.append(noisy.get("/Users").status_code)

    quiet_statuses = []
    flooders = [threading.Thread(target=flood) for _ in range(3)]
    for thread in flooders:
        thread.start()
    try:
        for _ in range(8):  # within the quiet tenant's own burst of 10
            quiet_statuses.append(quiet.get("/Users").status_code)
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in flooders:
            thread.join()
    assert quiet_statuses == [200] * 8
    assert noisy_statuses.count(429) > noisy_statuses.count(200) > 0
    assert set(noisy_statuses) <= {200, 429}


def test_the_token_endpoint_is_rate_limited_per_tenant(db: Database, settings: Settings) -> None:
    strict = settings.model_copy(update={"token_rate_limit_per_second": 1.0, "token_rate_limit_burst": 3})
    TenantService(db).create_tenant("acme")
    with TestClient(create_app(strict, db)) as http:
        answers = [http.post("/scim/v2/acme/oauth/token", data={"grant_type": "client_credentials",
                                                                "client_id": "x", "client_secret": "guess"})
                   for _ in range(5)]
    assert [a.status_code for a in answers] == [401, 401, 401, 429, 429]
    assert answers[-1].headers["retry-after"].isdigit() and answers[-1].json()["error"] == "slow_down"


# -- resource limits -------------------------------------------------------------------------------


def _nested(levels: int) -> Any:
    value: Any = []
    for _ in range(levels):
        value = [value]
    return value


def test_no_resource_limit_produces_a_5xx(scim: ScimClient, settings: Settings) -> None:
    user = scim.create_user("alice@example.com")
    group = scim.post("/Groups", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                                  "displayName": "g"}).json()
    big = b"{" + b" " * (settings.max_body_bytes + 1) + b"}"
    ops = [{"op": "replace", "path": "displayName", "value": "x"}] * (settings.patch_max_operations + 1)
    deep_filter = "(" * (settings.filter_max_depth + 1) + 'userName eq "a"' + ")" * (settings.filter_max_depth + 1)
    many_terms = " or ".join(['userName eq "a"'] * (settings.filter_max_terms + 1))

    def raw(content: bytes) -> Any:
        return scim.http.post(scim.base + "/Users", content=content, headers={
            "Content-Type": "application/scim+json", "Authorization": f"Bearer {scim.token}"})

    cases = {
        "body over max_body_bytes": (raw(big), 413),
        "JSON deeper than json_max_depth": (scim.post("/Users", {"schemas": [USER_SCHEMA], "userName": "d",
                                                                 "x": _nested(settings.json_max_depth + 5)}), 400),
        "JSON nested 10,000 deep": (raw(b"[" * 10_000 + b"]" * 10_000), 400),
        "PATCH over patch_max_operations": (scim.patch(f"/Users/{user['id']}", {
            "schemas": [PATCH_SCHEMA], "Operations": ops}), 400),
        "group PATCH over patch_max_operations": (scim.patch(f"/Groups/{group['id']}", {
            "schemas": [PATCH_SCHEMA], "Operations": ops}), 400),
        "filter over filter_max_length": (scim.get("/Users", params={
            "filter": 'userName eq "' + "a" * settings.filter_max_length + '"'}), 400),
        "filter over filter_max_depth": (scim.get("/Users", params={"filter": deep_filter}), 400),
        "filter over filter_max_terms": (scim.get("/Users", params={"filter": many_terms}), 400),
        "huge count": (scim.get("/Users", params={"count": str(10**12)}), 200),
        "huge startIndex": (scim.get("/Users", params={"startIndex": str(10**18)}), 200),
        "negative count": (scim.get("/Users", params={"count": "-5"}), 200),
        "oversized Authorization header": (scim.http.get(scim.base + "/Users", headers={
            "Authorization": "Bearer " + "a.b." + "c" * 100_000}), 401),
        "oversized token request": (scim.http.post(scim.base + "/oauth/token", content=b"a=" + b"b" * 100_000,
                                                   headers={"Content-Type": "application/x-www-form-urlencoded"}),
                                    413),
        "token request with many fields": (scim.http.post(scim.base + "/oauth/token", content=b"&".join(
            b"f%d=1" % i for i in range(500)), headers={"Content-Type": "application/x-www-form-urlencoded"}), 400),
        "JWT with a huge header": (scim.http.get(scim.base + "/Users", headers={
            "Authorization": "Bearer " + "eyJ" + "A" * 3000 + ".e30.sig"}), 401),
    }
    for name, (response, expected) in cases.items():
        assert response.status_code < 500, (name, response.text[:200])
        assert response.status_code == expected, (name, response.status_code, response.text[:200])
        if response.status_code >= 400:
            json.loads(response.text)  # a JSON error body, never HTML


@pytest.mark.parametrize("how", ["GET", "POST /.search", "POST /Users/.search"])
def test_oversized_filters_are_invalid_filter_wherever_they_are_sent(scim: ScimClient, settings: Settings,
                                                                     how: str) -> None:
    """The filter caps hold on every way of sending a filter, with the precise scimType (the
    parser counts before it builds anything: a 1,000-deep filter is refused like a 33-deep one)."""
    depth = settings.filter_max_depth + 1
    filters = {
        "nested 1,000 deep": "(" * 1000 + 'userName eq "a"' + ")" * 1000,
        "over the depth cap": "(" * depth + 'userName eq "a"' + ")" * depth,
        "over the term cap": " or ".join(['userName eq "a"'] * (settings.filter_max_terms + 1)),
        "over the length cap": 'userName eq "' + "a" * settings.filter_max_length + '"',
        "unbalanced": "(" * 5000,
    }
    for name, text in filters.items():
        if how == "GET":
            response = scim.get("/Users", params={"filter": text})
        else:
            path = "/.search" if how == "POST /.search" else "/Users/.search"
            response = scim.post(path, {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                                        "filter": text})
        assert response.status_code == 400, (name, response.text[:200])
        assert response.json()["scimType"] == "invalidFilter", (name, response.text[:200])
