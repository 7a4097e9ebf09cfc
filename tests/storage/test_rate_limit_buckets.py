"""The shared per-tenant token buckets in PostgreSQL (auth/ratelimit.DatabaseBuckets): refill,
burst cap, refused requests not spending, concurrent takers from several threads and several
connection pools (as from several processes) never over-issuing, and the store's selection."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from identity_sync.auth.ratelimit import DatabaseBuckets, MemoryBuckets, Unlimited, retry_after
from identity_sync.config import Settings
from identity_sync.storage.db import Database, create_engine
from identity_sync.web import limits


@pytest.fixture
def pg_url(db_kind: str, db_url: str) -> str:
    if db_kind != "postgresql":
        pytest.skip("the shared buckets live in PostgreSQL; SQLite keeps them in each process")
    return db_url


Make = Callable[..., DatabaseBuckets]


@pytest.fixture
def make(pg_url: str) -> Iterator[Make]:
    made: list[DatabaseBuckets] = []

    def factory(rate: float, burst: float) -> DatabaseBuckets:
        made.append(DatabaseBuckets(create_engine(pg_url, autocommit=True), rate, burst))
        return made[-1]

    yield factory
    for buckets in made:
        buckets.close()


def _age(db: Database, key: str, seconds: float) -> None:
    """Move the bucket's last take ``seconds`` into the past (the database clock can't be faked)."""
    with db.write() as conn:
        conn.execute(sa.text("UPDATE rate_limit_buckets SET updated_at = updated_at - make_interval(secs => :s) "
                             "WHERE tenant_id = :k"), {"s": seconds, "k": key})


def _allowed(buckets: DatabaseBuckets, key: str, n: int) -> int:
    return sum(buckets.take(key) == 0 for _ in range(n))


def test_burst_then_refill_at_the_rate(make: Make, db: Database) -> None:
    # Slow rates, so that a loaded machine's seconds between two takes refill nothing.
    buckets = make(rate=0.2, burst=5)
    assert _allowed(buckets, "t1", 5) == 5
    wait = buckets.take("t1")
    assert 4.0 < wait <= 5.0 and retry_after(wait) == 5  # one token every 5 s
    assert buckets.take("t2") == 0  # another tenant has its own bucket
    _age(db, "t1", 10.0)  # ten seconds later: two more tokens
    assert _allowed(buckets, "t1", 10) == 2


def test_refill_is_capped_at_the_burst(make: Make, db: Database) -> None:
    buckets = make(rate=0.01, burst=7)
    assert _allowed(buckets, "t", 7) == 7
    _age(db, "t", 3600)  # an hour idle refills to the burst, not to 36
    assert _allowed(buckets, "t", 50) == 7


def test_refused_requests_do_not_spend_tokens(make: Make, db: Database) -> None:
    buckets = make(rate=0.2, burst=1)
    assert buckets.take("t") == 0
    assert all(buckets.take("t") > 0 for _ in range(50))  # a flood of refusals builds no debt
    _age(db, "t", 5.0)
    assert buckets.take("t") == 0


def test_retry_after_is_the_time_to_the_next_token(make: Make) -> None:
    buckets = make(rate=0.25, burst=1)
    assert buckets.take("t") == 0
    wait = buckets.take("t")
    assert 3.0 < wait <= 4.0 and retry_after(wait) == 4  # (less the seconds of a loaded machine)


def test_concurrent_takers_never_over_issue(make: Make) -> None:
    # Two limiters with pools of their own stand for two processes; 4 threads on each.
    pools = [make(rate=0.001, burst=40), make(rate=0.001, burst=40)]
    allowed: list[int] = []
    start = threading.Barrier(8)

    def taker(buckets: DatabaseBuckets) -> None:
        start.wait()
        allowed.append(_allowed(buckets, "shared", 25))

    threads = [threading.Thread(target=taker, args=(pools[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(allowed) == 40  # 200 takes, exactly the burst granted (the rate adds < 0.01)


def test_connections_broken_by_a_database_restart_are_replaced(make: Make, db: Database) -> None:
    buckets = make(rate=100, burst=100)
    held = [buckets.engine.raw_connection() for _ in range(6)]  # the pool holds several connections
    for raw in held:
        raw.close()
    assert buckets.take("t") == 0
    with db.write() as conn:  # what a restart does to the limiter's pooled connections
        conn.exec_driver_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    assert buckets.take("t") == 0


def test_the_store_is_chosen_by_dialect_and_can_be_forced(db_kind: str, settings: Settings, db: Database,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    limiter = limits.scim_limiter(settings, db)
    assert isinstance(limiter, DatabaseBuckets if db_kind == "postgresql" else MemoryBuckets)
    memory = settings.model_copy(update={"rate_limit_store": "memory"})
    assert isinstance(limits.scim_limiter(memory, db), MemoryBuckets)
    database = settings.model_copy(update={"rate_limit_store": "database"})
    if db_kind == "postgresql":
        assert isinstance(limits.scim_limiter(database, db), DatabaseBuckets)
    else:  # a write per request would take SQLite's global write lock
        with pytest.raises(ValueError, match="needs PostgreSQL"):
            limits.scim_limiter(database, db)
    # The variable is read by Settings (like every other), which refuses an unknown store.
    monkeypatch.setenv("IDSYNC_RATE_LIMIT_STORE", "memory")
    assert Settings().rate_limit_store == "memory"
    monkeypatch.setenv("IDSYNC_RATE_LIMIT_STORE", "redis")
    with pytest.raises(ValidationError, match="rate_limit_store"):
        Settings()
    off = settings.model_copy(update={"rate_limit_per_second": 0.0})
    assert isinstance(limits.scim_limiter(off, db), Unlimited)
