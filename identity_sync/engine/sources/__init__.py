"""Sources the engine reads from, named by a job's ``--source`` specification."""

from __future__ import annotations

from pathlib import Path

from identity_sync.engine.sources.base import Source

KINDS = ("csv",)


class SourceSpecError(ValueError):
    """A ``--source`` that names no source we can read."""


def open_source(spec: str) -> Source:
    """``csv:DIR`` → the CSV export in DIR (more kinds come with issue 12)."""
    kind, _, rest = spec.partition(":")
    if kind == "csv" and rest:
        from identity_sync.engine.sources.csv_source import CsvSource

        directory = Path(rest).expanduser()
        if not directory.is_dir():
            raise SourceSpecError(f"source {spec!r}: {rest} is not a directory")
        return CsvSource(directory)
    raise SourceSpecError(f"source {spec!r}: expected one of {', '.join(k + ':…' for k in KINDS)} (e.g. csv:DIR)")
