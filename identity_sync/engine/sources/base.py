"""What every source offers the cycle."""

from __future__ import annotations

from typing import Protocol

from identity_sync.engine.model import SourceObject, SourceSnapshot


class Source(Protocol):
    """A directory the engine reads from. ``read`` returns a complete snapshot or raises
    :class:`~identity_sync.engine.model.SourceError`; it never returns a partial one."""

    #: ``csv:DIR`` and the like: how the job names the source (no secret in it).
    description: str

    def read(self) -> SourceSnapshot: ...

    def get(self, anchor: str) -> SourceObject | None:
        """One object by anchor (on-demand provisioning), read fresh."""
        ...
