"""The pure steps of one object's way through a cycle (docs/engine.md): scope, then map.

Nothing here does I/O, so the cycle, the preview and on-demand provisioning share it exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from identity_sync.engine.mapping.compute import (
    Computed,
    MappingEvaluationError,
    compute_values,
    digest,
    source_attributes,
    stored_form,
)
from identity_sync.engine.mapping.expressions import EvaluationContext
from identity_sync.engine.mapping.model import ObjectMapping
from identity_sync.engine.model import ScopeDecision, SourceObject, Value
from identity_sync.engine.scoping import Assignments, evaluate_scope

#: The digest stored for a disabled object: while it stays disabled nothing is sent, whatever
#: its other attributes do (Entra manages an object out of scope no further, §1.4).
DISABLED_DIGEST = "disabled"


@dataclass
class Evaluation:
    evaluator: Evaluator
    obj: SourceObject
    decision: ScopeDecision
    #: ``IsSoftDeleted``: out of scope, disabled or soft-deleted in the source (§1.4, §3.3).
    soft_deleted: bool
    #: Only the scope was lost (unassigned, scoping filter): what SkipOutOfScopeDeletions spares.
    scope_lost: bool
    computed: Computed | None = None
    #: The target values, references as target ids; what the target should hold after export.
    desired: dict[str, Value] = field(default_factory=dict)
    #: Reference paths whose object is not in the target yet (set in a later pass, §1.6).
    unresolved: list[str] = field(default_factory=list)
    digest: str = ""
    error: MappingEvaluationError | None = None

    @property
    def anchor(self) -> str:
        return self.obj.anchor


class Evaluator:
    """Scope and mapping of one object type, for one cycle (one ``now`` for every expression)."""

    def __init__(self, mapping: ObjectMapping, scope_mode: str, assignments: Assignments,
                 context: EvaluationContext) -> None:
        self.mapping = mapping
        self.scope_mode = scope_mode
        self.assignments = assignments
        self.context = context

    def decide(self, obj: SourceObject) -> tuple[ScopeDecision, bool, bool]:
        """(decision, soft_deleted, scope_lost): the "Determine if in scope" step (§4.6)."""
        details: list[str] = []
        if self.scope_mode == "all":
            assigned = True
            details.append("Scope: sync all users and groups")
        else:
            pool = self.assignments.users if obj.object_type == "user" else self.assignments.groups
            assigned = obj.anchor in pool
            details.append(f"Assigned to the application: {str(assigned).lower()}")
        filters = evaluate_scope(list(self.mapping.scoping), obj.attributes)
        details.extend(filters.details)
        active = True
        if obj.object_type == "user":
            enabled = obj.attributes.get("accountEnabled", True) is not False
            deleted = bool(obj.attributes.get("deletedDateTime"))
            active = enabled and not deleted
            details.append(f"IsActive: {str(active).lower()} (accountEnabled {str(enabled).lower()}, "
                           f"soft-deleted {str(deleted).lower()})")
        in_scope = assigned and filters.in_scope
        decision = ScopeDecision(in_scope and active, details)
        return decision, not decision.in_scope, not in_scope

    def evaluate(self, obj: SourceObject, *, targets: Mapping[str, str]) -> Evaluation:
        """Scope, then the mapping's values with references resolved through ``targets`` (source
        anchor → target id of objects already linked). These are the values an *existing* target
        object should hold: defaults and "Only during creation" mappings are left out; they flow
        only into a create (:meth:`creation_values`), never onto an object that was matched."""
        decision, soft_deleted, scope_lost = self.decide(obj)
        evaluation = Evaluation(self, obj, decision, soft_deleted, scope_lost)
        try:
            computed = compute_values(self.mapping, source_attributes(obj, soft_deleted=soft_deleted), self.context,
                                      creating=False)
        except MappingEvaluationError as exc:
            evaluation.error = exc
            return evaluation
        evaluation.computed = computed
        evaluation.desired = self._resolve(computed, targets, evaluation.unresolved)
        evaluation.digest = DISABLED_DIGEST if soft_deleted else digest(stored_form(evaluation.desired,
                                                                                    computed.redacted))
        return evaluation

    def creation_values(self, evaluation: Evaluation, targets: Mapping[str, str]) -> dict[str, Value]:
        """The body of a create: the values with the defaults and the "Only during creation"
        mappings (§2.1). Raises MappingEvaluationError like :meth:`evaluate`."""
        attributes = source_attributes(evaluation.obj, soft_deleted=evaluation.soft_deleted)
        computed = compute_values(self.mapping, attributes, self.context, creating=True)
        return self._resolve(computed, targets, [])

    @staticmethod
    def _resolve(computed: Computed, targets: Mapping[str, str], unresolved: list[str]) -> dict[str, Value]:
        values: dict[str, Value] = {}
        for path, value in computed.values.items():
            if path in computed.references:
                if path == "members":
                    continue  # memberships have a phase of their own
                target_id = targets.get(value) if isinstance(value, str) else None
                if target_id is None:
                    unresolved.append(path)
                    continue
                value = target_id
            values[path] = value
        return values
