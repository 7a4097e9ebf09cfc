"""One tenant cannot take the service from the others (issue 11, item 1):

* the work a request may ask for is capped — values of a multi-valued attribute, names in
  ``attributes``/``excludedAttributes`` — with ``400 invalidValue`` past the cap and nothing changed;
* a tenant has at most ``tenant_max_concurrent_requests`` requests in progress per process; past
  that it gets ``429`` with ``Retry-After`` while every other tenant is served;
* a bulk request resolves its ``bulkId`` references in linear time;
* while another tenant is being served, a tenant's admitted requests run their service calls one
  at a time (its lane), whereas a tenant alone on the process runs them all at once.

How another tenant's latency holds up while one tenant sends the worst requests these limits
allow is measured by ``benchmarks/fairness.py``, not here (speed is shown by benchmarks)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from starlette.testclient import TestClient

from identity_sync import nonblocking
from identity_sync.config import Settings
from identity_sync.scim.registry import USER
from identity_sync.service.bulk import BulkRun
from identity_sync.service.resources import ResourceService
from identity_sync.service.tenants import TenantService
from identity_sync.storage import resources as store
from identity_sync.storage.db import Database
from identity_sync.web.app import create_app
from tests.conftest import ScimClient

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GR = "urn:ietf:params:scim:schemas:extension:GlobalRelay:2.0:User"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
SEARCH_REQUEST = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


def _emails(count: int, prefix: str = "e") -> list[dict[str, str]]:
    return [{"value": f"{prefix}{i}@example.com", "type": "work"} for i in range(count)]


def _refused(response: Any, scim_type: str = "invalidValue") -> str:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["scimType"] == scim_type and body["status"] == "400"
    return str(body["detail"])


def _total(scim: ScimClient) -> int:
    return int(scim.get("/Users", params={"count": 0}).json()["totalResults"])


# -- multi-valued attributes -------------------------------------------------------------------------


def test_a_create_with_more_values_than_the_cap_is_refused_and_creates_nothing(
        scim: ScimClient, settings: Settings) -> None:
    cap = settings.attribute_max_values
    assert cap == 1_000  # the documented default (docs/conformance.md, docs/security.md)

    detail = _refused(scim.post("/Users", {"schemas": [USER_SCHEMA], "userName": "many@example.com",
                                           "emails": _emails(cap + 1)}))
    assert "emails" in detail and str(cap) in detail
    _refused(scim.post("/Users", {"schemas": [USER_SCHEMA], "userName": "many@example.com",
                                  GR: {"proxyAddresses": [f"smtp:a{i}@x.com" for i in range(cap + 1)]}}))
    assert _total(scim) == 0

    full = scim.create_user("full@example.com", emails=_emails(cap))
    assert len(full["emails"]) == cap


def test_put_and_patch_may_not_grow_an_attribute_past_the_cap_and_change_nothing(
        scim: ScimClient, settings: Settings) -> None:
    cap = settings.attribute_max_values
    user = scim.create_user("grow@example.com", emails=_emails(cap - 1))
    path = f"/Users/{user['id']}"

    _refused(scim.put(path, {"schemas": [USER_SCHEMA], "userName": "grow@example.com",
                             "emails": _emails(cap + 1)}))
    _refused(scim.patch(path, {"schemas": [PATCH_SCHEMA], "Operations": [
        {"op": "add", "path": "emails", "value": _emails(2, prefix="new")}]}))
    _refused(scim.patch(path, {"schemas": [PATCH_SCHEMA], "Operations": [
        {"op": "add", "path": "emails", "value": _emails(1, prefix="a")},
        {"op": "add", "path": "emails", "value": _emails(1, prefix="b")}]}))  # over the cap only together

    after = scim.get(path).json()
    assert after["emails"] == user["emails"] and after["meta"]["version"] == user["meta"]["version"]
    patched = scim.patch(path, {"schemas": [PATCH_SCHEMA], "Operations": [
        {"op": "add", "path": "emails", "value": _emails(1, prefix="last")}]})
    assert patched.status_code == 200 and len(patched.json()["emails"]) == cap


# -- attributes / excludedAttributes ---------------------------------------------------------------


def test_attribute_lists_longer_than_the_cap_are_refused_on_every_route(scim: ScimClient, settings: Settings) -> None:
    cap = settings.attribute_list_max_names
    assert cap == 200
    user = scim.create_user("listed@example.com", displayName="Listed")
    too_long, longest = ",".join(["userName"] * (cap + 1)), ",".join(["displayName"] * cap)

    for name in ("attributes", "excludedAttributes"):
        assert str(cap) in _refused(scim.get("/Users", params={name: too_long}))
        _refused(scim.get(f"/Users/{user['id']}", params={name: too_long}))
        _refused(scim.get("/Groups", params={name: too_long}))
        _refused(scim.post("/Users/.search", {"schemas": [SEARCH_REQUEST], name: ["userName"] * (cap + 1)}))
        _refused(scim.post("/.search", {"schemas": [SEARCH_REQUEST], name: too_long}))
        _refused(scim.patch(f"/Users/{user['id']}", {"schemas": [PATCH_SCHEMA], "Operations": [
            {"op": "replace", "path": "displayName", "value": "Changed"}]}, params={name: too_long}))

    assert scim.get(f"/Users/{user['id']}").json()["displayName"] == "Listed"  # the refused PATCH changed nothing
    page = scim.get("/Users", params={"attributes": longest})
    assert page.status_code == 200 and page.json()["Resources"][0]["displayName"] == "Listed"
    searched = scim.post("/Users/.search", {"schemas": [SEARCH_REQUEST], "attributes": ["displayName"] * cap})
    assert searched.status_code == 200 and searched.json()["totalResults"] == 1


# -- concurrent requests per tenant ----------------------------------------------------------------


@pytest.fixture
def capped(db: Database, settings: Settings, tenants: TenantService) -> Iterator[tuple[Any, ScimClient, ScimClient]]:
    """The app with at most 2 concurrent requests per tenant (no rate limit), and two tenants."""
    app = create_app(settings.model_copy(update={"tenant_max_concurrent_requests": 2, "rate_limit_per_second": 0}), db)
    acme, globex = tenants.create_tenant("acme"), tenants.create_tenant("globex")
    with TestClient(app, base_url="https://scim.example.test") as http:
        yield app, ScimClient(http, "acme", acme.token), ScimClient(http, "globex", globex.token)


def _wait_until(condition: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_a_tenant_past_its_concurrent_requests_gets_429_while_another_tenant_is_served(
        capped: tuple[Any, ScimClient, ScimClient], db: Database, tenants: TenantService) -> None:
    app, acme, globex = capped
    user = acme.create_user("held@example.com")
    assert globex.get("/Users").status_code == 200  # (its credential's first use is a write: done now)
    tenant_id = tenants.authenticate(f"Bearer {acme.token}", "acme").tenant_id
    rename = {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "path": "displayName", "value": "x"}]}

    pool = ThreadPoolExecutor(max_workers=2)
    try:
        # The user's row is locked (on SQLite: the database's write lock is held), so acme's two
        # PATCHes stay in progress until the lock is released: a held request, not a slow one.
        with db.write() as conn:
            store.get(conn, tenant_id, USER, user["id"], for_update=True)
            held = [pool.submit(acme.patch, f"/Users/{user['id']}", rename) for _ in range(2)]
            _wait_until(lambda: app.state.concurrency.in_progress(tenant_id) == 2)

            refused = acme.get(f"/Users/{user['id']}")
            others = globex.get("/Users")
        statuses = [future.result(timeout=30).status_code for future in held]
    finally:
        pool.shutdown(wait=True)

    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert refused.json()["status"] == "429" and "2 requests in progress" in refused.json()["detail"]
    assert others.status_code == 200
    assert statuses == [200, 200]
    assert app.state.concurrency.in_progress(tenant_id) == 0
    assert acme.get(f"/Users/{user['id']}").status_code == 200


def test_requests_that_fail_give_their_slot_back(capped: tuple[Any, ScimClient, ScimClient],
                                                 tenants: TenantService) -> None:
    app, acme, _ = capped
    tenant_id = tenants.authenticate(f"Bearer {acme.token}", "acme").tenant_id

    statuses = [acme.get("/Users/no-such-id").status_code for _ in range(5)]
    statuses += [acme.post("/Users", {"schemas": [USER_SCHEMA]}).status_code for _ in range(5)]

    assert statuses == [404] * 5 + [400] * 5
    assert app.state.concurrency.in_progress(tenant_id) == 0
    assert acme.get("/Users").status_code == 200


def test_the_default_cap_leaves_most_of_the_worker_pool_to_other_tenants(settings: Settings) -> None:
    import anyio.to_thread

    async def pool_size() -> float:
        return anyio.to_thread.current_default_thread_limiter().total_tokens

    assert 1 <= settings.tenant_max_concurrent_requests <= anyio.run(pool_size) / 4


# -- bulk ----------------------------------------------------------------------------------------------


def test_a_chain_of_bulk_ids_in_reverse_order_attempts_each_operation_at_most_twice(
        scim: ScimClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Operation i names the manager created by operation i+1, so only the last can run first:
    re-trying every deferred operation on every pass made n²/2 attempts."""
    attempts = {"count": 0}
    real_one = BulkRun.one  # bulk execution lives in service/bulk.py

    def counted(self: Any, op: dict[str, Any]) -> Any:
        attempts["count"] += 1
        return real_one(self, op)

    monkeypatch.setattr(BulkRun, "one", counted)
    size = 150
    operations = [{"method": "POST", "path": "/Users", "bulkId": f"u{i}", "data": {
        "schemas": [USER_SCHEMA], "userName": f"chain{i}@example.com",
        **({ENTERPRISE: {"manager": {"value": f"bulkId:u{i + 1}"}}} if i + 1 < size else {})}}
        for i in range(size)]

    answer = scim.post("/Bulk", {"schemas": [BULK_REQUEST], "Operations": operations})

    assert answer.status_code == 200, answer.text
    results = answer.json()["Operations"]
    assert [r["status"] for r in results] == ["201"] * size
    assert [r["bulkId"] for r in results] == [f"u{i}" for i in range(size)]  # answered in request order
    assert attempts["count"] <= 2 * size
    ids = {r["bulkId"]: r["location"].rsplit("/", 1)[1] for r in results}
    first = scim.get(f"/Users/{ids['u0']}").json()
    assert first[ENTERPRISE]["manager"]["value"] == ids["u1"]


def test_bulk_runs_an_operation_as_soon_as_its_reference_exists_in_request_order(scim: ScimClient) -> None:
    operations = [
        {"method": "PATCH", "path": "/Users/bulkId:later", "data": {"schemas": [PATCH_SCHEMA], "Operations": [
            {"op": "replace", "path": "displayName", "value": "patched"}]}},  # waits for op 2
        {"method": "POST", "path": "/Users", "bulkId": "later", "data": {"schemas": [USER_SCHEMA],
                                                                          "userName": "later@example.com"}},
        {"method": "PATCH", "path": "/Users/bulkId:later", "data": {"schemas": [PATCH_SCHEMA], "Operations": [
            {"op": "replace", "path": "displayName", "value": "patched again"}]}},  # same pass as op 2
        {"method": "POST", "path": "/Users", "bulkId": "loop1", "data": {
            "schemas": [USER_SCHEMA], "userName": "loop1@example.com", ENTERPRISE: {"manager": "bulkId:loop2"}}},
        {"method": "POST", "path": "/Users", "bulkId": "loop2", "data": {
            "schemas": [USER_SCHEMA], "userName": "loop2@example.com", ENTERPRISE: {"manager": "bulkId:loop1"}}},
        {"method": "DELETE", "path": "/Users/bulkId:never"},
    ]

    results = scim.post("/Bulk", {"schemas": [BULK_REQUEST], "Operations": operations}).json()["Operations"]

    assert [r["status"] for r in results] == ["200", "201", "200", "409", "409", "409"]
    assert all(r["response"]["scimType"] == "invalidValue" for r in results[3:])
    user = scim.get(results[1]["location"].split("/scim/v2/acme", 1)[1]).json()
    # op 3 ran in the first pass, right after op 2 created the user; op 1 in the second pass
    assert user["displayName"] == "patched" and user["meta"]["version"] == 'W/"3"'


def test_fail_on_errors_counts_unresolvable_references_too(scim: ScimClient) -> None:
    operations = [{"method": "DELETE", "path": f"/Users/bulkId:missing{i}"} for i in range(3)]
    operations.append({"method": "POST", "path": "/Users", "bulkId": "ok",
                       "data": {"schemas": [USER_SCHEMA], "userName": "ok@example.com"}})

    results = scim.post("/Bulk", {"schemas": [BULK_REQUEST], "failOnErrors": 2,
                                  "Operations": operations}).json()["Operations"]

    # the POST ran in the first pass; the deferred DELETEs fail at the end until failOnErrors stops them
    assert [r["status"] for r in results] == ["409", "409", "201"]


# -- CPU budget per tenant ---------------------------------------------------------------------------


def test_a_tenant_that_spent_its_cpu_budget_gets_429_while_another_tenant_is_served(
        db: Database, settings: Settings, tenants: TenantService, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each request's CPU time is charged to its tenant; a PATCH of 1,000 operations costs far more
    than a budget of 100 ms (refilling at 1 ms per second), so its next request waits, while
    another tenant's small requests (a few ms each, even on a slow machine) fit in it."""
    from identity_sync.web.limits import CpuBudget

    # globex's request counts as "recent" for a minute: a loaded machine may take seconds over the PATCH.
    monkeypatch.setattr(CpuBudget, "ALONE_SECONDS", 60.0)
    tiny = settings.model_copy(update={"tenant_cpu_seconds_per_second": 0.001, "tenant_cpu_burst_seconds": 0.1,
                                       "rate_limit_per_second": 0})
    app = create_app(tiny, db)
    acme, globex = tenants.create_tenant("acme"), tenants.create_tenant("globex")
    user = ResourceService(db, settings).create(tenants.authenticate(f"Bearer {acme.token}", "acme"), USER, {
        "schemas": [USER_SCHEMA], "userName": "costly@example.com", "emails": _emails(500)})  # not over HTTP: free
    with TestClient(app, base_url="https://scim.example.test") as http:
        a, g = ScimClient(http, "acme", acme.token), ScimClient(http, "globex", globex.token)
        assert g.get("/Users").status_code == 200  # globex needs the CPU too: the budget applies
        costly = a.patch(f"/Users/{user.id}", {"schemas": [PATCH_SCHEMA], "Operations": [
            {"op": "replace", "path": f'emails[value eq "e{i}@example.com"].display', "value": "x"}
            for i in range(1_000)]})
        # globex is served again right before: on a loaded machine the PATCH can outlast
        # ALONE_SECONDS, after which acme alone on the process would rightly be let through.
        assert g.get("/Users").status_code == 200

        refused = a.get("/Users")
        served = g.get("/Users")

    assert costly.status_code == 200  # a request is never cut short: the budget goes into debt
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 2
    assert "share of the server's CPU" in refused.json()["detail"]
    assert served.status_code == 200


def test_the_cpu_budget_refills_at_its_rate_and_is_kept_per_tenant() -> None:
    from identity_sync.web.limits import CpuBudget, CpuBudgetSpent

    budget = CpuBudget(rate=0.5, burst=2.0)
    now = [100.0]
    budget._monotonic = lambda: now[0]
    budget.check("globex")  # another tenant is being served: the budget applies

    budget.check("acme")
    budget.charge("acme", 3.0)  # 2 s of burst, 1 s of debt
    with pytest.raises(CpuBudgetSpent) as spent:
        budget.check("acme")
    assert spent.value.headers == {"Retry-After": "2"}  # 1 CPU-second of debt at 0.5 per second
    budget.check("globex")  # another tenant's budget is untouched

    now[0] += 1.0
    assert budget.balance("acme") == pytest.approx(-0.5)
    now[0] += 1.0
    budget.check("acme")
    now[0] += 100.0
    assert budget.balance("acme") == 2.0  # never more than the burst
    assert CpuBudget(rate=0, burst=1).balance("x") == 1  # 0: no budget at all
    CpuBudget(rate=0, burst=1).check("x")


def test_a_tenant_alone_on_the_process_is_not_charged_until_another_tenant_needs_the_cpu() -> None:
    from identity_sync.web.limits import CpuBudget, CpuBudgetSpent

    budget = CpuBudget(rate=0.5, burst=2.0)
    now = [100.0]
    budget._monotonic = lambda: now[0]

    for _ in range(10):  # 50 CPU-seconds alone: a single-tenant deployment or a night's sync
        budget.check("acme")
        budget.charge("acme", 5.0)
    assert budget.balance("acme") == 2.0

    budget.check("globex")  # another tenant arrives: acme has its burst, then its rate
    budget.check("acme")
    budget.charge("acme", 3.0)
    with pytest.raises(CpuBudgetSpent):
        budget.check("acme")

    now[0] += CpuBudget.ALONE_SECONDS + 0.1  # globex has not been served since: acme is alone again
    budget.check("acme")
    budget.charge("acme", 100.0)
    budget.check("acme")


def test_a_request_that_started_while_others_were_served_is_charged_however_long_it_ran() -> None:
    """The costliest requests outlast ALONE_SECONDS: judged only when they end, they would find
    the other tenants gone quiet and be free — the very requests the budget is for."""
    from identity_sync.web.limits import CpuBudget, CpuBudgetSpent

    budget = CpuBudget(rate=0.5, burst=1.0)
    now = [100.0]
    budget._monotonic = lambda: now[0]
    budget.check("globex")
    contended = budget.check("acme")  # globex was served just now
    now[0] += CpuBudget.ALONE_SECONDS + 5  # acme's request runs long; nobody else is served meanwhile
    budget.charge("acme", 3.0, contended)
    assert contended and budget.balance("acme") < 0
    budget.check("globex")  # globex comes back: acme is in debt, so it waits
    with pytest.raises(CpuBudgetSpent):
        budget.check("acme")


# -- lanes: one running request per tenant while another tenant is served ----------------------------


class _Gate:
    """Holds every ``GET`` of the resource named ``held_id`` in its service call until opened, and
    records the order in which service calls end: a held request, not a slow one."""

    def __init__(self, app: Any, held_id: str) -> None:
        self.opened, self.reached, self.ended = threading.Event(), threading.Event(), []
        self.held_id = held_id
        resources = app.state.handlers.resources
        real_get = resources.get

        def get(principal: Any, rt: Any, resource_id: str) -> Any:
            if resource_id == held_id:
                # A call that would wait: tried on the event loop (a read), it gives up there
                # and waits in a worker thread, like any read that would wait (nonblocking.py).
                nonblocking.refuse("the gate")
                self.reached.set()
                assert self.opened.wait(timeout=30), "the gate was never opened"
            try:
                return real_get(principal, rt, resource_id)
            finally:
                self.ended.append(resource_id)

        resources.get = get  # this app's service instance only


def _laned_app(db: Database, settings: Settings) -> Any:
    return create_app(settings.model_copy(update={"rate_limit_per_second": 0}), db)


def test_while_another_tenant_is_served_a_tenants_second_request_waits_for_its_first(
        db: Database, settings: Settings, tenants: TenantService) -> None:
    app = _laned_app(db, settings)
    assert settings.tenant_lanes == 1
    acme, globex = tenants.create_tenant("acme"), tenants.create_tenant("globex")
    tenant_id = tenants.authenticate(f"Bearer {acme.token}", "acme").tenant_id
    lanes, concurrency = app.state.handlers.lanes, app.state.concurrency
    pool = ThreadPoolExecutor(max_workers=2)
    with TestClient(app, base_url="https://scim.example.test") as http:
        a, g = ScimClient(http, "acme", acme.token), ScimClient(http, "globex", globex.token)
        held_user, other_user = a.create_user("held@example.com"), a.create_user("other@example.com")
        gate = _Gate(app, held_user["id"])
        try:
            assert g.get("/Users").status_code == 200  # globex is being served: acme shares the process
            first = pool.submit(a.get, f"/Users/{held_user['id']}")
            _wait_until(lambda: lanes.running(tenant_id) == 1)
            second = pool.submit(a.get, f"/Users/{other_user['id']}")
            _wait_until(lambda: concurrency.in_progress(tenant_id) == 2)  # admitted, not refused
            time.sleep(0.3)  # room for a wrong implementation to let it run (asserted below)
            waiting = (lanes.running(tenant_id), second.done())
            served = g.get("/Users/no-such-user")  # globex's own lane is free: served meanwhile
            gate.opened.set()
            statuses = [first.result(timeout=30).status_code, second.result(timeout=30).status_code]
        finally:
            gate.opened.set()
            pool.shutdown(wait=True)

    assert waiting == (1, False)
    assert served.status_code == 404  # answered (not found) while acme's second request waited
    assert statuses == [200, 200]
    assert gate.ended[-2:] == [held_user["id"], other_user["id"]]  # the second ran after the first ended
    assert lanes.running(tenant_id) == 0 and concurrency.in_progress(tenant_id) == 0


def test_a_tenant_alone_on_the_process_runs_its_requests_at_once(
        db: Database, settings: Settings, tenants: TenantService) -> None:
    app = _laned_app(db, settings)
    acme = tenants.create_tenant("acme")
    tenant_id = tenants.authenticate(f"Bearer {acme.token}", "acme").tenant_id
    lanes = app.state.handlers.lanes
    pool = ThreadPoolExecutor(max_workers=1)
    with TestClient(app, base_url="https://scim.example.test") as http:
        a = ScimClient(http, "acme", acme.token)
        held_user, other_user = a.create_user("held@example.com"), a.create_user("other@example.com")
        gate = _Gate(app, held_user["id"])
        try:
            first = pool.submit(a.get, f"/Users/{held_user['id']}")
            assert gate.reached.wait(timeout=30)
            second = a.get(f"/Users/{other_user['id']}")  # answered while the first is still held
            still_held = not first.done()
            gate.opened.set()
            first_status = first.result(timeout=30).status_code
        finally:
            gate.opened.set()
            pool.shutdown(wait=True)

    assert second.status_code == 200 and still_held and first_status == 200
    assert gate.ended == [other_user["id"], held_user["id"]]
    assert lanes.running(tenant_id) == 0  # a tenant alone is not even counted


def test_lanes_let_waiting_requests_through_once_the_other_tenants_go_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    from identity_sync.web.limits import Lanes

    monkeypatch.setattr(Lanes, "ALONE_SECONDS", 0.5)
    lanes, release, entered = Lanes(1), threading.Event(), threading.Event()

    def hold() -> None:
        with lanes.lane("acme"):
            entered.set()
            assert release.wait(timeout=30)

    def second() -> str:
        with lanes.lane("acme"):
            return f"ran with {lanes.running('acme')} running"

    with lanes.lane("globex"):
        pass  # globex was served just now
    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert entered.wait(timeout=30)
        with ThreadPoolExecutor(max_workers=1) as pool:
            # Waits at most ALONE_SECONDS after globex's request, then runs beside the first.
            assert pool.submit(second).result(timeout=30) == "ran with 2 running"
        assert holder.is_alive()  # the first was still running: not a turn taken after it
    finally:
        release.set()
        holder.join(timeout=30)
    assert lanes.running("acme") == 0


def test_a_lane_is_given_back_when_the_call_fails_and_width_0_means_no_lanes() -> None:
    from identity_sync.web.limits import Lanes

    lanes = Lanes(1)
    with lanes.lane("globex"):
        pass
    with pytest.raises(RuntimeError), lanes.lane("acme"):
        raise RuntimeError("the service call failed")
    assert lanes.running("acme") == 0
    with lanes.lane("acme"):  # would wait for ALONE_SECONDS if the failed call had kept its lane
        assert lanes.running("acme") == 1

    unlaned = Lanes(0)
    with unlaned.lane("globex"), unlaned.lane("acme"), unlaned.lane("acme"):
        assert unlaned.running("acme") == 0  # nothing is counted, nothing waits


def test_a_costly_call_pauses_at_its_yield_points_only_while_another_tenants_light_call_runs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A call that reaches :func:`pacing.pause` (a long PATCH or bulk) sleeps there while a call of
    another tenant that has reached no such point runs — never for its own tenant's calls, never
    for other costly calls, never outside a request."""
    from identity_sync import pacing
    from identity_sync.web.limits import Lanes

    monkeypatch.setattr(Lanes, "COSTLY_AFTER", 1)  # costly from the first yield point (see the next test)
    lanes = Lanes(2, pause_seconds=0.0002)
    slept: list[float] = []
    lanes._sleep = slept.append

    pacing.pause()  # outside any lane: no hook, nothing happens
    with lanes.lane("acme"):
        pacing.pause()
        with lanes.lane("acme"):  # acme's own light call: no reason to pause
            pacing.pause()
    assert slept == []

    with lanes.lane("globex"):  # globex's light call is running
        with lanes.lane("acme"):
            pacing.pause()
            pacing.pause()
        assert slept == [0.0002, 0.0002]
        pacing.pause()  # globex reaches a yield point itself: it is costly from now on
        assert slept == [0.0002, 0.0002]  # (acme's call has ended: nothing light of another tenant)
        with lanes.lane("acme"):
            pacing.pause()  # only a costly call of globex runs: costly calls do not pause for each other
        assert slept == [0.0002, 0.0002]

    assert lanes._light_total == 0 and lanes._light == {} and lanes.running("acme") == 0

    unpaced = Lanes(1, pause_seconds=0)
    unpaced._sleep = slept.append
    with unpaced.lane("globex"), unpaced.lane("acme"):
        pacing.pause()
    assert len(slept) == 2


def test_a_call_is_light_until_it_reaches_costly_after_yield_points() -> None:
    """A PATCH of a few operations (Entra's usual) is not costly: it neither pauses nor stops
    others from pausing for it."""
    from identity_sync import pacing
    from identity_sync.web.limits import Lanes

    lanes = Lanes(1, pause_seconds=0.0002)
    slept: list[float] = []
    lanes._sleep = slept.append
    with lanes.lane("acme"):
        pass  # acme was served: globex's call is counted (a tenant alone is not)
    with lanes.lane("globex"):
        with lanes.lane("acme"):
            for _ in range(Lanes.COSTLY_AFTER - 1):
                pacing.pause()
            assert slept == [] and lanes._light == {"globex": 1, "acme": 1}
            pacing.pause()  # the COSTLY_AFTER-th: costly now, and globex's light call runs
            assert slept == [0.0002] and lanes._light == {"globex": 1}
    assert lanes._light_total == 0


def test_a_patch_a_bulk_and_a_page_reach_a_yield_point_per_operation_or_row(
        scim: ScimClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from identity_sync import pacing

    reached: list[None] = []
    install = pacing.install

    def counting(hook: Any) -> Any:
        def counted() -> None:
            reached.append(None)
            hook()
        return install(counted)

    monkeypatch.setattr(pacing, "install", counting)
    user = scim.create_user("paced@example.com")
    reached.clear()
    patched = scim.patch(f"/Users/{user['id']}", {"schemas": [PATCH_SCHEMA], "Operations": [
        {"op": "replace", "path": "displayName", "value": f"n{i}"} for i in range(30)]})
    assert patched.status_code == 200 and len(reached) == 30

    reached.clear()
    answer = scim.post("/Bulk", {"schemas": [BULK_REQUEST], "Operations": [
        {"method": "POST", "path": "/Users", "bulkId": f"b{i}",
         "data": {"schemas": [USER_SCHEMA], "userName": f"bulk{i}@example.com"}} for i in range(12)]})
    assert answer.status_code == 200 and len(reached) == 12

    reached.clear()
    page = scim.get("/Users", params={"count": 10})
    assert page.status_code == 200 and len(page.json()["Resources"]) == 10 and len(reached) == 10  # one per row


def test_a_call_begun_alone_is_not_counted_yet_pauses_for_a_tenant_that_arrives() -> None:
    from identity_sync import pacing
    from identity_sync.web.limits import Lanes

    lanes = Lanes(1, pause_seconds=0.0002)
    slept: list[float] = []
    lanes._sleep = slept.append
    inside, release = threading.Event(), threading.Event()

    def globex() -> None:
        with lanes.lane("globex"):  # acme was served just now: counted, and light
            inside.set()
            assert release.wait(timeout=30)

    with lanes.lane("acme"):  # alone: no lock taken, nothing counted
        assert lanes.running("acme") == 0
        arriving = threading.Thread(target=globex)
        arriving.start()
        try:
            assert inside.wait(timeout=30)
            assert lanes.running("globex") == 1
            for _ in range(Lanes.COSTLY_AFTER):
                pacing.pause()
            assert slept == [0.0002]  # acme's costly call pauses for globex's light one
        finally:
            release.set()
            arriving.join(timeout=30)
    with lanes.lane("acme"):  # globex was served: acme's next call is counted
        assert lanes.running("acme") == 1
    assert lanes._light_total == 0 and lanes.running("globex") == 0
