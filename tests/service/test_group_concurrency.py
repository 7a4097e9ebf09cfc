"""No lost membership updates: concurrent PATCHes to one group, through the service layer (one
thread per request, as the web app runs them) and through the real HTTP app (concurrent ASGI
requests), always end in exactly the expected member set. Each scenario is repeated, because a
lost update shows only in some interleavings. Also: ``meta.version`` counts effective membership
changes exactly."""

from __future__ import annotations

import asyncio
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2
import pytest

from identity_sync.auth.tokens import Principal
from identity_sync.clock import now_text
from identity_sync.config import Settings
from identity_sync.ids import new_id
from identity_sync.scim.registry import GROUP, USER, canonical_key
from identity_sync.scim.resource import normalize
from identity_sync.service.resources import ResourceService
from identity_sync.storage import resources as store

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
REPEATS = 20
SCIM_JSON = "application/scim+json"


def add_op(*member_ids: str) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": [
        {"op": "Add", "path": "members", "value": [{"$ref": None, "value": m} for m in member_ids]}]}


def remove_op(member_id: str, dialect: str) -> dict[str, Any]:
    """A single-member removal in Entra's default dialect or in the aadOptscim062020 one."""
    operation = ({"op": "Remove", "path": "members", "value": [{"value": member_id}]} if dialect == "legacy"
                 else {"op": "remove", "path": f'members[value eq "{member_id}"]'})
    return {"schemas": [PATCH], "Operations": [operation]}


def make_users(service: ResourceService, acme: Principal, count: int) -> list[str]:
    """``count`` users, stored in one transaction (setup only: keeps 80 repetitions fast)."""
    with service.db.write() as conn:
        now = now_text()
        return [store.insert(conn, acme.tenant_id, USER, new_id(), canonical_key(name),
                             store.prepared(USER, normalize(USER, {"userName": name})), now).id
                for name in (f"member{i:03d}@example.com" for i in range(count))]


def members(service: ResourceService, acme: Principal, group_id: str) -> list[str]:
    stored = service.get(acme, GROUP, group_id)
    loaded = service.related(acme, GROUP, [stored], with_members=True, with_groups=False)[0]
    return [member["value"] for member in (loaded.related or {}).get("members", [])]


def mixed_plan(users: list[str], seed: int) -> tuple[list[str], list[tuple[str, str]], set[str]]:
    """Start with 20 members; concurrently remove 10 of them and add 20 others (each removal
    alternating dialects). Returns (initial members, shuffled requests, expected final set)."""
    rng = random.Random(seed)
    initial, outside = users[:20], users[20:]
    removed = rng.sample(initial, 10)
    added = rng.sample(outside, 20)
    requests = [("remove", m) for m in removed] + [("add", m) for m in added]
    rng.shuffle(requests)
    return initial, requests, (set(initial) - set(removed)) | set(added)


# -- through the service layer, with threads ---------------------------------------------------


@pytest.mark.parametrize("run", range(REPEATS))
def test_fifty_concurrent_single_member_adds_keep_all_fifty(service: ResourceService, acme: Principal,
                                                            run: int) -> None:
    """Issue #3: 50 concurrent single-member adds to one group leave all 50 members, and the
    version rose by exactly 50 (each add was an effective change)."""
    users = make_users(service, acme, 50)
    group = service.create(acme, GROUP, {"displayName": f"Crowd {run}"})

    def add(member_id: str) -> None:
        service.patch(acme, GROUP, group.id, add_op(member_id), None)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(add, users))
    assert sorted(members(service, acme, group.id)) == sorted(users)
    assert service.get(acme, GROUP, group.id).version == group.version + 50


@pytest.mark.parametrize("run", range(REPEATS))
def test_concurrent_adds_and_removes_end_in_exactly_the_expected_set(service: ResourceService,
                                                                     acme: Principal, run: int) -> None:
    """Issue #3: from a known set, concurrent removals of some and additions of others (both
    removal dialects) end in exactly (initial − removed) ∪ added, every time."""
    users = make_users(service, acme, 45)
    initial, requests, expected = mixed_plan(users, run)
    group = service.create(acme, GROUP, {"displayName": f"Churn {run}", "members": [
        {"value": m} for m in initial]})

    def apply(request: tuple[int, tuple[str, str]]) -> None:
        index, (kind, member_id) = request
        body = add_op(member_id) if kind == "add" else remove_op(member_id, ("legacy", "flagged")[index % 2])
        service.patch(acme, GROUP, group.id, body, None)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(apply, enumerate(requests)))
    assert set(members(service, acme, group.id)) == expected
    assert len(members(service, acme, group.id)) == len(expected)
    assert service.get(acme, GROUP, group.id).version == group.version + len(requests)


# -- through the HTTP app, with concurrent requests --------------------------------------------


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """These tests fire 50 concurrent requests at one tenant on purpose: the per-tenant caps on
    concurrent requests and CPU (429 past them, tests/web/test_fairness.py) are not what they test."""
    return settings.model_copy(update={"tenant_max_concurrent_requests": 0, "tenant_cpu_seconds_per_second": 0})



async def _concurrently(app: Any, issued: Any, bodies: list[dict[str, Any]], group_id: str) -> list[int]:
    transport = httpx2.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {issued.token}", "Content-Type": SCIM_JSON}
    async with httpx2.AsyncClient(transport=transport, base_url="https://scim.example.test") as client:
        async def send(body: dict[str, Any]) -> int:
            response = await client.patch(f"/scim/v2/acme/Groups/{group_id}", json=body, headers=headers)
            return response.status_code

        return list(await asyncio.gather(*(send(body) for body in bodies)))


@pytest.mark.parametrize("run", range(REPEATS))
def test_fifty_concurrent_http_adds_keep_all_fifty(app: Any, issued: Any, service: ResourceService,
                                                   acme: Principal, run: int) -> None:
    """Issue #3 through HTTP: 50 concurrent `PATCH /Groups/{id}` single-member adds → 50 × 204,
    all 50 members present."""
    users = make_users(service, acme, 50)
    group = service.create(acme, GROUP, {"displayName": f"Web crowd {run}"})
    statuses = asyncio.run(_concurrently(app, issued, [add_op(m) for m in users], group.id))
    assert statuses == [204] * 50
    assert sorted(members(service, acme, group.id)) == sorted(users)
    assert service.get(acme, GROUP, group.id).version == group.version + 50


@pytest.mark.parametrize("run", range(REPEATS))
def test_concurrent_http_adds_and_removes_end_in_exactly_the_expected_set(app: Any, issued: Any,
                                                                          service: ResourceService,
                                                                          acme: Principal, run: int) -> None:
    """Issue #3 through HTTP: the add/remove mix, both removal dialects, exact final set."""
    users = make_users(service, acme, 45)
    initial, requests, expected = mixed_plan(users, 1000 + run)
    group = service.create(acme, GROUP, {"displayName": f"Web churn {run}"})
    service.patch(acme, GROUP, group.id, add_op(*initial), None)
    bodies = [add_op(m) if kind == "add" else remove_op(m, ("legacy", "flagged")[i % 2])
              for i, (kind, m) in enumerate(requests)]
    statuses = asyncio.run(_concurrently(app, issued, bodies, group.id))
    assert statuses == [204] * len(bodies)
    final = members(service, acme, group.id)
    assert set(final) == expected and len(final) == len(expected)


# -- versions ----------------------------------------------------------------------------------


def test_version_counts_effective_membership_patches_and_not_idempotent_ones(service: ResourceService,
                                                                            acme: Principal) -> None:
    """After N effective membership PATCHes `meta.version` increased by exactly N (a PATCH adding
    several members is one change); an idempotent re-add, a removal of a non-member and an empty
    removal list do not bump it, nor does `lastModified` move."""
    users = make_users(service, acme, 6)
    group = service.create(acme, GROUP, {"displayName": "Counted"})
    effective = [
        add_op(users[0]),
        add_op(users[1], users[2]),
        add_op(users[2], users[3]),  # overlaps: still an effective change (users[3] is new)
        remove_op(users[0], "legacy"),
        remove_op(users[1], "flagged"),
        {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "members",
                                             "value": [{"value": users[4]}, {"value": users[5]}]}]},
        {"schemas": [PATCH], "Operations": [{"op": "remove", "path": "members"}]},
    ]
    version = group.version
    for n, body in enumerate(effective, start=1):
        stored = service.patch(acme, GROUP, group.id, body, None)
        assert stored.version == group.version + n
        version = stored.version
    service.patch(acme, GROUP, group.id, add_op(users[0]), None)
    settled = service.get(acme, GROUP, group.id)
    assert settled.version == version + 1
    for no_op in (add_op(users[0]), add_op(users[0], users[0]), remove_op(users[1], "legacy"),
                  remove_op(users[1], "flagged"),
                  {"schemas": [PATCH], "Operations": [{"op": "Remove", "path": "members", "value": []}]},
                  {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "members",
                                                       "value": [{"value": users[0]}]}]}):
        returned = service.patch(acme, GROUP, group.id, no_op, None)
        assert returned.version == settled.version, no_op
        current = service.get(acme, GROUP, group.id)
        assert (current.version, current.last_modified) == (settled.version, settled.last_modified), no_op


def test_concurrent_idempotent_re_adds_bump_the_version_once(service: ResourceService, acme: Principal) -> None:
    """20 concurrent adds of the same member: one effective change, one new version."""
    [user] = make_users(service, acme, 1)
    group = service.create(acme, GROUP, {"displayName": "Same member"})
    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(lambda _: service.patch(acme, GROUP, group.id, add_op(user), None), range(20)))
    assert members(service, acme, group.id) == [user]
    assert service.get(acme, GROUP, group.id).version == group.version + 1
