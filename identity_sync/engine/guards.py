"""Guards against broken inputs that are well-formed (invariant 1 of docs/engine.md: a broken
input never becomes mass disables or deletions). Each runs on the complete read, before anything
is sent; a refusal is a :class:`CycleAborted` with one line saying what to do."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass

from identity_sync.engine.errors import CycleAborted
from identity_sync.engine.logs import ProvisioningEvent
from identity_sync.engine.mapping.model import MappingConfig
from identity_sync.engine.model import ObjectType, SourceSnapshot
from identity_sync.engine.pipeline import DISABLED_DIGEST, Evaluator
from identity_sync.engine.state import ConnectorStore

#: Users first, then groups (typed, so that each is an ObjectType).
OBJECT_TYPES: tuple[ObjectType, ObjectType] = ("user", "group")

#: The deletion guard: more than this many objects of a type, and more than this share of those
#: provisioned, missing from the source stop the cycle.
DELETE_GUARD_COUNT = 10
DELETE_GUARD_SHARE = 0.2


def canonical_scoping(mapping: MappingConfig, snapshot: SourceSnapshot) -> MappingConfig:
    """The mapping with its scoping filters naming attributes as the source spells them
    (case-insensitively, as Direct mappings do). An attribute the source does not have is a typo
    that would put every object out of scope — disable every user, delete every group — so it is
    refused."""
    known = {"user": snapshot.user_attributes, "group": snapshot.group_attributes}
    mappings = {}
    for object_type in ("user", "group"):
        object_mapping = mapping.for_type(object_type)
        columns = known[object_type]
        if columns is None or not object_mapping.scoping:
            mappings[object_type] = object_mapping
            continue
        spelled = {name.casefold(): name for name in (*columns, "IsSoftDeleted", "objectId")}
        filters = []
        for scoping_filter in object_mapping.scoping:
            clauses = []
            for clause in scoping_filter.clauses:
                actual = spelled.get(clause.attribute.casefold())
                if actual is None:
                    hint = difflib.get_close_matches(clause.attribute, list(spelled.values()), n=1)
                    raise CycleAborted(
                        f"mapping: the {object_type}s' scoping filter '{scoping_filter.title}' names "
                        f"'{clause.attribute}', which {snapshot.description or 'the source'} does not have"
                        + (f" (did you mean '{hint[0]}'?)" if hint else ""), "InvalidScopingFilter")
                clauses.append(dataclasses.replace(clause, attribute=actual))
            filters.append(dataclasses.replace(scoping_filter, clauses=tuple(clauses)))
        mappings[object_type] = dataclasses.replace(object_mapping, scoping=tuple(filters))
    return dataclasses.replace(mapping, users=mappings["user"], groups=mappings["group"])


def check_assignments(scope_mode: str, snapshot: SourceSnapshot, store: ConnectorStore) -> list[str]:
    """An export that assigns nobody, under the "assigned" scope, would disable every user the job
    provisioned: a lost ``assignments.csv`` must not become mass disables. Refused while the job has
    linked objects; a warning (returned) before its first cycle."""
    if scope_mode != "assigned" or snapshot.assigned:
        return []
    linked = store.counts()
    message = "the scope is 'assigned' but the source assigns nobody (no or an empty assignments.csv)"
    if linked["users"] or linked["groups"]:
        raise CycleAborted(f"source: {message}; refusing to disable {linked['users']} provisioned user(s) and "
                           f"delete {linked['groups']} group(s): restore the assignments, or use --scope all",
                           "NoAssignments")
    return [f"{message}: nothing is in scope"]


def check_deletions(snapshot: SourceSnapshot, store: ConnectorStore) -> None:
    """A complete read that lacks many provisioned objects is more likely a truncated or wrong
    export than a wave of departures: past the guard, nothing is deleted until the operator says so
    (``job restart --reset force-deletes``, Entra's "Allow deletes", provisioning-engine.md §4.1)."""
    for object_type in OBJECT_TYPES:
        present = snapshot.users if object_type == "user" else snapshot.groups
        linked = store.anchors(object_type)
        gone = sum(1 for anchor in linked if anchor not in present)
        if gone > DELETE_GUARD_COUNT and gone > DELETE_GUARD_SHARE * len(linked):
            raise CycleAborted(
                f"source: {gone} of the {len(linked)} {object_type}s provisioned are missing from "
                f"{snapshot.description or 'the source'}; refusing to delete them (a truncated export?). If "
                "they are really gone: identity-sync job restart JOB --reset force-deletes", "TooManyDeletes")


@dataclass(frozen=True, slots=True)
class Removal:
    """One disable or delete a cycle would send (the job's deletion threshold counts them)."""

    object_type: ObjectType
    anchor: str
    display: str
    target_id: str
    action: str  # "disable" | "delete"
    why: str


def pending_removals(snapshot: SourceSnapshot, store: ConnectorStore, users: Evaluator, groups: Evaluator,
                     changed: frozenset[str] | None, mapping: MappingConfig) -> list[Removal]:
    """Every disable and delete this cycle would send, before it sends anything (Entra's accidental
    deletions prevention counts both, users and groups: §4.1). Objects an incremental cycle will not
    look at cannot be removed by it, so only ``changed`` ones are decided."""
    removals: list[Removal] = []
    for object_type in OBJECT_TYPES:
        if object_type == "group" and not mapping.groups.enabled:
            continue
        present, evaluator = (snapshot.users, users) if object_type == "user" else (snapshot.groups, groups)
        for anchor, link in store.index(object_type).items():
            if anchor not in present:
                if "delete" in evaluator.mapping.actions:
                    removals.append(Removal(object_type, anchor, anchor, link.target_id, "delete",
                                            "gone from the source"))
                continue
            if link.digest == DISABLED_DIGEST or (changed is not None and anchor not in changed):
                continue
            obj = present[anchor]
            _, soft_deleted, scope_lost = evaluator.decide(obj)
            if not soft_deleted or (scope_lost and mapping.skip_out_of_scope_deletions):
                continue
            action = "disable" if object_type == "user" else "delete"
            removals.append(Removal(object_type, anchor, obj.display, link.target_id, action,
                                    "out of scope, disabled or soft-deleted"))
    return removals


def staged_events(removals: list[Removal]) -> list[ProvisioningEvent]:
    """The removals held back by the deletion threshold, as Entra logs them (``StagedDelete``)."""
    events = []
    for removal in removals:
        event = ProvisioningEvent(removal.object_type, removal.anchor, removal.display, action="stageddelete",
                                  target_id=removal.target_id)
        event.status, event.reason = "skipped", f"held back by the deletion threshold ({removal.action})"
        event.step("processing", "skipped", f"would {removal.action}: {removal.why}")
        events.append(event)
    return events
