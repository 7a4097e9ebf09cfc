"""The ``csv:DIR`` source: a directory export of users, groups and assignments.

The format (public: HR and directory exports are written to it):

``users.csv`` (required)
    One row per user. The header names Microsoft Graph user properties: ``id`` (required, the
    source anchor), ``userPrincipalName``, ``mail``, ``mailNickname``, ``displayName``,
    ``givenName``, ``surname``, ``jobTitle``, ``department``, ``companyName``, ``employeeId``,
    ``employeeType``, ``officeLocation``, ``streetAddress``, ``city``, ``state``, ``postalCode``,
    ``country``, ``businessPhones`` (``;``-separated), ``mobilePhone``, ``faxNumber``,
    ``preferredLanguage``, ``usageLocation``, ``accountEnabled`` (``true``/``false``, any case),
    ``deletedDateTime`` (non-empty: soft-deleted), ``manager`` (the manager's ``id``),
    ``proxyAddresses`` (``;``-separated), ``extensionAttribute1`` … ``extensionAttribute15``. Any
    other column is a source attribute that mappings can name.
``groups.csv`` (required; header only when there are no groups)
    ``id``, ``displayName``, ``mailNickname``, ``description``, ``members`` (``;``-separated ids of
    users or groups), and any other column. It is required for the same reason as users.csv: a
    missing file must never read as "every group was deleted".
``assignments.csv`` (optional)
    ``principalId``: a user or group assigned to the application (other columns are ignored). A
    missing file means *nothing is assigned* (``assigned == frozenset()``): a job whose scope is
    "assigned users and groups" then finds nobody in scope, and the cycle reports that the
    "assigned" scope found no assignments.

Cells: an empty cell is null (the attribute is absent). Parts of ``;``-separated lists are
stripped of surrounding spaces and empty parts dropped; duplicate members are listed once.
Files are UTF-8 (a byte order mark is tolerated), RFC 4180 quoted, LF or CRLF line ends, and
every row, the last included, ends with a line break: a missing final line break is read as a
half-written export and refused. An export is a full snapshot, so whoever is missing from it is
deleted; a truncated file is the dangerous case (provisioning-engine.md §7.2), hence the
strictness: every file is read and checked completely before a snapshot is returned.

A malformed export raises :class:`SourceError` before anything is returned, with one line
``FILE:LINE:COLUMN: what is wrong`` (1-based; column in characters). A missing file is reported
at ``FILE:1:1``.

Memory: the benchmark directory (100,000 users) must fit the engine's budget, so a row is kept as
the UTF-8 text of its cells and a :class:`SourceObject` is built each time it is looked up (hold
on to the object, not the lookup, when it is used several times). Ids are interned so that
members and managers share the users' id strings.
"""

from __future__ import annotations

import hashlib
import sys
from array import array
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from identity_sync.engine.model import ObjectType, SourceError, SourceObject, SourceSnapshot, Value
from identity_sync.engine.sources.base import SourceDelta
from identity_sync.engine.sources.csv_records import (
    CsvFormatError,
    cell_offset,
    line_and_column,
    locate,
    read_records,
    show,
)

USERS_FILE = "users.csv"
GROUPS_FILE = "groups.csv"
ASSIGNMENTS_FILE = "assignments.csv"

ANCHOR_COLUMN = "id"
PRINCIPAL_COLUMN = "principalId"

#: Graph's user properties that the format names; other columns are accepted as they are.
USER_COLUMNS = (
    "id", "userPrincipalName", "mail", "mailNickname", "displayName", "givenName", "surname", "jobTitle",
    "department", "companyName", "employeeId", "employeeType", "officeLocation", "streetAddress", "city",
    "state", "postalCode", "country", "businessPhones", "mobilePhone", "faxNumber", "preferredLanguage",
    "usageLocation", "accountEnabled", "deletedDateTime", "manager", "proxyAddresses",
    *(f"extensionAttribute{number}" for number in range(1, 16)),
)
GROUP_COLUMNS = ("id", "displayName", "mailNickname", "description", "members")
ASSIGNMENT_COLUMNS = ("principalId",)

#: Columns whose cell is a ``;``-separated list, returned as ``list[str]`` (groups' ``members`` too).
LIST_COLUMNS = frozenset({"businessPhones", "proxyAddresses"})
_BOOLEANS = {"true": True, "false": False}


def _split_list(cell: str) -> list[str]:
    return [part for part in map(str.strip, cell.split(";")) if part]


def _split_ids(cell: str) -> list[str]:
    # dict.fromkeys: duplicates listed once, order kept; interned so that a 500,000-member export
    # shares each id string with the user it names.
    return list(dict.fromkeys(sys.intern(part) for part in _split_list(cell)))


def _converter(object_type: ObjectType, column: str) -> Callable[[str], Value] | None:
    """How a non-empty cell of ``column`` becomes an attribute value (``None``: as it is)."""
    if column == "accountEnabled":
        return lambda cell: _BOOLEANS[cell.lower()]
    if column == "members" and object_type == "group":
        return _split_ids
    if column == "manager" and object_type == "user":
        return sys.intern
    if column in LIST_COLUMNS:
        return _split_list
    return None


#: How a row's cells are joined in its stored UTF-8 text: unquoted lines keep their commas; a
#: record with quotes is re-joined with the ASCII unit separator, which exports do not hold.
_COMMA, _UNIT_SEPARATOR = ",", "\x1f"


class _Table:
    """The rows of one file, compactly: the UTF-8 text of every row's cells in one buffer, about
    the file's size. (A ``str`` per row would take two bytes per character as soon as one name has
    a ``Ł``, and 100,000 small objects interleaved with the parser's garbage fragment the heap.)"""

    __slots__ = ("columns", "converters", "ends", "index", "lines", "object_type", "odd_rows", "quoted_rows",
                 "text", "unresolved")

    def __init__(self, object_type: ObjectType, columns: list[str]) -> None:
        self.object_type: ObjectType = object_type
        self.columns = tuple(sys.intern(column) for column in columns)
        #: (column, converter) for the few columns whose cells are not plain strings.
        self.converters = tuple((column, convert) for column in self.columns
                                if (convert := _converter(object_type, column)) is not None)
        #: anchor → row number, in file order (the order in which the snapshot iterates).
        self.index: dict[str, int] = {}
        self.text = bytearray()
        #: where each row's text ends in ``text`` (it starts where the previous one ends).
        self.ends = array("Q")
        #: numbers of the rows joined with the unit separator instead of commas.
        self.quoted_rows: set[int] = set()
        #: rows whose cells hold the unit separator themselves, kept as cells (never seen in practice).
        self.odd_rows: dict[int, tuple[str, ...]] = {}
        #: line on which each row starts, to name it in errors found after the whole read.
        self.lines = array("L")
        #: rows with a manager or a member not known when the row was read, checked at the end.
        self.unresolved: list[int] = []

    def __len__(self) -> int:
        return len(self.ends)

    def append(self, first_line: int, cells: list[str], record: str, quoted: bool) -> None:
        row_number = len(self.ends)
        if not quoted:
            self.text += record.encode()
        elif _UNIT_SEPARATOR in record:  # in the record's text exactly when in one of its cells
            self.odd_rows[row_number] = tuple(cells)
        else:
            self.quoted_rows.add(row_number)
            self.text += _UNIT_SEPARATOR.join(cells).encode()
        self.ends.append(len(self.text))
        self.lines.append(first_line)

    def cells(self, row_number: int) -> list[str] | tuple[str, ...]:
        if row_number in self.odd_rows:
            return self.odd_rows[row_number]
        start = self.ends[row_number - 1] if row_number else 0
        text = self.text[start:self.ends[row_number]].decode()
        return text.split(_UNIT_SEPARATOR if row_number in self.quoted_rows else _COMMA)

    def build(self, anchor: str, row_number: int) -> SourceObject:
        attributes: dict[str, Value] = {
            column: cell for column, cell in zip(self.columns, self.cells(row_number), strict=True) if cell}
        for column, convert in self.converters:
            cell = attributes.get(column)
            if cell is not None:
                attributes[column] = convert(cell)
        return SourceObject(self.object_type, anchor, attributes)


class _Objects(Mapping[str, SourceObject]):
    """``Mapping[anchor, SourceObject]`` over a table, in file order; objects are built on lookup,
    so holding the snapshot costs the rows' text, not a dictionary per object."""

    __slots__ = ("_table",)

    def __init__(self, table: _Table) -> None:
        self._table = table

    def __getitem__(self, anchor: str) -> SourceObject:
        return self._table.build(anchor, self._table.index[anchor])

    def __contains__(self, anchor: object) -> bool:
        return anchor in self._table.index

    def __iter__(self) -> Iterator[str]:
        return iter(self._table.index)

    def __len__(self) -> int:
        return len(self._table.index)

    def __repr__(self) -> str:
        return f"<{self._table.object_type}s: {len(self)}>"


class CsvSource:
    """A directory export read by :meth:`read` as one complete, validated snapshot."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.description = f"csv:{directory}"
        self.incremental = False

    def read(self) -> SourceSnapshot:
        """Read and validate the three files; raise :class:`SourceError` on the first problem."""
        if not self.directory.is_dir():
            raise SourceError(f"{self.description}: not a directory")
        file_digests: list[str] = []
        users = self._read_table(USERS_FILE, "user", USER_COLUMNS, file_digests)
        groups = self._read_table(GROUPS_FILE, "group", GROUP_COLUMNS, file_digests, users=users)
        assigned: frozenset[str] = frozenset()
        if (self.directory / ASSIGNMENTS_FILE).exists():
            assigned = self._read_assignments(users, groups, file_digests)
        self._check_references(USERS_FILE, users, "manager", users, groups)
        self._check_references(GROUPS_FILE, groups, "members", users, groups)
        # One digest per file, then one over the names and digests: stable, and no two different
        # exports (say, a row moved from one file to the next) share a watermark.
        watermark = hashlib.sha256("".join(file_digests).encode()).hexdigest()
        return SourceSnapshot(_Objects(users), _Objects(groups), assigned, watermark, self.description,
                              user_attributes=frozenset(users.columns), group_attributes=frozenset(groups.columns))

    def read_changes(self, cursor: str, previous: SourceSnapshot) -> SourceDelta | None:
        """An export is a complete picture each time: no change tracking, always a complete read."""
        return None

    def close(self) -> None:
        """Nothing held open between reads."""

    def get(self, anchor: str) -> SourceObject | None:
        """One user or group by anchor, from a fresh complete read (validated as :meth:`read`)."""
        snapshot = self.read()
        found = snapshot.users.get(anchor)
        return found if found is not None else snapshot.groups.get(anchor)

    # -- reading ------------------------------------------------------------------------------

    def _records(self, name: str, file_digests: list[str]) -> Iterator[tuple[int, list[str], str, bool]]:
        path = self.directory / name
        if not path.is_file():
            raise SourceError(f"{name}:1:1: file is missing from the export directory (a CSV directory needs "
                              f"{USERS_FILE} and {GROUPS_FILE}; a missing file never means 'all were deleted')")
        digest = hashlib.sha256()
        try:
            yield from read_records(path, digest.update)
        except CsvFormatError as error:
            raise SourceError(f"{name}:{error}") from None
        except OSError as error:
            raise SourceError(f"{name}:1:1: cannot read: {error.strerror or type(error).__name__}") from None
        file_digests.append(f"{name}:{digest.hexdigest()}\n")

    def _read_table(self, name: str, object_type: ObjectType, known_columns: tuple[str, ...],
                    file_digests: list[str], users: _Table | None = None) -> _Table:
        records = self._records(name, file_digests)
        header = next(records, None)
        if header is None:
            raise SourceError(f"{name}:1:1: empty file: the first line must be the header")
        columns = _check_header(name, header, known_columns, required=ANCHOR_COLUMN)
        table = _Table(object_type, columns)
        anchor_position = columns.index(ANCHOR_COLUMN)
        enabled_position = columns.index("accountEnabled") if "accountEnabled" in columns else -1
        width = len(columns)
        index, lines = table.index, table.lines
        manager_position = columns.index("manager") if object_type == "user" and "manager" in columns else -2
        members_position = columns.index("members") if object_type == "group" and "members" in columns else -2
        reference_position = max(manager_position, members_position)
        known_users = users.index if users is not None else {}
        for first_line, cells, record, quoted in records:
            if len(cells) != width:
                _raise_width(name, first_line, cells, record, width)
            anchor = cells[anchor_position]
            if not anchor or anchor != anchor.strip():
                problem = "empty id" if not anchor.strip() else f"id {show(anchor)} has leading or trailing spaces"
                raise _cell_error(name, first_line, record, anchor_position, problem)
            if anchor in index:
                first = lines[index[anchor]]
                raise _cell_error(name, first_line, record, anchor_position,
                                  f"duplicate id {show(anchor)} (first on line {first})")
            if users is not None and anchor in users.index:
                raise _cell_error(name, first_line, record, anchor_position,
                                  f"group id {show(anchor)} is also a user id ({USERS_FILE} line "
                                  f"{users.lines[users.index[anchor]]})")
            if enabled_position >= 0 and cells[enabled_position]:
                if cells[enabled_position].lower() not in _BOOLEANS:
                    raise _cell_error(name, first_line, record, enabled_position,
                                      f"accountEnabled must be true or false, not {show(cells[enabled_position])}")
            if reference_position >= 0 and cells[reference_position]:
                # Checked now when possible (a manager listed before, a member read already);
                # rows naming something not read yet are checked once everything is read.
                references = cells[reference_position]
                if reference_position == manager_position:
                    resolved = references in index
                else:
                    resolved = all(not part or (part in known_users or part in index) and part != anchor
                                   for part in map(str.strip, references.split(";")))
                if not resolved:
                    table.unresolved.append(len(table))
            index[sys.intern(anchor)] = len(table)
            table.append(first_line, cells, record, quoted)
        return table

    def _read_assignments(self, users: _Table, groups: _Table, file_digests: list[str]) -> frozenset[str]:
        path = self.directory / ASSIGNMENTS_FILE
        records = self._records(ASSIGNMENTS_FILE, file_digests)
        header = next(records, None)
        if header is None:
            raise SourceError(f"{ASSIGNMENTS_FILE}:1:1: empty file: the first line must be the header")
        columns = _check_header(ASSIGNMENTS_FILE, header, ASSIGNMENT_COLUMNS, required=PRINCIPAL_COLUMN)
        position = columns.index(PRINCIPAL_COLUMN)
        assigned: set[str] = set()
        for first_line, cells, record, _quoted in records:
            if len(cells) != len(columns):
                _raise_width(ASSIGNMENTS_FILE, first_line, cells, record, len(columns))
            principal = cells[position]
            if not principal:
                raise _cell_error(ASSIGNMENTS_FILE, first_line, record, position, "empty principalId")
            if principal not in users.index and principal not in groups.index:
                line, column = locate(path, first_line, position)
                raise SourceError(f"{ASSIGNMENTS_FILE}:{line}:{column}: principalId {show(principal)} names no "
                                  f"user of {USERS_FILE} and no group of {GROUPS_FILE}")
            # Assigning a principal twice (e.g. with two app roles) is legitimate: a set.
            assigned.add(sys.intern(principal))
        return frozenset(assigned)

    def _check_references(self, name: str, table: _Table, column: str, users: _Table, groups: _Table) -> None:
        """Every manager must name a user and every member a user or a group of the export: a
        dangling reference means the export is incomplete, and acting on it could delete."""
        if column not in table.columns:
            return
        position = table.columns.index(column)
        anchor_position = table.columns.index(ANCHOR_COLUMN)
        for row_number in table.unresolved:
            cells = table.cells(row_number)
            cell = cells[position]
            if not cell:
                continue
            offset = 0
            for part in [cell] if column == "manager" else cell.split(";"):
                reference = part if column == "manager" else part.strip()
                problem = None
                if column == "manager" and reference not in users.index:
                    problem = f"manager {show(reference)} names no user of {USERS_FILE}"
                elif column == "members" and reference and reference not in users.index \
                        and reference not in groups.index:
                    problem = f"member {show(reference)} names no user of {USERS_FILE} and no group of {GROUPS_FILE}"
                elif column == "members" and reference == cells[anchor_position]:
                    problem = f"group {show(reference)} lists itself as a member"
                if problem is not None:
                    leading_spaces = len(part) - len(part.lstrip()) if column == "members" else 0
                    start = offset + leading_spaces
                    line, place = locate(self.directory / name, table.lines[row_number], position, start)
                    raise SourceError(f"{name}:{line}:{place}: {problem}")
                offset += len(part) + 1
        table.unresolved.clear()


def _cell_error(name: str, first_line: int, record: str, cell_index: int, problem: str) -> SourceError:
    line, column = line_and_column(record, first_line, cell_offset(record, cell_index))
    return SourceError(f"{name}:{line}:{column}: {problem}")


def _raise_width(name: str, first_line: int, cells: list[str], record: str, width: int) -> None:
    if len(cells) < width:
        line, column = line_and_column(record, first_line, len(record))
        problem = f"{len(cells)} cells where the header has {width} (a truncated or broken line?)"
    else:
        line, column = line_and_column(record, first_line, cell_offset(record, width))
        problem = f"{len(cells)} cells where the header has {width} (an unquoted comma?)"
    raise SourceError(f"{name}:{line}:{column}: {problem}")


def _check_header(name: str, header: tuple[int, list[str], str, bool], known_columns: tuple[str, ...],
                  required: str) -> list[str]:
    """The column names, or ``SourceError`` at the first bad one: empty, padded with spaces,
    written twice (case-insensitively: mappings name attributes case-insensitively), or a known
    Graph name in another case (it would silently become a different attribute)."""
    first_line, columns, record, _quoted = header
    by_folded_name: dict[str, int] = {}
    spelling = {known.casefold(): known for known in known_columns}
    for position, column in enumerate(columns):
        problem = None
        folded = column.casefold()
        if not column.strip():
            problem = "empty column name"
        elif column != column.strip():
            problem = f"column name {show(column)} has leading or trailing spaces"
        elif folded in by_folded_name:
            first = line_and_column(record, first_line, cell_offset(record, by_folded_name[folded]))
            problem = f"duplicate column {show(column)} (first at {first[0]}:{first[1]})"
        elif folded in spelling and spelling[folded] != column:
            problem = f"column {show(column)} must be spelled {show(spelling[folded])}"
        if problem is not None:
            raise _cell_error(name, first_line, record, position, problem)
        by_folded_name[folded] = position
    if required not in columns:
        raise SourceError(f"{name}:{first_line}:1: no {show(required)} column in the header")
    return columns

