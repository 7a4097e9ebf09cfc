"""The Prometheus metrics (docs/observability.md lists them with their labels).

Request metrics are counted in the process that served the request. With ``serve --workers N``
each worker is a process of its own: ``serve`` then sets ``PROMETHEUS_MULTIPROC_DIR`` (cli/serve.py),
prometheus-client keeps every worker's values in files there, and ``/metrics`` — whichever worker
answers it — adds them all up (``MultiProcessCollector``). With one process, each app has a
registry of its own (no global state shared between apps, e.g. between tests).

Engine metrics are not counted in memory at all: the engine runs in other processes (``identity-sync
engine``, ``serve --engine``, other nodes), so they are read from the database at scrape time
(:class:`EngineCollector`) — the one place that is right whatever the number of processes and
nodes, and never counted twice.

Label values stay bounded: the route is the route's template (``/scim/v2/{tenant}/Users/{id}``),
never the path; the tenant is the name of a tenant that authenticated, else ``-`` (a stranger
naming random tenants in URLs cannot make new series); reasons and limits are fixed lists.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy.exc import SQLAlchemyError

from identity_sync.config import prometheus_multiproc_dir
from identity_sync.engine.tables import engine_cycles, engine_jobs
from identity_sync.observability.history import RequestHistory
from identity_sync.storage.db import Database
from identity_sync.storage.errors import DatabaseUnavailable

log = structlog.get_logger("identity_sync.metrics")
#: The label of a request no route matched, and of a tenant that did not authenticate.
UNMATCHED = "unmatched"
NO_TENANT = "-"
#: At most this many label combinations keep their children cached (tenants x routes x statuses).
_CHILDREN_KEPT = 100_000
#: Seconds; SCIM calls take milliseconds, a large page or a Bulk request seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: What an engine cycle's counts call the objects it exported, by action.
EXPORTED = ("created", "updated", "disabled", "deleted")


def multiprocess() -> bool:
    return prometheus_multiproc_dir() is not None


class Metrics:
    """One app's metrics: counted per request by the access-log middleware, exposed by ``/metrics``."""

    def __init__(self, db: Database) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.requests = Counter("idsync_http_requests", "HTTP requests served, by tenant, route, method and status.",
                                ["tenant", "route", "method", "status"], registry=r)
        self.latency = Histogram("idsync_http_request_duration_seconds",
                                 "Time from the request's arrival to the end of its response, by route and method.",
                                 ["route", "method"], buckets=LATENCY_BUCKETS, registry=r)
        self.auth_failures = Counter("idsync_auth_failures", "Requests refused 401 or 403, by reason.",
                                     ["reason"], registry=r)
        self.rate_limited = Counter("idsync_rate_limit_rejections", "Requests refused 429, by tenant and limit.",
                                    ["tenant", "limit"], registry=r)
        self.engine = EngineCollector(db)
        r.register(self.engine)
        #: The labelled counter and histogram of each (tenant, route, method, status) seen: found
        #: by one dict lookup instead of two ``labels()`` calls (lock, validation) per request.
        self._children: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}
        #: The console overview's request history (history.py): counted here, with the metrics.
        self.history = RequestHistory(db)

    def record(self, *, tenant: str | None, route: str | None, method: str, status: int, seconds: float,
               auth_failure: str | None, limited_by: str | None) -> None:
        tenant_label, route_label = tenant or NO_TENANT, route or UNMATCHED
        key = (tenant_label, route_label, method, status)
        children = self._children.get(key)
        if children is None:
            children = (self.requests.labels(tenant_label, route_label, method, str(status)),
                        self.latency.labels(route_label, method))
            if len(self._children) < _CHILDREN_KEPT:
                self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)
        self.history.add(tenant, status)
        if auth_failure is not None:
            self.auth_failures.labels(auth_failure).inc()
        if limited_by is not None and status == 429:
            self.rate_limited.labels(tenant_label, limited_by).inc()

    def exposition(self) -> bytes:
        """The text format of every metric: with several worker processes, all of theirs added up."""
        if not multiprocess():
            return generate_latest(self.registry)
        registry = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(registry)
        registry.register(self.engine)
        return generate_latest(registry)


class EngineCollector:
    """Engine metrics read from the database at each scrape: three grouped queries whose size is
    bounded by the number of jobs (× cycle kinds and states), not by the engine's history."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[Metric]:
        jobs, cycles = engine_jobs.c, engine_cycles.c
        exported: Sequence[Any] = []
        try:
            with self.db.read() as conn:
                states = conn.execute(sa.select(jobs.state, sa.func.count()).group_by(jobs.state)).all()
                # Finished cycles only: a running cycle's counts are partial, and cycles are never
                # pruned (only a deleted job's go, with its series), so these totals only grow.
                joined = engine_cycles.join(engine_jobs, engine_jobs.c.id == cycles.job_id)
                ended = cycles.ended_at.is_not(None)
                ran = conn.execute(sa.select(jobs.name, cycles.kind, cycles.state, sa.func.count()).select_from(joined)
                                   .where(ended).group_by(jobs.name, cycles.kind, cycles.state)).all()
                sums = [sa.func.sum(sa.func.coalesce(cycles.counts[key].as_integer(), 0)) for key in EXPORTED]
                exported = conn.execute(sa.select(jobs.name, *sums).select_from(joined).where(ended)
                                        .group_by(jobs.name)).all()
        except (DatabaseUnavailable, SQLAlchemyError) as exc:  # the database away, or not migrated
            log.warning("metrics.engine_unavailable", error=type(exc.__cause__ or exc).__name__)
            yield GaugeMetricFamily("idsync_engine_metrics_up", "Whether the engine metrics could be read.", 0)
            return
        yield GaugeMetricFamily("idsync_engine_metrics_up", "Whether the engine metrics could be read.", 1)
        by_state = {state: count for state, count in states}
        yield GaugeMetricFamily("idsync_engine_quarantined_jobs", "Provisioning jobs in quarantine.",
                                by_state.get("quarantined", 0))
        jobs_family = GaugeMetricFamily("idsync_engine_jobs", "Provisioning jobs, by state.", labels=["state"])
        for state, count in sorted(by_state.items()):
            jobs_family.add_metric([state], count)
        yield jobs_family
        cycle_family = CounterMetricFamily("idsync_engine_cycles", "Finished engine cycles, by job, kind and state.",
                                           labels=["job", "kind", "state"])
        for name, kind, state, count in ran:
            cycle_family.add_metric([name, kind, state], count)
        yield cycle_family
        exported_family = CounterMetricFamily("idsync_engine_exported_objects",
                                              "Objects the engine's finished cycles exported, by job and action.",
                                              labels=["job", "action"])
        for row in exported:
            for action, total in zip(EXPORTED, row[1:], strict=True):
                exported_family.add_metric([row[0], action], int(total or 0))
        yield exported_family


def route_template(scope: Mapping[str, Any]) -> str | None:
    """The template of the route that served ``scope`` (Starlette's router records it there)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else None
