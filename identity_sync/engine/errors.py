"""What stops a cycle as a whole."""

from __future__ import annotations


class CycleAborted(Exception):
    """The cycle could not run or had to stop: the source could not be read completely, a guard
    refused a broken input, or the target refused the job as a whole (unreachable, 401/403, not
    SCIM). One line, and an Entra-like ``error_code``."""

    def __init__(self, message: str, error_code: str) -> None:
        super().__init__(message)
        self.error_code = error_code
