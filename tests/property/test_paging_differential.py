"""Index paging (``startIndex``/``count``) of unfiltered lists seeks from remembered positions
(storage/marks.py) instead of skipping; it must give exactly what an OFFSET over the live list
gives. Hypothesis runs random sequences of creates, deletes, single pages and whole walks, served
alternately by two "workers" (two Database objects on one database, each with its own marks), and
compares every page and every ``totalResults`` with a model: the live users in creation order."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from identity_sync.config import Settings
from identity_sync.scim.registry import USER
from identity_sync.service.resources import ResourceService
from identity_sync.service.tenants import TenantService
from identity_sync.storage import listing
from identity_sync.storage.db import Database
from identity_sync.storage.listing import ListRequest

_tenant_numbers = itertools.count()

step = st.one_of(
    st.tuples(st.just("create"), st.integers(1, 6)),
    st.tuples(st.just("delete"), st.integers(0, 10_000)),  # which live user, modulo their number
    st.tuples(st.just("page"), st.integers(1, 40), st.integers(0, 7), st.integers(0, 1)),
    st.tuples(st.just("walk"), st.integers(1, 7), st.integers(0, 1)),
)


@pytest.fixture
def workers(db: Database, settings: Settings) -> Any:
    other = Database(db.url)
    yield [ResourceService(db, settings), ResourceService(other, settings)]
    other.dispose()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=24))
def test_index_pages_equal_the_live_list_sliced(workers: list[ResourceService], tenants: TenantService,
                                                 steps: list[tuple[Any, ...]]) -> None:
    name = f"paging{next(_tenant_numbers)}"
    principal = tenants.authenticate(f"Bearer {tenants.create_tenant(name).token}", name)
    model: list[tuple[str, str]] = []  # (created_at, id) of the live users, in list order
    made = itertools.count()

    def page(worker: int, start: int, count: int) -> None:
        got = workers[worker].search(principal, USER, None, ListRequest(start_index=start, count=count))
        assert got.total == len(model)
        assert [r.id for r in got.resources] == [i for _, i in model[start - 1:start - 1 + count]]

    for kind, *args in steps:
        if kind == "create":
            for _ in range(args[0]):
                user = workers[0].create(principal, USER, {"userName": f"u{next(made)}@x.com"})
                model.append((user.created_at, user.id))
            model.sort()
        elif kind == "delete" and model:
            _, victim = model.pop(args[0] % len(model))
            workers[0].delete(principal, USER, victim, None)
        elif kind == "page":
            page(args[2], args[0], args[1])
        elif kind == "walk":  # the pages alternate between the workers, starting with args[1]
            for number, start in enumerate(range(1, len(model) + 2, args[0])):
                page((args[1] + number) % 2, start, args[0])


def _walk(service: ResourceService, principal: Any, count: int, total: int) -> list[str]:
    ids: list[str] = []
    for start in range(1, total + 1, count):
        page = service.search(principal, USER, None, ListRequest(start_index=start, count=count))
        ids += [r.id for r in page.resources]
    return ids


def test_a_delete_between_pages_is_seen_by_the_next_page(workers: list[ResourceService], acme: Any) -> None:
    service = workers[0]
    users = [service.create(acme, USER, {"userName": f"u{i}@x.com"}).id for i in range(12)]
    assert _walk(service, acme, 3, 12) == users  # every page end is now remembered
    service.delete(acme, USER, users[1], None)  # every later user moves one place up
    page = service.search(acme, USER, None, ListRequest(start_index=7, count=3))
    assert (page.total, [r.id for r in page.resources]) == (11, users[7:10])  # u1 gone: u7 is 7th


def test_a_page_seeks_from_the_remembered_position(workers: list[ResourceService], db: Database, acme: Any) -> None:
    # White-box: a page must start right after the mark at startIndex - 1. A mark planted at
    # position 3 that names the 8th user makes page 4.. start at the 9th: the mark was used.
    service = workers[0]
    users = [service.create(acme, USER, {"userName": f"u{i}@x.com"}).id for i in range(12)]
    first = service.search(acme, USER, None, ListRequest(start_index=1, count=8)).resources
    generation = db.marks._lists[(acme.tenant_id, "User")].generation
    db.marks.remember((acme.tenant_id, "User"), generation, 3, listing.Position(False, None, first[7].created_at,
                                                                                first[7].id))
    page = service.search(acme, USER, None, ListRequest(start_index=4, count=2))
    assert [r.id for r in page.resources] == users[8:10]
    assert db.marks.nearest((acme.tenant_id, "User"), generation, 5) == (
        5, listing.Position(False, None, page.resources[-1].created_at, users[9]))
