"""What the CLI (and later the console) asks of the engine: run a cycle, preview one, provision
one object on demand, test the connection. It builds the job's source and SCIM client, runs the
cycle, and keeps the job's watermark; no engine logic lives in the callers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from identity_sync.config import Settings
from identity_sync.engine.client import BearerToken, ClientCredentials, ConnectionProblem, ScimClient
from identity_sync.engine.cycle import Cycle, CycleResult
from identity_sync.engine.errors import CycleAborted
from identity_sync.engine.jobs import Job, JobService
from identity_sync.engine.lease import Lease
from identity_sync.engine.logs import prune_events
from identity_sync.engine.mapping.expressions import EvaluationContext
from identity_sync.engine.mirror import SourceMirror
from identity_sync.engine.model import SourceSnapshot
from identity_sync.engine.notify import Notifier, notice_for
from identity_sync.engine.operations import JobOperations, Transition
from identity_sync.engine.progress import Progress
from identity_sync.engine.sources import SourceSpecError, open_source
from identity_sync.engine.sources.base import Source
from identity_sync.storage.db import Database


class EngineService:
    def __init__(self, db: Database, settings: Settings, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.db = db
        self.settings = settings
        self.jobs = JobService(db, settings)
        self.operations = JobOperations(self.jobs)
        #: Injected by tests of quarantine and escrow back-off (no sleeps).
        self.clock = clock
        #: How the SCIM client waits between retries; injected by tests whose target is down for
        #: good (the retries still happen, without ~12 s of back-off per cycle).
        self.sleep = sleep

    def run(self, name: str, *, progress: Progress | None = None,
            should_stop: Callable[[], bool] | None = None) -> CycleResult:
        """One cycle now: initial without a watermark, else incremental. Raises CycleAborted when
        the cycle could not run; per-object failures are counted and logged, not raised. Either
        way the job's state, next run and quarantine follow (engine/operations.py)."""
        job = self.jobs.get(name)
        lease = Lease(self.db, job.id, job.name, seconds=self.settings.engine_lease_seconds)
        lease.acquire()  # one cycle of a job at a time (JobBusy otherwise)
        try:
            cycle = self._cycle(job, preview=False, progress=progress, lease=lease, should_stop=should_stop)
            try:
                result = asyncio.run(self._run(job, cycle))
            except CycleAborted as exc:
                counts = ({"would_delete": cycle.counts["staged"], "threshold": job.deletion_threshold or 0}
                          if cycle.counts.get("staged") else dict(cycle.counts))
                self._after(job, self.operations.failed(job, exc.error_code, str(exc), self.clock()), counts)
                raise
            except Exception as exc:
                # A bug: counted like a cycle that could not run, so a scheduler does not spin on it.
                self._after(job, self.operations.failed(job, "InternalError", f"{type(exc).__name__}: {exc}",
                                                        self.clock()), dict(cycle.counts))
                raise
            counts = {**result.counts, "imported": result.source_read.get("entries", 0)}
            transition = self.operations.completed(job, result.watermark, counts, self.clock(), lease, kind=result.kind)
            self._after(job, transition, counts)
            # After the watermark: a crash in between leaves objects pending, looked at once more.
            SourceMirror(self.db, job.id).settle(result.again)
        finally:
            lease.release()
        prune_events(self.db, self.settings.engine_log_retention_days)
        return result

    def _after(self, job: Job, transition: Transition, counts: dict[str, int]) -> None:
        """Tell a person when the job entered quarantine or its reason changed (once per event,
        engine/notify.py); the e-mail is queued, then sent at once if it can be (else retried by
        the scheduler). Never raises: a failed send never stops anything."""
        notice = notice_for(job.name, transition.before, transition.after, counts)
        if notice is None or not job.notify or not job.notify_on_failure:
            return
        notifier = Notifier(self.db, self.settings, clock=self.clock)
        if notifier.enqueue(None, job.id, job.notify, notice):
            notifier.deliver()

    def preview(self, name: str, *, progress: Progress | None = None) -> CycleResult:
        """Every action a cycle would take, with the attribute changes; writes nothing anywhere."""
        job = self.jobs.get(name)
        return asyncio.run(self._run(job, self._cycle(job, preview=True, progress=progress)))

    def provision(self, name: str, anchor: str) -> CycleResult:
        """Provision one object on demand (§4.6); its events are also in the job's logs."""
        job = self.jobs.get(name)
        lease = Lease(self.db, job.id, job.name, seconds=self.settings.engine_lease_seconds)
        cycle = self._cycle(job, preview=False, progress=None, lease=lease)
        source = self._source(job)

        def read() -> SourceSnapshot:
            # A live source: the engine's copy with this one object read fresh (a second, not a
            # complete read of a 100,000-entry directory); else, or before any cycle, a complete read.
            return job.view.apply(SourceMirror(self.db, job.id).with_fresh(source, anchor) or source.read())

        async def go() -> CycleResult:
            try:
                async with self._client(job) as client:
                    await self._check_connection(client, job)
                    return await cycle.run_one(read, client, anchor)
            finally:
                source.close()

        lease.acquire()
        try:
            return asyncio.run(go())
        finally:
            lease.release()

    def test_connection(self, name: str) -> None:
        """What Entra's Test Connection sends (§4.7); raises ConnectionProblem."""
        job = self.jobs.get(name)

        async def go() -> None:
            async with self._client(job) as client:
                await self._test(client, job)

        asyncio.run(go())

    # -- internals -------------------------------------------------------------------------------

    async def _run(self, job: Job, cycle: Cycle) -> CycleResult:
        source = self._source(job)
        mirror = SourceMirror(self.db, job.id)

        def read() -> SourceSnapshot:
            # Changes only when the source can and the cycle is incremental; a preview keeps nothing.
            refreshed = mirror.refresh(source, incremental=job.watermark is not None, view=job.view,
                                       persist=not cycle.preview)
            cycle.source_read = {"mode": refreshed.mode, "entries": refreshed.entries_read}
            return refreshed.snapshot

        try:
            async with self._client(job) as client:
                await self._check_connection(client, job)
                return await cycle.run(read, client)
        finally:
            source.close()

    def _cycle(self, job: Job, *, preview: bool, progress: Progress | None, lease: Lease | None = None,
               should_stop: Callable[[], bool] | None = None) -> Cycle:
        return Cycle(self.db, job.id, job.mapping(), job.scope, job.watermark, preview=preview, progress=progress,
                     context=EvaluationContext(), allow_deletes=bool(job.settings.get("force_deletes")), lease=lease,
                     nested_scope=job.view.nested_scope, deletion_threshold=job.deletion_threshold,
                     should_stop=should_stop, clock=self.clock)

    def _source(self, job: Job) -> Source:
        try:
            return open_source(job.source, self.jobs.source_options(job))
        except SourceSpecError as exc:
            raise CycleAborted(str(exc), "SourceUnreadable") from None

    @asynccontextmanager
    async def _client(self, job: Job) -> AsyncIterator[ScimClient]:
        credentials = self.jobs.credentials(job)
        if credentials.token is not None:
            auth: BearerToken | ClientCredentials = BearerToken(credentials.token)
        else:
            assert credentials.token_endpoint and credentials.client_id and credentials.client_secret
            auth = ClientCredentials(credentials.token_endpoint, credentials.client_id, credentials.client_secret)
        async with ScimClient(job.target_url, auth, dialect=job.dialect, max_in_flight=job.concurrency,
                              sleep=self.sleep) as client:
            yield client

    async def _check_connection(self, client: ScimClient, job: Job) -> None:
        """Entra fetches a random user and group at the start of each cycle (§1.4): a wrong URL or
        credential stops the cycle before it exports anything."""
        try:
            await self._test(client, job, retries=None)  # a blip at the start must not cost a cycle
        except ConnectionProblem as exc:
            raise CycleAborted(f"target: {exc}", _problem_code(exc)) from None

    async def _test(self, client: ScimClient, job: Job, retries: int | None = 0) -> None:
        mapping = job.mapping()
        user_attribute = mapping.users.matching[0].target if mapping.users.matching else "userName"
        group_attribute = mapping.groups.matching[0].target if mapping.groups.matching else "displayName"
        await client.test_connection(user_attribute=user_attribute, group_attribute=group_attribute, retries=retries)


def _problem_code(problem: ConnectionProblem) -> str:
    return {"unauthorized": "Unauthorized", "forbidden": "InsufficientRights", "unreachable": "TargetUnreachable",
            "tls": "TargetUnreachable", "not_scim": "ServiceIncompatible",
            "not_found": "ServiceIncompatible"}.get(getattr(problem, "kind", ""), "TargetUnreachable")
