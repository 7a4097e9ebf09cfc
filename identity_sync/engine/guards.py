"""Guards against broken inputs that are well-formed (invariant 1 of docs/engine.md: a broken
input never becomes mass disables or deletions). Each runs on the complete read, before anything
is sent; a refusal is a :class:`CycleAborted` with one line saying what to do."""

from __future__ import annotations

import dataclasses
import difflib

from identity_sync.engine.errors import CycleAborted
from identity_sync.engine.mapping.model import MappingConfig
from identity_sync.engine.model import SourceSnapshot
from identity_sync.engine.state import ConnectorStore

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
        object_mapping = mapping.for_type(object_type)  # type: ignore[arg-type]
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
    for object_type, present in (("user", snapshot.users), ("group", snapshot.groups)):
        linked = store.anchors(object_type)  # type: ignore[arg-type]
        gone = sum(1 for anchor in linked if anchor not in present)
        if gone > DELETE_GUARD_COUNT and gone > DELETE_GUARD_SHARE * len(linked):
            raise CycleAborted(
                f"source: {gone} of the {len(linked)} {object_type}s provisioned are missing from "
                f"{snapshot.description or 'the source'}; refusing to delete them (a truncated export?). If "
                "they are really gone: identity-sync job restart JOB --reset force-deletes", "TooManyDeletes")
