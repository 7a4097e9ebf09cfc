"""The per-tenant rate limit as the HTTP layer applies it: after authentication (so that nobody
can spend another tenant's budget without its credentials), keyed by the tenant's id, answered
with 429 and an integer ``Retry-After`` (Entra pauses for that long and retries).

Where the buckets live (``auth/ratelimit.py``): on PostgreSQL in the database, one row per tenant
shared by every worker and node; on SQLite in each process. ``IDSYNC_RATE_LIMIT_STORE`` =
``auto`` (default: by the database URL), ``database`` or ``memory`` forces one.

Two more per-tenant limits keep one tenant from taking a process from the others (issue 11), both
in the process, both answered with 429 and ``Retry-After`` the same way: :class:`ConcurrencyLimit`
(requests in progress) and :class:`CpuBudget` (CPU time used while other tenants need it). And
:class:`Lanes`, which refuses nothing: while other tenants are served, a tenant's admitted
requests run their service calls one at a time (by default), so that another tenant's request
waits for one of its threads, not eight."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from identity_sync import nonblocking, pacing
from identity_sync.auth.ratelimit import DatabaseBuckets, Limiter, Unlimited, create_limiter, retry_after
from identity_sync.config import Settings
from identity_sync.errors import ScimError
from identity_sync.storage.db import Database


class TooManyRequests(ScimError):
    status = 429
    #: The limit's name in the metrics (docs/observability.md).
    limit_name = "rate"

    def __init__(self, wait: float) -> None:
        seconds = retry_after(wait)
        super().__init__(f"Too many requests for this tenant; retry after {seconds} s.",
                         headers={"Retry-After": str(seconds)})


def rate_limit_store(settings: Settings, database_url: str) -> str:
    """``database`` or ``memory``: the setting if forced, else ``database`` on PostgreSQL."""
    chosen = settings.rate_limit_store  # auto, database or memory: Settings refuses any other value
    if chosen == "auto":
        return "database" if database_url.startswith(("postgresql", "postgres:")) else "memory"
    if chosen == "database" and database_url.startswith("sqlite"):
        # A write per request would take SQLite's database-wide write lock: not offered.
        raise ValueError("IDSYNC_RATE_LIMIT_STORE=database needs PostgreSQL; SQLite uses the in-process limiter")
    return chosen


def scim_limiter(settings: Settings, db: Database) -> Limiter:
    rate, burst = settings.rate_limit_per_second, settings.rate_limit_burst
    if rate <= 0:
        return Unlimited()
    if rate_limit_store(settings, db.url) == "database":
        return DatabaseBuckets(db.autocommit_engine(), rate, burst)  # closed by db.dispose()
    return create_limiter(rate, burst, settings.workers)


def token_limiter(settings: Settings) -> Limiter:
    # In process (1/N per worker): the token endpoint calls take() on the event loop, where a
    # database round trip must not run (web/oauth_routes.py).
    return create_limiter(settings.token_rate_limit_per_second, settings.token_rate_limit_burst, settings.workers)


class TooManyConcurrentRequests(ScimError):
    status = 429
    #: The limit's name in the metrics (docs/observability.md).
    limit_name = "concurrency"

    def __init__(self, limit: int) -> None:
        super().__init__(f"This tenant already has {limit} requests in progress; retry after 1 s.",
                         headers={"Retry-After": "1"})


class ConcurrencyLimit:
    """At most ``limit`` requests of one tenant in progress in this process at once (0: no limit).

    Every request of every tenant runs in one shared pool of worker threads (web/app.py's, 40 by
    default); without a cap, one tenant sending many slow requests at once holds every thread
    and every other tenant waits behind it. A request past its tenant's cap is refused at once
    (429, ``Retry-After: 1``) rather than queued, so that refused requests hold no thread either.
    Taken after authentication: nobody can spend a tenant's slots without its credentials."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._in_progress: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def slot(self, key: str) -> Iterator[None]:
        if self.limit <= 0:
            yield
            return
        with self._lock:
            held = self._in_progress.get(key, 0)
            if held >= self.limit:
                raise TooManyConcurrentRequests(self.limit)
            self._in_progress[key] = held + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._in_progress[key] - 1
                if left:
                    self._in_progress[key] = left
                else:
                    del self._in_progress[key]  # the map holds only tenants with requests in progress

    def in_progress(self, key: str) -> int:
        """How many requests of ``key`` hold a slot now."""
        with self._lock:
            return self._in_progress.get(key, 0)


class CpuBudgetSpent(ScimError):
    status = 429
    #: The limit's name in the metrics (docs/observability.md).
    limit_name = "cpu"

    def __init__(self, wait: float) -> None:
        seconds = retry_after(wait)
        super().__init__(f"This tenant's requests used their share of the server's CPU; retry after {seconds} s.",
                         headers={"Retry-After": str(seconds)})


class RecentTenants:
    """The two tenants served last, most recent first, and when: enough to tell whether any
    tenant other than a given one was served in the last few seconds, in constant time whatever
    the number of tenants. What "alone on the process" means for :class:`CpuBudget` and
    :class:`Lanes`. Its owner's lock guards it; the clock is the owner's (``now`` arguments)."""

    def __init__(self) -> None:
        self.latest: list[tuple[str, float]] = []

    def seen(self, key: str, now: float) -> None:
        latest = self.latest
        if latest and latest[0][0] == key:
            latest[0] = (key, now)  # the same tenant again (always, for a tenant alone): no new list
            return
        self.latest = [(key, now), *[entry for entry in latest if entry[0] != key][:1]]

    def others_quiet_in(self, key: str, now: float, seconds: float) -> float:
        """Seconds until no tenant other than ``key`` will have been served in the last
        ``seconds`` (0 or less: none has been already)."""
        return max((seconds - (now - when) for other, when in self.latest if other != key), default=0.0)


class CpuBudget:
    """Each tenant's share of this process's CPU while other tenants need it: ``rate``
    CPU-seconds per second, ``burst`` saved up (``rate`` 0: no budget).

    The request rate and concurrency caps count requests, but one request may cost 0.1 ms or
    0.5 s of CPU, and every thread of the process shares one interpreter lock: a tenant that
    keeps even one costly request running takes the lock from every other tenant's requests. So
    each request's CPU time (its worker thread's, database driver included) is charged to its
    tenant after it ran; a tenant whose budget is spent is refused (429, ``Retry-After`` = time
    until the budget is positive again) until it refills. A request is never cut short: the
    budget may go into debt by one request's cost, which the refill pays back first.

    Work-conserving: while no other tenant has been served for :data:`ALONE_SECONDS`, nothing is
    charged, so a tenant alone on a process (a dedicated deployment, an initial sync at night, a
    single-tenant benchmark) may use all of it; the budget applies from the moment another tenant
    needs the CPU too, starting from a full burst."""

    #: How recently another tenant must have been served for the budget to apply.
    ALONE_SECONDS = 2.0

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._monotonic = time.monotonic  # replaced by tests that need a fake clock
        self._balances: dict[str, tuple[float, float]] = {}  # key -> (CPU-seconds left, when)
        self._recent = RecentTenants()
        self._lock = threading.Lock()

    def check(self, key: str) -> bool:
        """Refuse (:class:`CpuBudgetSpent`) when ``key``'s budget is spent and others need the CPU;
        returns whether they do (the request is then charged, however long it runs)."""
        if self.rate <= 0:
            return False
        with self._lock:
            self._seen(key)
            if not self._contended(key):
                return False
            left = self._refilled(key)
        if left < 0:
            raise CpuBudgetSpent(-left / self.rate)
        return True

    def charge(self, key: str, seconds: float, contended: bool = False) -> None:
        """Charge ``seconds`` to ``key`` if other tenants need the CPU now, or needed it when the
        request started (``contended``): a request that outlasts :data:`ALONE_SECONDS` — the
        costliest kind — must not escape its charge because the others stopped meanwhile."""
        if self.rate <= 0 or seconds <= 0:
            return
        with self._lock:
            if not (contended or self._contended(key)):
                return
            left = self._refilled(key)
            if len(self._balances) > 100_000 and key not in self._balances:
                del self._balances[next(iter(self._balances))]  # bounded memory; oldest forgotten first
            self._balances[key] = (left - seconds, self._monotonic())

    def balance(self, key: str) -> float:
        """CPU-seconds ``key`` may still use now (negative: in debt)."""
        with self._lock:
            return self._refilled(key)

    def _seen(self, key: str) -> None:
        self._recent.seen(key, self._monotonic())

    def _contended(self, key: str) -> bool:
        return self._recent.others_quiet_in(key, self._monotonic(), self.ALONE_SECONDS) > 0

    def _refilled(self, key: str) -> float:
        left, when = self._balances.get(key, (self.burst, self._monotonic()))
        return min(self.burst, left + (self._monotonic() - when) * self.rate)

    @contextmanager
    def charged(self, key: str) -> Iterator[None]:
        """Check ``key``'s budget, run the block, charge its CPU time (this thread's)."""
        contended = self.check(key)
        started = time.thread_time()
        try:
            yield
        finally:
            self.charge(key, time.thread_time() - started, contended)


class Lanes:
    """While other tenants are being served, at most ``width`` requests of one tenant run their
    service call at once (``width`` 0: no lanes); its other admitted requests wait their turn in
    their worker thread — never refused, never cut short.

    Why (benchmarks/README.md, Fairness): every thread of the process shares one interpreter
    lock, handed over in ``thread_switch_interval_seconds`` slices. A tenant with 8 costly
    requests running has 8 threads competing for it, and another tenant's small request, which
    needs the lock a dozen times (event loop, worker thread, each database call), waits several
    slices at each: its p99 grew 4–9×. With one lane, that tenant has one runnable thread (a
    waiting thread sleeps on a condition and does not compete for the lock). Measured, lanes alone
    did not bring the p99 down — the one thread left still holds the lock in whole slices — and
    lanes with pacing (below) halved it.

    Work-conserving, like :class:`CpuBudget`: a tenant alone on the process (no other tenant
    served for :data:`ALONE_SECONDS`) keeps its full parallelism, and its waiting requests are let
    through as soon as the others have gone quiet.

    Pacing (``pause_seconds`` above 0): each call runs with a hook for
    :func:`identity_sync.pacing.pause`, which the longest loops (PATCH operations, bulk
    operations, the rows of a page) call between items: a call that
    reaches :data:`COSTLY_AFTER` of them is costly, and from then on, while a light call of another
    tenant is running, it sleeps ``pause_seconds`` at each, handing the lock over at once. Costly
    calls never pause for each other, and a tenant alone never pauses."""

    #: How recently another tenant must have been served for the lanes to apply (as CpuBudget's).
    ALONE_SECONDS = CpuBudget.ALONE_SECONDS
    #: The yield point from which a call counts as costly (pauses, and is not paused for).
    COSTLY_AFTER = 16

    def __init__(self, width: int, pause_seconds: float = 0.0) -> None:
        self.width, self.pause_seconds = width, pause_seconds
        self._monotonic = time.monotonic  # replaced by tests that need a fake clock
        self._sleep = time.sleep  # replaced by tests that count the pauses
        self._running: dict[str, int] = {}  # key -> service calls running now (only keys above 0)
        # Counted calls that have not reached COSTLY_AFTER yield points (light so far), per key
        # and in all: what a costly call pauses for.
        self._light: dict[str, int] = {}
        self._light_total = 0
        self._recent = RecentTenants()  # the tenants that entered last
        self._changed = threading.Condition(threading.Lock())

    @contextmanager
    def lane(self, key: str) -> Iterator[None]:
        """Run the block in one of ``key``'s lanes: at once if one is free or ``key`` is alone on
        the process, else when one of its running calls ends or the others go quiet."""
        if self.width <= 0:
            yield
            return
        # A tenant alone on the process (the single-tenant deployment, every request) takes no
        # lock and is not counted: 2–3 µs per request instead of ~8 in a loop here, on the path
        # of every lookup. Its calls running when another tenant arrives finish uncounted; the
        # lanes apply from its next call on.
        counted = not self._alone(key)
        if counted:
            with self._changed:
                self._seen(key)
                while self._running.get(key, 0) >= self.width:
                    quiet_in = self._quiet_in(key)
                    if quiet_in <= 0:
                        break  # alone after all: full parallelism
                    nonblocking.refuse("a lane")  # on the event loop: run in a worker thread instead
                    # Woken when a counted call of any tenant ends, or when the others will have gone quiet.
                    self._changed.wait(quiet_in)
                self._running[key] = self._running.get(key, 0) + 1
                self._light[key] = self._light.get(key, 0) + 1
                self._light_total += 1
        passed = [0]  # yield points this call has reached

        def pause() -> None:
            passed[0] += 1
            if passed[0] < self.COSTLY_AFTER:
                return  # a PATCH of a few operations (Entra's usual) is still light
            if passed[0] == self.COSTLY_AFTER and counted:
                with self._changed:
                    self._count_out_light(key)
            # Read without the lock: a pause more or less is harmless, a lock per item is not free.
            if self._light_total - self._light.get(key, 0) > 0:
                nonblocking.refuse("a pause")
                self._sleep(self.pause_seconds)

        try:
            # Installed even when alone: a costly call that began alone must pause for a tenant
            # that arrives while it runs.
            hook = pacing.install(pause) if self.pause_seconds > 0 else None
            try:
                yield
            finally:
                if hook is not None:
                    pacing.uninstall(hook)
        finally:
            if counted:
                with self._changed:
                    left = self._running[key] - 1
                    if left:
                        self._running[key] = left
                    else:
                        del self._running[key]
                    if passed[0] < self.COSTLY_AFTER:
                        self._count_out_light(key)
                    self._changed.notify_all()

    def _alone(self, key: str) -> bool:
        """Whether ``key`` was the only tenant served in the last ALONE_SECONDS and no counted call
        of another runs, judged without the lock (a stale answer costs one call's turn at most);
        if so, ``key`` is marked served now."""
        running = self._running
        if running and (len(running) > 1 or key not in running):
            return False
        now = self._monotonic()
        if self._recent.others_quiet_in(key, now, self.ALONE_SECONDS) > 0:
            return False
        self._recent.seen(key, now)
        return True

    def _count_out_light(self, key: str) -> None:
        left = self._light[key] - 1
        if left:
            self._light[key] = left
        else:
            del self._light[key]
        self._light_total -= 1

    def running(self, key: str) -> int:
        """How many service calls of ``key`` run now."""
        with self._changed:
            return self._running.get(key, 0)

    def _seen(self, key: str) -> None:
        self._recent.seen(key, self._monotonic())

    def _quiet_in(self, key: str) -> float:
        """Seconds until no tenant other than ``key`` will have been served for ALONE_SECONDS
        (0 or less: none has been already). A tenant with a call running counts as served now."""
        if any(other != key for other in self._running):
            return self.ALONE_SECONDS
        return self._recent.others_quiet_in(key, self._monotonic(), self.ALONE_SECONDS)


def check(limiter: Limiter, key: str) -> None:
    wait = limiter.take(key)
    if wait > 0:
        raise TooManyRequests(wait)
