"""One provisioning cycle (provisioning-engine.md §1.2–1.4): read the source completely, then
users, groups, memberships and deletions, in that order (§1.5: objects before memberships;
references after the objects they point at, §1.6).

* **Initial** cycle (no watermark): every object in scope is evaluated and compared with the
  *target itself* — linked objects are read back, unlinked ones matched — so drift is repaired.
* **Incremental** cycle: the objects the engine's copy of the source says changed (or are still
  pending from an earlier cycle: engine/mirror.py) are evaluated, and only those whose computed
  values differ from the digest in the connector data store reach the target: an unchanged object
  costs no request (invariant 4 of docs/engine.md). A snapshot that does not say what changed
  (``changed`` is ``None``) has every object evaluated.
* Disable (``active`` false) when an object leaves scope, is disabled or soft-deleted; ``DELETE``
  when it is gone from a complete read. A source that cannot be read completely raises before
  anything is exported (invariant 1): a truncated export never becomes deletions.
* Links are written after the target answered, batch by batch (invariant 2): a cycle interrupted
  anywhere converges on the next run without duplicate creates, because unlinked objects are
  matched before they are created.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from identity_sync.clock import now_text
from identity_sync.engine import guards
from identity_sync.engine.client import ScimClient, TargetError
from identity_sync.engine.errors import CycleAborted
from identity_sync.engine.escrow import Escrows, waiting
from identity_sync.engine.export import Target, current_values
from identity_sync.engine.lease import Lease
from identity_sync.engine.logs import ProvisioningEvent, write_events
from identity_sync.engine.mapping.compute import MappingEvaluationError, diff, shown, stored_form
from identity_sync.engine.mapping.expressions import EvaluationContext
from identity_sync.engine.mapping.model import MappingConfig, ObjectMapping
from identity_sync.engine.model import ObjectType, SourceError, SourceObject, SourceSnapshot, Value
from identity_sync.engine.ordering import managers_first
from identity_sync.engine.pipeline import DISABLED_DIGEST, Evaluation, Evaluator
from identity_sync.engine.progress import Progress
from identity_sync.engine.scoping import effective_assignments
from identity_sync.engine.state import ConnectorStore, Link, LinkIndex
from identity_sync.engine.tables import engine_cycles
from identity_sync.ids import new_id
from identity_sync.storage.db import Database

#: Objects evaluated and exported together; links and events are written once per batch.
BATCH = 256
#: Unlinked objects from which an initial cycle lists the target's matching values up front.
INDEX_THRESHOLD = 500
#: Groups whose memberships are updated at the same time (the client bounds requests in flight).
GROUPS_AT_ONCE = 16
#: How often a running cycle writes its progress into its row (at the end of a batch).
PROGRESS_EVERY_SECONDS = 2.0
COUNT_KEYS = ("created", "updated", "disabled", "deleted", "skipped", "failed")
#: Also in a cycle's record: objects not looked at (unchanged, escrowed and not due), removals held
#: back by the deletion threshold, memberships changed.
EXTRA_COUNT_KEYS = ("unchanged", "escrowed", "staged", "members_added", "members_removed")


@dataclass
class CycleResult:
    cycle_id: str
    kind: str
    counts: Counter[str]
    seconds: float
    state: str = "completed"
    error: str | None = None
    #: Every event of the cycle, in the preview (which stores none).
    events: list[ProvisioningEvent] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)
    #: The source's position after this cycle (kept as the job's watermark when it completed).
    watermark: str | None = None
    warnings: list[str] = field(default_factory=list)
    #: Source anchors the next cycle must look at again: a failure, a reference not resolvable yet.
    again: set[str] = field(default_factory=set)
    #: How the source was read: ``{"mode": "complete"|"changes", "entries": N}`` (engine/mirror.py).
    source_read: dict[str, Any] = field(default_factory=dict)

    def as_dict(self, job: str) -> dict[str, Any]:
        data: dict[str, Any] = {"job": job, "cycle": self.cycle_id, "kind": self.kind, "state": self.state}
        data.update({key: self.counts.get(key, 0) for key in COUNT_KEYS})
        data.update({key: self.counts.get(key, 0) for key in EXTRA_COUNT_KEYS})
        data.update({"requests": self.requests,
                     "seconds": round(self.seconds, 3), "error": self.error, "warnings": self.warnings,
                     "source_read": self.source_read})
        return data


@dataclass
class _MemberChange:
    group: str
    add: list[str]
    remove: list[str]
    event: ProvisioningEvent
    gone: bool = False


@dataclass
class _Outcome:
    event: ProvisioningEvent | None
    link: Link | None = None
    #: The object's old link is void (InvalidAnchor, or deleted): drop it and its memberships.
    unlink: bool = False
    #: The anchor whose link this object takes over (see Cycle._may_link).
    takes_over: str | None = None


class Cycle:
    """Runs one cycle of one job; ``preview=True`` writes nothing anywhere."""

    def __init__(self, db: Database, job_id: str, mapping: MappingConfig, scope_mode: str, watermark: str | None,
                 *, preview: bool = False, progress: Progress | None = None,
                 context: EvaluationContext | None = None, allow_deletes: bool = False,
                 lease: Lease | None = None, nested_scope: bool = False, deletion_threshold: int | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.db = db
        #: The job's accidental-deletion threshold (§4.1; ``None``: off, as Entra's default).
        self.deletion_threshold = deletion_threshold
        #: Asked at object boundaries: a scheduler shutting down stops the cycle there (SIGTERM).
        self.should_stop = should_stop
        self.clock = clock
        self.escrows = Escrows(db, job_id)
        #: Escrowed anchors → (attempts, next attempt); those not due are skipped this cycle.
        self.escrowed: dict[str, tuple[int, str]] = {}
        self.waiting: set[str] = set()
        #: Members of nested groups of an assigned group are assigned too (engine/nesting.py).
        self.nested_scope = nested_scope
        self.job_id = job_id
        self.mapping = mapping
        self.scope_mode = scope_mode
        self.kind = "initial" if watermark is None else "incremental"
        self.preview = preview
        self.allow_deletes = allow_deletes
        #: Renewed with every write: a cycle whose job was taken over stops before writing (lease.py).
        self.lease = lease
        self.progress = progress or Progress()
        self.context = context or EvaluationContext()
        self.store = ConnectorStore(db, job_id)
        self.cycle_id = new_id()
        self.counts: Counter[str] = Counter()
        self.events: list[ProvisioningEvent] = []
        #: Source anchor → target id of every linked object, as the cycle links more.
        self.targets: dict[str, str] = {}
        #: Users that are provisioned and active after the users phase (members of groups).
        self.active_users: set[str] = set()
        self.live_groups: set[str] = set()
        self.watermark: str | None = None
        self.warnings: list[str] = []
        #: Per object type: target id → the source anchor linked to it.
        self.owners: dict[str, dict[str, str]] = {"user": {}, "group": {}}
        self.snapshot: SourceSnapshot | None = None
        #: What an incremental cycle evaluates (the snapshot's ``changed``); ``None``: everything.
        self.changed: frozenset[str] | None = None
        self.again: set[str] = set()
        self.source_read: dict[str, Any] = {}
        self._progress_saved = 0.0

    # -- the cycle ---------------------------------------------------------------------------

    async def run(self, read: Callable[[], SourceSnapshot], client: ScimClient) -> CycleResult:
        started = time.monotonic()
        self._record_start()
        target = Target(client, preview=self.preview)
        try:
            self.progress.begin("read", 1)
            try:
                snapshot = read()
                self.watermark = snapshot.watermark
            except SourceError as exc:
                raise CycleAborted(f"source: {exc}", "SourceUnreadable") from None
            self.progress.advance()
            await self._run(snapshot, target)
        except CycleAborted as exc:
            result = self._result(started, target, "failed", str(exc))
            self._record_end(result)
            raise
        except TargetError as exc:
            result = self._result(started, target, "failed", f"target: {exc}")
            self._record_end(result)
            raise CycleAborted(f"target: {exc}", exc.error_code) from None
        except BaseException as exc:
            # A bug or an interruption (Ctrl-C): the cycle is over; what was linked stays linked.
            self._record_end(self._result(started, target, "failed", f"{type(exc).__name__}: {exc}"))
            raise
        result = self._result(started, target, "completed", None)
        self._record_end(result)
        return result

    async def run_one(self, read: Callable[[], SourceSnapshot], client: ScimClient, anchor: str) -> CycleResult:
        """Provision on demand (§4.6): one user, or one group with its memberships, through the
        whole pipeline now; compared with the target itself, as in an initial cycle."""
        self.kind = "on-demand"
        started = time.monotonic()
        target = Target(client, preview=self.preview)
        try:
            snapshot = read()
        except SourceError as exc:
            raise CycleAborted(f"source: {exc}", "SourceUnreadable") from None
        is_group = anchor in snapshot.groups and self.mapping.groups.enabled
        if anchor not in snapshot.users and not is_group:
            raise CycleAborted(f"no user or group with id {anchor!r} in the source"
                               + ("" if self.mapping.groups.enabled else " (group provisioning is off)"),
                               "ObjectNotFound")
        self.snapshot = snapshot
        self.mapping = guards.canonical_scoping(self.mapping, snapshot)
        assignments = effective_assignments(snapshot, nested=self.nested_scope)
        users = Evaluator(self.mapping.users, self.scope_mode, assignments, self.context)
        self._record_start()
        try:
            if not is_group:
                await self._sync(target, users, {anchor: snapshot.users[anchor]})
            else:
                group = snapshot.groups[anchor]
                self.targets.update({a: link.target_id for a, link in self.store.index("user").items()})
                members = set(group.attributes.get("members") or [])
                self.active_users.update(m for m in members
                                         if m in snapshot.users and users.decide(snapshot.users[m])[0].in_scope)
                self.live_groups.update(m for m in members if m in snapshot.groups)
                groups = Evaluator(self.mapping.groups, self.scope_mode, assignments, self.context)
                await self._sync(target, groups, {anchor: group})
                await self._sync_memberships(target, SourceSnapshot({}, {anchor: group}, snapshot.assigned,
                                                                     snapshot.watermark))
        except TargetError as exc:
            self._record_end(self._result(started, target, "failed", f"target: {exc}"))
            raise CycleAborted(f"target: {exc}", exc.error_code) from None
        result = self._result(started, target, "completed", None)
        self._record_end(result)
        return result

    async def _run(self, snapshot: SourceSnapshot, target: Target) -> None:
        self.snapshot = snapshot
        self.changed = snapshot.changed if self.kind == "incremental" else None
        self.escrowed = self.escrows.load()
        if self.kind == "incremental":
            # An initial cycle (a restart, a new mapping) tries everything at once.
            self.waiting = waiting(self.escrowed, self.clock())
            self.again |= self.waiting  # still to be looked at, when due
        self.mapping = guards.canonical_scoping(self.mapping, snapshot)
        self.warnings += guards.check_assignments(self.scope_mode, snapshot, self.store)
        if not self.allow_deletes:
            guards.check_deletions(snapshot, self.store)
        assignments = effective_assignments(snapshot, nested=self.nested_scope)
        users = Evaluator(self.mapping.users, self.scope_mode, assignments, self.context)
        if self.deletion_threshold is not None and not self.allow_deletes:
            groups_evaluator = Evaluator(self.mapping.groups, self.scope_mode, assignments, self.context)
            removals = guards.pending_removals(snapshot, self.store, users, groups_evaluator, self.changed,
                                               self.mapping)
            if len(removals) > self.deletion_threshold:
                self._stage(removals)
        deferred = await self._sync(target, users, self._to_evaluate(snapshot.users))
        # Evaluated again next cycle until resolved (an incremental cycle would not look otherwise).
        self.again.update(deferred)
        if deferred:
            # References to objects created in this cycle: a second pass once they exist (§1.6).
            # A reference to an object that is not provisioned at all (a manager out of scope) stays
            # unset, as in Entra (E-KNOWN), and costs no second look.
            ready = {a: snapshot.users[a] for a, paths in deferred.items()
                     if any(self._resolvable(snapshot.users[a], p) for p in paths)}
            await self._sync(target, users, ready, reference_pass=True)
        if self.mapping.groups.enabled:
            groups = Evaluator(self.mapping.groups, self.scope_mode, assignments, self.context)
            await self._sync(target, groups, self._to_evaluate(snapshot.groups))
            await self._sync_memberships(target, snapshot)
        await self._delete_missing(target, "user", snapshot.users, self.mapping.users)
        if self.mapping.groups.enabled:
            await self._delete_missing(target, "group", snapshot.groups, self.mapping.groups)

    def _to_evaluate(self, objects: Mapping[str, SourceObject]) -> Mapping[str, SourceObject]:
        """Everything, or in an incremental cycle that knows what changed, only that."""
        if self.changed is None and not self.waiting:
            return objects
        pool = objects if self.changed is None else (a for a in self.changed if a in objects)
        subset = {anchor: objects[anchor] for anchor in pool if anchor not in self.waiting}
        escrowed = sum(1 for anchor in self.waiting if anchor in objects)
        self.counts["escrowed"] += escrowed
        self.counts["unchanged"] += len(objects) - len(subset) - escrowed
        return subset

    def _stage(self, removals: list[guards.Removal]) -> None:
        """Past the job's deletion threshold: nothing is sent, every would-be removal is logged as a
        staged action (Entra's ``StagedDelete``), and the cycle stops with ``TooManyDeletes``."""
        events = guards.staged_events(removals)
        if not self.preview:
            with self.db.write() as conn:
                write_events(conn, self.job_id, self.cycle_id, events)
        else:
            self.events.extend(events)
        self.counts["staged"] += len(events)
        raise CycleAborted(
            f"deletion threshold: this cycle would disable or delete {len(removals)} objects, more than the job's "
            f"threshold of {self.deletion_threshold}; nothing was removed. If that is right: identity-sync job "
            "restart JOB --reset force-deletes; if not, fix the source or the scoping and run again",
            "TooManyDeletes")

    def _check_stop(self) -> None:
        """An object boundary: stop here if the scheduler is shutting down (resumed next cycle)."""
        if self.should_stop is not None and self.should_stop():
            raise CycleAborted("interrupted: the engine is shutting down; the next cycle resumes", "Interrupted")

    def _resolvable(self, obj: SourceObject, path: str) -> bool:
        """Whether a reference left unset in the first pass can be set now: its object was linked
        meanwhile (for a Direct mapping; an expression's reference is always tried again)."""
        item = self.mapping.users.mapping_for(path)
        if item is None or item.source is None:
            return True
        return obj.attributes.get(item.source) in self.targets

    # -- users and groups ----------------------------------------------------------------------

    async def _sync(self, target: Target, evaluator: Evaluator, objects: Mapping[str, SourceObject], *,
                    reference_pass: bool = False) -> dict[str, list[str]]:
        mapping = evaluator.mapping
        object_type = mapping.object_type
        index = self.store.index(object_type)
        self.targets.update({anchor: link.target_id for anchor, link in index.items()})
        self.owners[object_type] = {link.target_id: anchor for anchor, link in index.items()}
        if self.changed is not None and not reference_pass:
            # Objects not evaluated are as the last cycle left them: provisioned and active unless
            # disabled (the memberships phase counts on knowing which members are live).
            live = self.active_users if object_type == "user" else self.live_groups
            live.update(a for a, link in index.items() if a not in self.changed and link.digest != DISABLED_DIGEST)
        self.progress.begin("users" if object_type == "user" else "groups", len(objects))
        if self.kind == "initial" and not reference_pass and len(objects) - len(index) >= INDEX_THRESHOLD:
            await target.read_index(mapping)
        deferred: dict[str, list[str]] = {}
        claimed: dict[tuple[str, str], str] = {}
        batch: list[Evaluation] = []
        ordered = managers_first(objects) if object_type == "user" else [(0, a) for a in objects]
        level = 0
        for depth, anchor in ordered:
            if depth != level and batch:
                # The next level's references point into this batch: export it first.
                await self._export_batch(target, mapping, batch, index)
                batch = []
            level = depth
            obj = objects[anchor]
            linked = index.get(anchor)
            evaluation = evaluator.evaluate(obj, targets=self.targets)
            if not evaluation.soft_deleted:
                (self.active_users if object_type == "user" else self.live_groups).add(anchor)
            if evaluation.unresolved and not reference_pass:
                deferred[anchor] = evaluation.unresolved
            if not self._needs_export(evaluation, linked, mapping, claimed):
                self.progress.advance()
                continue
            batch.append(evaluation)
            if len(batch) >= BATCH:
                self._check_stop()
                await self._export_batch(target, mapping, batch, index)
                batch = []
        if batch:
            await self._export_batch(target, mapping, batch, index)
        return deferred

    def _needs_export(self, evaluation: Evaluation, linked: LinkIndex | None, mapping: ObjectMapping,
                      claimed: dict[tuple[str, str], str]) -> bool:
        if evaluation.error is not None:
            return True  # logged as a failure by the export step
        if linked is None:
            if evaluation.soft_deleted:
                self.counts["out_of_scope"] += 1
                # Never provisioned, nothing to disable (§1.4: disabled users are not provisioned);
                # on demand, the operator asked about this very object: say why nothing happens.
                return self.kind == "on-demand"
            for item in mapping.matching[:1]:
                value = evaluation.desired.get(item.target)
                if isinstance(value, str):
                    key = (item.target, value.lower())
                    if key in claimed:
                        evaluation.error = _duplicate_source(item.target, value, claimed[key])
                        return True
                    claimed[key] = evaluation.anchor
            return True
        if evaluation.soft_deleted and evaluation.scope_lost and self.mapping.skip_out_of_scope_deletions:
            self.counts["unchanged"] += 1
            return False  # §4.2 SkipOutOfScopeDeletions
        if self.kind == "incremental" and evaluation.digest == linked.digest:
            self.counts["unchanged"] += 1
            return False
        return True

    async def _export_batch(self, target: Target, mapping: ObjectMapping, batch: list[Evaluation],
                            index: dict[str, LinkIndex]) -> None:
        exported = self.store.exported(mapping.object_type, [e.anchor for e in batch if e.anchor in index])
        outcomes = await asyncio.gather(
            *(self._export_one(target, mapping, e, index.get(e.anchor), exported.get(e.anchor)) for e in batch),
            return_exceptions=True)
        aborted: BaseException | None = None
        results: list[_Outcome] = []
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                aborted = aborted or outcome
            else:
                results.append(outcome)
        self._save(mapping.object_type, results)
        owners = self.owners[mapping.object_type]
        for result in results:
            anchor = result.event.source_id if result.event is not None else None
            for gone in (result.takes_over, anchor if result.unlink else None):
                if gone is not None and gone in index:
                    owners.pop(index.pop(gone).target_id, None)
                    self.targets.pop(gone, None)
            if result.link is not None:
                index[result.link.anchor] = LinkIndex(result.link.target_id, result.link.digest)
                self.targets[result.link.anchor] = result.link.target_id
                owners[result.link.target_id] = result.link.anchor
        self.progress.advance(len(batch))
        if aborted is not None:
            raise aborted

    async def _export_one(self, target: Target, mapping: ObjectMapping, evaluation: Evaluation,
                          linked: LinkIndex | None, exported: dict[str, Value] | None) -> _Outcome:
        started = time.monotonic()
        obj = evaluation.obj
        event = ProvisioningEvent(obj.object_type, obj.anchor, obj.display)
        event.step("import", "success", f"Imported {obj.object_type} '{obj.display}' from the source",
                   attributes=len(obj.attributes))
        event.step("scoping", "success", "in scope" if evaluation.decision.in_scope else "out of scope",
                   conditions=evaluation.decision.details)
        outcome = _Outcome(event)
        try:
            if evaluation.error is not None:
                event.fail(evaluation.error.error_code, str(evaluation.error))
                return outcome
            with _object_failure(event):
                await self._export(target, mapping, evaluation, linked, exported, outcome)
        finally:
            event.duration_ms = int((time.monotonic() - started) * 1000)
            self.counts["failed" if event.status == "failure" else
                        "skipped" if event.status == "skipped" else _count_key(event.action)] += 1
        return outcome

    async def _export(self, target: Target, mapping: ObjectMapping, evaluation: Evaluation,
                      linked: LinkIndex | None, exported: dict[str, Value] | None, outcome: _Outcome) -> None:
        event = outcome.event
        assert event is not None and evaluation.computed is not None
        rt = mapping.resource_type
        paths = [m.target for m in mapping.mappings if m.target != "members"]
        if linked is not None:
            try:
                current = exported
                if self.kind != "incremental" or current is None:
                    resource = await target.get(rt, linked.target_id)
                    current = None if resource is None else current_values(resource, paths)
                if current is not None:
                    event.step("matching", "success", f"linked to target object {linked.target_id}")
                    await self._update(target, mapping, evaluation, linked.target_id, current, outcome)
                    return
            except TargetError as exc:
                if exc.error_code != "InvalidAnchor":
                    raise
            # InvalidAnchor (§1.3): the linked object is gone from the target; match it again, and
            # forget the memberships exported with the old object.
            event.step("matching", "warning", f"linked object {linked.target_id} no longer exists in the target")
            outcome.unlink = True
        if evaluation.soft_deleted:
            event.status, event.reason = "skipped", "out of scope and not in the target"
            event.step("processing", "skipped", "not provisioned: out of scope, disabled or soft-deleted")
            return
        match = await target.match(mapping, evaluation.desired)
        if match.no_value:
            event.fail("ImportSkipped", "no value for any matching attribute")
            event.step("matching", "failure", "no matching attribute has a value", attempts=match.details)
            return
        if match.duplicates:
            event.fail("DuplicateTargetEntries", f"{match.duplicates} target objects match")
            event.step("matching", "failure", "several target objects match", attempts=match.details)
            return
        if match.resource is None:
            event.step("matching", "success", "no target object matches: create", attempts=match.details)
            await self._create(target, mapping, evaluation, outcome)
            return
        target_id = str(match.resource["id"])
        if not self._may_link(mapping.object_type, evaluation.anchor, target_id, outcome):
            return
        event.step("matching", "success", f"matched target object {target_id}", attempts=match.details)
        await self._update(target, mapping, evaluation, target_id, current_values(match.resource, paths), outcome)

    def _may_link(self, object_type: ObjectType, anchor: str, target_id: str, outcome: _Outcome) -> bool:
        """A matched target object already linked to another source object: if that one is still in
        the source, both carry the same matching value (``DuplicateSourceEntries``: never link two
        source objects to one target object, whose DELETE would then take the other's with it); if
        it is gone (a re-hire, a group re-created under a new id), the link moves to this object
        and the old one is not deleted."""
        owner = self.owners[object_type].get(target_id)
        if owner is None or owner == anchor:
            return True
        assert outcome.event is not None and self.snapshot is not None
        present = self.snapshot.users if object_type == "user" else self.snapshot.groups
        if owner in present:
            outcome.event.fail("DuplicateSourceEntries", f"target object {target_id} is already linked to source "
                                                         f"object {owner}, which has the same matching value")
            return False
        outcome.takes_over = owner
        outcome.event.step("matching", "success", f"takes over target object {target_id} from source object "
                                                  f"{owner}, which is gone from the source")
        return True

    async def _create(self, target: Target, mapping: ObjectMapping, evaluation: Evaluation, outcome: _Outcome) -> None:
        event = outcome.event
        assert event is not None and evaluation.computed is not None
        if "create" not in mapping.actions:
            event.status, event.action, event.reason = "skipped", "create", "the Create action is off"
            return
        try:
            # Defaults and "Only during creation" mappings flow here, and only here (§2.1).
            values = evaluation.evaluator.creation_values(evaluation, self.targets)
        except MappingEvaluationError as exc:
            event.fail(exc.error_code, str(exc))
            return
        try:
            target_id = await target.create(mapping.resource_type, values)
        except TargetError as exc:
            if exc.error_code != "EntryConflict" and not exc.maybe_applied:
                raise
            # A create that timed out may have been applied (the client never sends it twice), or
            # the object appeared meanwhile and the target answered 409: find it.
            match = await target.match(mapping, evaluation.desired)
            if match.resource is None:
                raise
            target_id = str(match.resource["id"])
            if self._may_link(mapping.object_type, evaluation.anchor, target_id, outcome):
                await self._update(target, mapping, evaluation, target_id,
                                   current_values(match.resource, list(values)), outcome)
            return
        event.action, event.target_id = "create", target_id
        redacted = evaluation.computed.redacted
        event.modified = [{"displayName": p, "oldValue": None, "newValue": shown(p, v, redacted)}
                          for p, v in values.items()]
        event.step("export", "success", f"created {mapping.resource_type} {target_id}")
        # In a preview the link points at PREVIEW_ID (never stored), so that references to this
        # object and its memberships show as they would.
        outcome.link = Link(mapping.object_type, evaluation.anchor, target_id, evaluation.digest,
                            stored_form(values, redacted))

    async def _update(self, target: Target, mapping: ObjectMapping, evaluation: Evaluation, target_id: str,
                      current: dict[str, Value], outcome: _Outcome) -> None:
        event = outcome.event
        assert event is not None and evaluation.computed is not None
        computed = evaluation.computed
        event.target_id = target_id
        multi = frozenset(m.target for m in mapping.mappings if m.multi_valued)
        references = frozenset(p for p in computed.references if p != "members" and p not in evaluation.unresolved)
        changes = diff(evaluation.desired, current, references=references, redacted=computed.redacted,
                       multi_valued=multi)
        if evaluation.soft_deleted:
            changes = [c for c in changes if c.path == "active"]  # a disabled object is managed no further
        state = stored_form({**current, **{c.path: c.value for c in changes if c.value is not None}},
                            computed.redacted)
        for change in changes:
            if change.value is None:
                state.pop(change.path, None)
        link = Link(mapping.object_type, evaluation.anchor, target_id,
                    DISABLED_DIGEST if evaluation.soft_deleted else evaluation.digest,
                    state if evaluation.soft_deleted else stored_form(evaluation.desired, computed.redacted))
        if not changes:
            event.action, event.status, event.reason = "other", "skipped", "RedundantExport"
            event.step("processing", "skipped", "the source and the target already match (RedundantExport)")
            outcome.link = link
            return
        if "update" not in mapping.actions:
            event.action, event.status, event.reason = "update", "skipped", "the Update action is off"
            return
        await target.update(mapping.resource_type, target_id, changes)
        disabling = any(c.path == "active" and c.value is False for c in changes)
        event.action = "disable" if disabling else "update"
        event.modified = [{"displayName": c.path, "oldValue": shown(c.path, current.get(c.path), computed.redacted),
                           "newValue": shown(c.path, c.value, computed.redacted)} for c in changes]
        event.step("export", "success", f"{event.action}d {mapping.resource_type} {target_id}",
                   attributes=[c.path for c in changes])
        outcome.link = link

    # -- memberships ---------------------------------------------------------------------------

    async def _sync_memberships(self, target: Target, snapshot: SourceSnapshot) -> None:
        """Per provisioned group: add the members the mapping wants and the target lacks, remove
        the ones it no longer wants, in batches (§1.5). A member is wanted when it is a user that
        is provisioned and active, or a group that is provisioned. Several groups are updated at
        once (one group's batches one after the other: targets lock a group per PATCH)."""
        anchors = [a for a in snapshot.groups if a in self.live_groups and a in self.targets]
        if self.changed is not None:
            # Only groups that changed, or have a member that did (it may have come or gone).
            changed = self.changed
            anchors = [a for a in anchors
                       if a in changed or any(m in changed for m in snapshot.groups[a].attributes.get("members") or ())]
        self.progress.begin("memberships", len(anchors))
        for start in range(0, len(anchors), GROUPS_AT_ONCE):
            self._check_stop()
            chunk = [snapshot.groups[a] for a in anchors[start:start + GROUPS_AT_ONCE]]
            exported = self.store.memberships(g.anchor for g in chunk)
            results = await asyncio.gather(*(self._sync_group(target, g, exported.get(g.anchor, set()))
                                             for g in chunk), return_exceptions=True)
            done = [r for r in results if isinstance(r, _MemberChange)]
            if not self.preview:
                with self.db.write() as conn:
                    if self.lease is not None:
                        self.lease.renew(conn)
                    for change in done:
                        if change.gone:
                            self.store.remove_links(conn, "group", [change.group])
                            self.store.forget_memberships(conn, [change.group])
                        elif change.event.status != "failure":
                            self.store.add_memberships(conn, change.group, change.add)
                            self.store.remove_memberships(conn, change.group, change.remove)
            self._save("group", [_Outcome(change.event) for change in done])
            self.progress.advance(len(chunk))
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                raise errors[0]

    async def _sync_group(self, target: Target, group: SourceObject, have: set[str]) -> _MemberChange | None:
        members = group.attributes.get("members") or []
        wanted = {m for m in members if m in self.targets and (m in self.active_users or m in self.live_groups)}
        add, remove = sorted(wanted - have), sorted(have - wanted)
        if not add and not remove:
            return None
        group_id = self.targets[group.anchor]
        event = ProvisioningEvent("group", group.anchor, group.display, action="update", target_id=group_id)
        started = time.monotonic()
        with _object_failure(event):
            await target.remove_members(group_id, [self.targets[m] for m in remove if m in self.targets])
            await target.add_members(group_id, [self.targets[m] for m in add])
        event.duration_ms = int((time.monotonic() - started) * 1000)
        if event.status == "failure":
            self.counts["failed"] += 1
            # A group gone from the target: drop its link, so that the next cycle creates it again.
            return _MemberChange(group.anchor, add, remove, event, gone=event.error_code == "InvalidAnchor")
        self.counts["updated"] += 1
        self.counts["members_added"] += len(add)
        self.counts["members_removed"] += len(remove)
        event.modified = [{"displayName": "members", "oldValue": f"{len(remove)} removed" if remove else None,
                           "newValue": f"{len(add)} added" if add else None}]
        event.step("referenceResolution", "success", f"members: {len(add)} added, {len(remove)} removed",
                   added=add[:50], removed=remove[:50])
        return _MemberChange(group.anchor, add, remove, event)

    # -- deletions -----------------------------------------------------------------------------

    async def _delete_missing(self, target: Target, object_type: ObjectType, objects: Mapping[str, SourceObject],
                              mapping: ObjectMapping) -> None:
        """Objects linked but gone from the (complete) read were hard-deleted: ``DELETE`` them.
        Groups that left scope are deleted too (they cannot be disabled)."""
        index = self.store.index(object_type)
        gone = [a for a in index if a not in objects]
        if object_type == "group" and not self.mapping.skip_out_of_scope_deletions:
            gone += [a for a in index if a in objects and a not in self.live_groups]
        self.progress.begin("deletions", len(gone))
        if "delete" not in mapping.actions:
            self.counts["skipped"] += len(gone)
            self.progress.advance(len(gone))
            return
        for start in range(0, len(gone), BATCH):
            self._check_stop()
            chunk = gone[start:start + BATCH]
            outcomes = await asyncio.gather(*(self._delete_one(target, mapping, objects.get(a), a, index[a])
                                              for a in chunk), return_exceptions=True)
            errors = [o for o in outcomes if isinstance(o, BaseException)]
            done = [o for o in outcomes if isinstance(o, _Outcome)]
            self._save(object_type, done)
            if not self.preview:
                with self.db.write() as conn:
                    for outcome in done:
                        if outcome.unlink and outcome.event is not None and object_type == "group":
                            self.store.forget_group(conn, outcome.event.source_id)
            self.progress.advance(len(chunk))
            if errors:
                raise errors[0]

    async def _delete_one(self, target: Target, mapping: ObjectMapping, obj: SourceObject | None, anchor: str,
                          link: LinkIndex) -> _Outcome:
        name = obj.display if obj is not None else anchor
        event = ProvisioningEvent(mapping.object_type, anchor, name, action="delete", target_id=link.target_id)
        event.step("import", "success", "gone from the source (hard-deleted)" if obj is None else "out of scope")
        started = time.monotonic()
        outcome = _Outcome(event)
        with _object_failure(event):
            await target.delete(mapping.resource_type, link.target_id)
        if event.status == "failure":
            self.counts["failed"] += 1
        else:
            event.step("export", "success", f"deleted {mapping.resource_type} {link.target_id}")
            self.counts["deleted"] += 1
            outcome.unlink = True
        event.duration_ms = int((time.monotonic() - started) * 1000)
        return outcome

    # -- records -------------------------------------------------------------------------------

    def _save(self, object_type: ObjectType, outcomes: Iterable[_Outcome]) -> None:
        outcomes = list(outcomes)
        events = [o.event for o in outcomes if o.event is not None]
        if self.preview or self.kind == "on-demand":
            self.events.extend(events)  # what the preview and on-demand provisioning report
        if self.preview:
            return
        failed = {e.source_id: e.error_code or "Unknown" for e in events if e.status == "failure"}
        self.again.update(failed)
        links = [o.link for o in outcomes if o.link is not None]
        void = [o.event.source_id for o in outcomes if o.unlink and o.event is not None]
        void += [o.takes_over for o in outcomes if o.takes_over is not None]
        with self.db.write() as conn:
            if self.lease is not None:
                self.lease.renew(conn)
            self.store.remove_links(conn, object_type, void)
            # Memberships exported with a void link were exported to an object that is gone (or now
            # someone else's): forget them, so that the memberships phase adds them again.
            self.store.forget_memberships(conn, void)
            self.store.save_links(conn, links)
            write_events(conn, self.job_id, self.cycle_id, events)
            self.escrows.record(conn, self.escrowed, failed, (e.source_id for e in events if e.status != "failure"),
                                self.clock())
            now = time.monotonic()
            if now - self._progress_saved >= PROGRESS_EVERY_SECONDS:
                # The running cycle's numbers, for `job show` and the console of another process.
                self._progress_saved = now
                conn.execute(sa.update(engine_cycles).where(engine_cycles.c.id == self.cycle_id).values(
                    counts={**self._counts(self.counts), "progress": self.progress.as_dict()}))

    def _record_start(self) -> None:
        if self.preview:
            return
        with self.db.write() as conn:
            conn.execute(sa.insert(engine_cycles).values(id=self.cycle_id, job_id=self.job_id, kind=self.kind,
                                                         state="running", started_at=now_text(), counts={}))

    def _record_end(self, result: CycleResult) -> None:
        if self.preview:
            return
        counts = {**self._counts(result.counts), "imported": int(self.source_read.get("entries", 0))}
        with self.db.write() as conn:
            conn.execute(sa.update(engine_cycles).where(engine_cycles.c.id == self.cycle_id).values(
                state=result.state, ended_at=now_text(), counts=counts, error=result.error))

    @staticmethod
    def _counts(counts: Counter[str]) -> dict[str, int]:
        return {key: counts.get(key, 0) for key in (*COUNT_KEYS, *EXTRA_COUNT_KEYS)}

    def _result(self, started: float, target: Target, state: str, error: str | None) -> CycleResult:
        requests = dict(getattr(target.client, "requests_sent", {}) or {})
        return CycleResult(self.cycle_id, self.kind, self.counts, time.monotonic() - started, state, error,
                           list(self.events), requests, self.watermark, list(self.warnings), set(self.again),
                           dict(self.source_read))


@contextmanager
def _object_failure(event: ProvisioningEvent) -> Iterator[None]:
    """A target error about one object is that object's failure, logged and counted; an error about
    the whole job (unreachable, 401/403, not SCIM) stops the cycle."""
    try:
        yield
    except TargetError as exc:
        if exc.job_level:
            raise
        event.fail(exc.error_code, exc.detail or str(exc))


def _count_key(action: str) -> str:
    return {"create": "created", "update": "updated", "disable": "disabled", "delete": "deleted"}.get(action, "skipped")


def _duplicate_source(path: str, value: str, first: str) -> MappingEvaluationError:
    return MappingEvaluationError(path, f"{value!r} is also the value of source object {first}",
                                  error_code="DuplicateSourceEntries")
