"""The PATCH shapes of each SCIM client dialect the engine can speak.

Entra's provisioning service speaks two dialects, chosen per tenant by a flag on the Tenant URL
(entra-scim-requests.md §2, provisioning-engine.md §1.4 "The SCIM wire format the Entra client
emits"); a third one is plain RFC 7644 for targets that accept nothing else. Creates are the same
in all three (:func:`identity_sync.engine.client.documents.build`: JSON booleans, ``manager`` as
``{"value": id}``, entra-scim-requests.md §1.4 c); they differ only in PATCH:

``entra`` — the current client, with ``aadOptscim062020`` (entra-scim-requests.md §2 table):
    * lower-case ``op`` (``add``/``replace``/``remove``);
    * ``active`` is a JSON boolean: ``{"op":"replace","path":"active","value":false}`` (§1.4 i);
    * several replaces are folded: each filtered path (``emails[type eq "work"].value``) keeps its
      own op, the plain ones travel in one path-less ``replace`` whose value object is keyed by
      path — dotted sub-attributes and full extension URNs (§1.4 f);
    * ``manager`` is the bare target id (§1.4 g, "current Entra");
    * members are removed one filtered op each: ``{"op":"remove","path":"members[value eq \\"id\\"]"}`` (§1.5).

``entra-legacy`` — without the flag (also what on-demand provisioning sends, §2 caveats):
    * capitalised ``op`` (``Add``/``Replace``/``Remove``, §1.4 d);
    * ``active`` is the string ``"True"``/``"False"`` (§1.4 i);
    * one ``Replace`` per path, never folded;
    * ``manager`` is the bare target id;
    * members are removed with ``{"op":"Remove","path":"members","value":[{"value":id}, …]}`` (§1.5) —
      which a strict RFC 7644 server reads as "remove every member" or refuses (scim2-server: 400).

``rfc`` — strict RFC 7644 §3.5.2:
    * lower-case ``op``, JSON booleans, one op per path;
    * ``manager`` as the complex value ``{"value": id}`` (RFC 7643 §4.3);
    * a filtered path is replaced in place when its element exists; RFC 7644 §3.5.2.3 makes a
      replace whose filter matches nothing ``400 noTarget`` (scim2-server does), so after such an
      answer the client reads the resource and replaces the whole multi-valued attribute
      (:func:`whole_attribute_operations`);
    * members are removed with ``members[value eq "id"]`` paths, as in ``entra``.

In every dialect an attribute is replaced (never ``add``-ed, as Entra does when it believes the
target has no value: a :class:`~identity_sync.engine.model.Change` does not say what the target
held, and RFC 7644 §3.5.2.3 makes a replace of an absent attribute an add) and a ``None`` value is
a ``remove`` of the path. Member additions are ``add`` ``members`` with ``[{"value": id}, …]``
everywhere (§1.5).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from identity_sync.engine.client import documents
from identity_sync.engine.model import Change, Value

__all__ = ["DIALECTS", "PATCH_SCHEMA", "Dialect", "get_dialect", "patch_body", "whole_attribute_operations"]

DIALECTS = ("entra", "entra-legacy", "rfc")
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

Operation = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Dialect:
    """One dialect's choices; the module docstring says where each comes from."""

    name: str
    capitalised_ops: bool
    active_as_string: bool
    fold_replaces: bool
    bare_reference: bool
    member_removal: Literal["filter", "value-list"]

    def op(self, name: str) -> str:
        """The ``op`` value for ``add``/``replace``/``remove`` in this dialect."""
        return name.capitalize() if self.capitalised_ops else name

    def operations(self, changes: Sequence[Change]) -> list[Operation]:
        """The PATCH operations that make the target hold ``changes``."""
        pathed: list[Operation] = []
        folded: dict[str, Any] = {}
        seen: set[str] = set()
        for change in changes:
            where = documents.locate(change.path)
            if where.urn is None and where.attr.lower() == "members":
                raise ValueError(f"attribute path {change.path!r}: use add_members/remove_members for members")
            if change.path in seen:
                raise ValueError(f"attribute path {change.path!r} appears twice in one update")
            seen.add(change.path)
            if change.value is None:
                pathed.append({"op": self.op("remove"), "path": change.path})
            elif self.fold_replaces and not where.filtered:
                folded[change.path] = self.wire_value(where, change.value)
            else:
                pathed.append({"op": self.op("replace"), "path": change.path,
                               "value": self.wire_value(where, change.value)})
        if len(folded) == 1:
            # A single plain replace keeps its path, as Entra sends it (§2: "Add single-valued string").
            ((path, value),) = folded.items()
            pathed.append({"op": self.op("replace"), "path": path, "value": value})
        elif folded:
            pathed.append({"op": self.op("replace"), "value": folded})
        return pathed

    def wire_value(self, where: documents.Location, value: Value) -> Any:
        """``value`` as this dialect writes it in a PATCH."""
        if where.urn is None and where.attr.lower() == "active" and where.sub is None and isinstance(value, bool):
            return ("True" if value else "False") if self.active_as_string else value
        if where.sub is None and where.element is None and where.attr.lower() in documents.REFERENCE_ATTRIBUTES:
            return value if self.bare_reference else {"value": value}
        return copy.copy(value)

    def add_members(self, member_ids: Sequence[str]) -> list[Operation]:
        """The operations adding ``member_ids`` to a group (one op, a value list)."""
        return [{"op": self.op("add"), "path": "members", "value": [{"value": m} for m in member_ids]}]

    def remove_members(self, member_ids: Sequence[str]) -> list[Operation]:
        """The operations removing exactly ``member_ids`` from a group, in this dialect's shape."""
        if self.member_removal == "value-list":
            return [{"op": self.op("remove"), "path": "members", "value": [{"value": m} for m in member_ids]}]
        return [{"op": self.op("remove"), "path": f"members[value eq {json.dumps(m)}]"} for m in member_ids]


_DIALECTS = {
    "entra": Dialect("entra", capitalised_ops=False, active_as_string=False, fold_replaces=True,
                     bare_reference=True, member_removal="filter"),
    "entra-legacy": Dialect("entra-legacy", capitalised_ops=True, active_as_string=True, fold_replaces=False,
                            bare_reference=True, member_removal="value-list"),
    "rfc": Dialect("rfc", capitalised_ops=False, active_as_string=False, fold_replaces=False,
                   bare_reference=False, member_removal="filter"),
}


def get_dialect(name: str) -> Dialect:
    """The dialect called ``name``; ``ValueError`` listing the known ones otherwise."""
    try:
        return _DIALECTS[name]
    except KeyError:
        raise ValueError(f"unknown SCIM dialect {name!r}: expected one of {', '.join(DIALECTS)}") from None


def patch_body(operations: Sequence[Operation]) -> dict[str, Any]:
    """A PatchOp request body (RFC 7644 §3.5.2) carrying ``operations``."""
    return {"schemas": [PATCH_SCHEMA], "Operations": list(operations)}


def whole_attribute_operations(dialect: Dialect, changes: Sequence[Change],
                               resource: Mapping[str, Any]) -> list[Operation]:
    """Operations for ``changes`` that never use a filtered path: each multi-valued attribute a
    filtered change touches is computed from ``resource`` (the target's current document) and
    replaced whole — what a strict RFC 7644 server accepts when the element is missing."""
    plain = [c for c in changes if not documents.locate(c.path).filtered]
    filtered = [c for c in changes if documents.locate(c.path).filtered]
    scratch: dict[str, Any] = copy.deepcopy(dict(resource))
    touched: dict[str, tuple[str | None, str]] = {}
    for change in filtered:
        documents.set_value(scratch, change.path, change.value)
        where = documents.locate(change.path)
        name = f"{where.urn}:{where.attr}" if where.urn else where.attr
        touched[name.lower()] = (where.urn, where.attr)
    operations = dialect.operations(plain)
    for urn, attr in touched.values():
        name = f"{urn}:{attr}" if urn else attr
        current = documents.extract(scratch, name)
        if current is None:
            operations.append({"op": dialect.op("remove"), "path": name})
        else:
            operations.append({"op": dialect.op("replace"), "path": name, "value": current})
    return operations
