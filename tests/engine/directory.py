"""Write a ``csv:DIR`` export from Python lists, for every engine test.

    write_directory(tmp_path, [user("u1"), user("u2", manager="u1")], [group("g1", members=["u1"])],
                    assignments=["g1"])

writes ``users.csv``, ``groups.csv`` and (when ``assignments`` is given) ``assignments.csv``
exactly in the public format of ``identity_sync.engine.sources.csv_source``: the header is
``id`` followed by every other key in order of first appearance, lists are joined with ``;``,
booleans are ``true``/``false``, ``None`` is an empty cell, and cells are quoted only when they
must be (RFC 4180, LF line ends, a final line break).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


def user(anchor: str, **attributes: Any) -> dict[str, Any]:
    """A user with a UPN, a display name and ``accountEnabled`` derived from ``anchor``; keyword
    arguments override them (``mail=None`` leaves the cell empty)."""
    return {"id": anchor, "userPrincipalName": f"{anchor}@example.com", "displayName": f"User {anchor}",
            "accountEnabled": True, **attributes}


def group(anchor: str, members: Sequence[str] = (), **attributes: Any) -> dict[str, Any]:
    """A group named after ``anchor`` with the given direct ``members`` (ids of users or groups)."""
    return {"id": anchor, "displayName": f"Group {anchor}", "members": list(members), **attributes}


def cell(value: Any) -> str:
    """How one value is written in a cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ";".join(str(part) for part in value)
    return str(value)


def write_table(path: Path, rows: Iterable[Mapping[str, Any]], first_columns: Sequence[str] = ("id",)) -> Path:
    """One CSV file whose header is ``first_columns`` then every other key of ``rows``."""
    rows = list(rows)
    columns = list(first_columns)
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    with open(path, "w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([cell(row.get(column)) for column in columns])
    return path


def write_directory(path: Path, users: Iterable[Mapping[str, Any]], groups: Iterable[Mapping[str, Any]] = (),
                    assignments: Iterable[str] | None = None) -> Path:
    """Write the export into ``path`` (created if needed) and return ``path``. Files of an earlier
    export there are replaced; ``assignments=None`` removes an existing ``assignments.csv``."""
    path.mkdir(parents=True, exist_ok=True)
    write_table(path / "users.csv", users)
    write_table(path / "groups.csv", groups, ("id", "displayName", "members"))
    assignments_file = path / "assignments.csv"
    if assignments is None:
        assignments_file.unlink(missing_ok=True)
    else:
        write_table(assignments_file, ({"principalId": principal} for principal in assignments), ("principalId",))
    return path
