"""Progress as numbers (units done / total, by phase), drawn by rich in the CLI, printed in
``--json`` and shown by the console later. Entra's progress bar counts pages (§4.5); ours counts
objects, which is what an operator waiting for a cycle wants to see."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

PHASES = ("read", "users", "groups", "memberships", "deletions")


@dataclass
class Progress:
    phase: str = "read"
    done: int = 0
    total: int = 0
    started: float = field(default_factory=time.monotonic)
    #: Called after every change; the CLI redraws its bar from it.
    listener: Callable[[Progress], None] | None = None

    def begin(self, phase: str, total: int) -> None:
        self.phase, self.done, self.total = phase, 0, total
        self._notify()

    def advance(self, count: int = 1) -> None:
        self.done += count
        self._notify()

    def as_dict(self) -> dict[str, object]:
        return {"phase": self.phase, "done": self.done, "total": self.total,
                "seconds": round(time.monotonic() - self.started, 3)}

    def _notify(self) -> None:
        if self.listener is not None:
            self.listener(self)
