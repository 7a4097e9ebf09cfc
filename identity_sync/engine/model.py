"""The plain data that flows between the engine's rooms (docs/engine.md).

One object's way through a cycle is ``source → scope → map → match → diff → export → record``;
each step is a function over these values, so the cycle, the preview and on-demand provisioning
are the same pipeline with different ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

ObjectType = Literal["user", "group"]

#: The value of a source attribute or of a computed target attribute: ``None`` (absent: Entra
#: never provisions nulls), a string, a bool, an int, or a list of strings (multi-valued).
Value = Any


@dataclass(frozen=True, slots=True)
class SourceObject:
    """One user or group as the source has it, under Microsoft Graph's attribute names.

    ``attributes`` holds only attributes that have a value (an empty cell is absent). Users may
    carry ``accountEnabled`` (bool), ``deletedDateTime`` (a string: soft-deleted when present) and
    ``manager`` (the manager's anchor); groups carry ``members`` (a list of anchors of users or
    groups). The anchor is immutable: a rename or a move is an update, never delete + create.
    """

    object_type: ObjectType
    anchor: str
    attributes: Mapping[str, Value]

    @property
    def display(self) -> str:
        """How logs name the object: the UPN of a user, the display name of a group."""
        key = "userPrincipalName" if self.object_type == "user" else "displayName"
        return str(self.attributes.get(key) or self.anchor)


@dataclass(frozen=True, slots=True)
class SourceSnapshot:
    """A complete, validated read of the source: everything in it exists, everything missing from
    it was hard-deleted. A source that cannot read *everything* raises ``SourceError`` instead of
    returning a partial snapshot (invariant 1 of docs/engine.md: an incomplete read never deletes).
    """

    users: Mapping[str, SourceObject]
    groups: Mapping[str, SourceObject]
    #: Anchors of the users and groups assigned to the application; ``None`` when the source has
    #: no notion of assignment (then the "assigned" scope falls back to nobody but is reported).
    assigned: frozenset[str] | None
    #: Opaque position of this read (e.g. a digest of the files); stored after a cycle.
    watermark: str
    #: Where the data came from, for logs (never a secret).
    description: str = ""
    #: The attribute names the source can give users / groups (a CSV header), when it knows them:
    #: a scoping filter naming anything else is a typo, refused before it puts everybody out of
    #: scope. ``None``: not known.
    user_attributes: frozenset[str] | None = None
    group_attributes: frozenset[str] | None = None
    #: Anchors of the objects that may differ from what the last completed cycle saw (changed in
    #: the source, assigned or unassigned, a failure to try again): an incremental cycle looks at
    #: no other (engine/mirror.py). ``None``: unknown, every object is evaluated.
    changed: frozenset[str] | None = None


class SourceError(Exception):
    """The source could not be read completely or is malformed. The message is one line that names
    the place, e.g. ``users.csv:14:3: duplicate id 'u-17' (first on line 9)``; nothing is written
    to the target when a read raises it."""


@dataclass(frozen=True, slots=True)
class Change:
    """One attribute to write on a target object: ``path`` is a SCIM attribute path as mappings
    name it (``userName``, ``name.givenName``, ``emails[type eq "work"].value``,
    ``urn:…:enterprise:2.0:User:manager``); ``value`` is the new value, ``None`` to remove it."""

    path: str
    value: Value


@dataclass(slots=True)
class ScopeDecision:
    """Whether an object is in scope, and why (the steps of on-demand provisioning)."""

    in_scope: bool
    #: Human-readable lines, one per condition: "Assigned: true", "Sales: department EQUALS Sales: true".
    details: list[str] = field(default_factory=list)
