"""The concurrency guarantees, over real HTTP against two ``serve`` processes sharing one database
(as behind a load balancer), on SQLite and PostgreSQL, each repeated RUNS (20) times:

* 50 concurrent single-member adds to one group, spread over both processes: all 50 stay;
* 20 concurrent POSTs of one userName in case variants: exactly one 201, nineteen 409, one row;
* two concurrent PUTs with the same If-Match: exactly one succeeds, the other gets 412.
"""

from __future__ import annotations

import random
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlencode

import pytest

from identity_sync.scim.registry import canonical_key
from identity_sync.storage.db import Database
from tests.reliability.conftest import RUNS
from tests.reliability.servers import USER_SCHEMA, Client, Reply, Server


def _together(calls: list[Any]) -> list[Reply]:
    """Run the zero-argument ``calls`` in parallel threads released at the same instant."""
    barrier = threading.Barrier(len(calls))

    def run(call: Any) -> Reply:
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


@pytest.mark.parametrize("run", range(RUNS))
def test_fifty_concurrent_single_member_adds_over_two_servers_keep_all_fifty(clients: list[Client], run: int) -> None:
    tag = uuid.uuid4().hex[:8]
    group = clients[0].create_group(f"group-{run}-{tag}")
    assert group.status == 201, group.body
    with ThreadPoolExecutor(10) as pool:
        users = list(pool.map(lambda i: clients[i % 2].create_user(f"member{i}-{tag}@example.com"), range(50)))
    assert [u.status for u in users] == [201] * 50
    ids = [u.body["id"] for u in users]

    replies = _together([lambda i=i: clients[i % 2].add_member(group.body["id"], ids[i]) for i in range(50)])

    assert [r.status for r in replies] == [204] * 50, [(r.status, r.body) for r in replies if r.status != 204]
    for client in clients:
        members = client.call("GET", f"/Groups/{group.body['id']}").body["members"]
        assert sorted(m["value"] for m in members) == sorted(ids)


def _case_variants(name: str, n: int, seed: int) -> list[str]:
    """``n`` spellings of ``name`` that are the same userName: any letter case, ``é`` composed or
    decomposed (NFC/NFD), ASCII letters also in their fullwidth forms (RFC 8265 width mapping)."""
    rng = random.Random(seed)

    def spell(c: str) -> str:
        if c == "é":
            return rng.choice(["é", "É", "e\u0301", "E\u0301"])
        if c.isascii() and c.isalpha():
            return rng.choice([c.lower(), c.upper(), chr(ord(c.lower()) - 0x61 + 0xFF41)])
        return c

    variants = [name, name.upper()]
    while len(variants) < n:
        variants.append("".join(spell(c) for c in name))
    assert len({canonical_key(v) for v in variants}) == 1 and len(set(variants)) == n
    return variants


@pytest.mark.parametrize("run", range(RUNS))
def test_twenty_concurrent_posts_of_one_username_in_case_variants_make_one_user(
        clients: list[Client], service_db: Database, run: int) -> None:
    name = f"rené-race-{run}-{uuid.uuid4().hex[:8]}@example.com"
    variants = _case_variants(name, 20, run)

    replies = _together([lambda i=i, v=v: clients[i % 2].create_user(v) for i, v in enumerate(variants)])

    statuses = sorted(r.status for r in replies)
    assert statuses == [201] + [409] * 19, [(r.status, r.body) for r in replies]
    assert all(r.body["scimType"] == "uniqueness" for r in replies if r.status == 409)
    with service_db.read() as conn:
        rows = conn.exec_driver_sql(
            "SELECT count(*) FROM resources WHERE name_key = " + ("%(k)s" if conn.dialect.name == "postgresql"
                                                                  else ":k"), {"k": canonical_key(name)}).scalar_one()
    assert rows == 1
    found = clients[1].call("GET", "/Users?" + urlencode({"filter": f'userName eq "{name.upper()}"'})).body
    assert found["totalResults"] == 1


@pytest.mark.parametrize("run", range(RUNS))
def test_two_concurrent_puts_with_the_same_if_match_one_wins_and_the_other_gets_412(
        clients: list[Client], run: int) -> None:
    name = f"etag-{run}-{uuid.uuid4().hex[:8]}@example.com"
    created = clients[0].create_user(name, title="original")
    assert created.status == 201
    user_id, version = created.body["id"], created.headers["etag"]

    def put(i: int) -> Reply:
        return clients[i].call("PUT", f"/Users/{user_id}", {"schemas": [USER_SCHEMA], "userName": name,
                                                            "title": f"writer {i}"}, headers={"If-Match": version})

    replies = _together([lambda: put(0), lambda: put(1)])

    assert sorted(r.status for r in replies) == [200, 412], [(r.status, r.body) for r in replies]
    winner = next(i for i, r in enumerate(replies) if r.status == 200)
    stored = clients[1 - winner].call("GET", f"/Users/{user_id}")
    assert stored.body["title"] == f"writer {winner}"
    assert stored.headers["etag"] == replies[winner].headers["etag"] != version
    # The loser's stale ETag keeps failing: it must re-read first.
    assert put(1 - winner).status == 412


def test_serve_with_several_workers_shares_one_database(service_url: str, token: str, tmp_path: Any) -> None:
    """``serve --workers 3``: each worker builds its own app from the environment; together they
    behave as one service (the uniqueness race spread over the workers by the kernel)."""
    server = Server(service_url, tmp_path, workers=3).start()
    try:
        client = Client(server.base, "acme", token)
        name = f"workers-{uuid.uuid4().hex[:8]}@example.com"
        replies = _together([lambda v=v: client.create_user(v) for v in _case_variants(name, 12, 7)])
        assert sorted(r.status for r in replies) == [201] + [409] * 11, [(r.status, r.body) for r in replies]
    finally:
        server.stop()
