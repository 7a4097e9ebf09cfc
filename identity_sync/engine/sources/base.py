"""What every source offers the cycle (issue 12, item 5): a new source is one module that
implements :class:`Source` and is named in ``sources/__init__.py``.

Two ways to read:

* ``read()`` — a **complete** snapshot, or :class:`~identity_sync.engine.model.SourceError`; never a
  partial one (invariant 1 of docs/engine.md: an incomplete read never deletes). Its ``watermark``
  is the source's position, handed back to ``read_changes`` next cycle.
* ``read_changes(cursor, previous)`` — only what changed since ``cursor``: the objects that are new
  or changed (each **complete**, as it is now), the anchors hard-deleted, and the new cursor.
  ``previous`` is the engine's copy of the source as of ``cursor`` (engine/mirror.py), so a source
  whose server sends partial changes (Graph delta: only changed properties, ``members@delta``) or
  names references by something else than the anchor (LDAP DNs) can complete and resolve them.
  Returns ``None`` when it cannot (the cursor expired, the server offers no change tracking):
  the engine then does a complete read. Raises ``SourceError`` like ``read``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from identity_sync.engine.model import ObjectType, SourceObject, SourceSnapshot


@dataclass(frozen=True, slots=True)
class SourceDelta:
    """What changed since a cursor. ``changed`` objects are complete (every attribute the source
    gives, not only the changed ones); a soft delete is a changed object with ``deletedDateTime``
    (or ``accountEnabled`` false); ``removed`` are hard deletes."""

    changed: Sequence[SourceObject]
    removed: Sequence[tuple[ObjectType, str]]
    #: Anchors assigned to the application now (complete, as in a snapshot), or ``None``.
    assigned: frozenset[str] | None
    #: The source's position after these changes.
    cursor: str
    #: Objects read from the server to produce this delta (for logs and benchmarks).
    entries_read: int = 0


@dataclass(frozen=True, slots=True)
class SourceOptions:
    """Everything a job says about its source besides the ``--source`` specification. Secrets
    (``password``, ``client_secret``, ``certificate_pem``, ``token``) come unsealed from the job's
    credentials and are never logged (``repr=False``)."""

    # LDAP / Active Directory
    bind_dn: str | None = None
    password: str | None = field(default=None, repr=False)
    preset: str | None = None  # "ad" | "openldap" | None (detected from the root DSE)
    ca_file: str | None = None  # PEM bundle for LDAPS / StartTLS verification
    start_tls: bool = False
    user_filter: str | None = None
    group_filter: str | None = None
    # Microsoft Graph / SCIM with OAuth client credentials
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    certificate_pem: str | None = field(default=None, repr=False)
    token_url: str | None = None
    # SCIM with a bearer token
    token: str | None = field(default=None, repr=False)
    # Where Microsoft Graph and its login live (Settings: tests point them at a local server).
    graph_url: str = "https://graph.microsoft.com/v1.0"
    login_url: str = "https://login.microsoftonline.com"
    #: The service principal of the application, for "assigned" scope from Graph app-role assignments.
    service_principal_id: str | None = None
    #: Source attribute names the job's mapping and scoping use (``None``: everything the source has);
    #: a source may use it to ask its server for less ($select, LDAP attribute lists).
    user_attributes: frozenset[str] | None = None
    group_attributes: frozenset[str] | None = None


class Source(Protocol):
    """A directory the engine reads from (see the module docstring)."""

    #: ``csv:DIR``, ``ldap://host:389/dc=example,dc=com``…: how logs name the source (no secret in it).
    description: str
    #: Whether ``read_changes`` can ever return a delta. The engine keeps a copy of the attributes
    #: of a source that can (``previous``); of one that cannot, only digests.
    incremental: bool

    def read(self) -> SourceSnapshot: ...

    def read_changes(self, cursor: str, previous: SourceSnapshot) -> SourceDelta | None: ...

    def get(self, anchor: str) -> SourceObject | None:
        """One object by anchor (on-demand provisioning), read fresh."""
        ...

    def close(self) -> None:
        """Release connections (a no-op for files)."""
        ...
