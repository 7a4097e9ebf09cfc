"""Strict RFC 4180 reading of one CSV file, record by record, with exact places for every error.

This is the lexical half of the CSV source (``csv_source.py`` gives the records their meaning).
A *record* is one row of cells; it spans several physical lines when a quoted cell holds a line
break. Places are ``LINE:COLUMN``, both 1-based, the column counted in characters (code points) of
the decoded line, as editors and ``grep -n`` count them.

Why not the ``csv`` module alone: it cannot say where a cell starts, it reads a quote inside an
unquoted cell as a plain character, and without ``strict`` it silently closes a quote left open
by a truncated file. Most lines of an export hold no quote at all, so they take a fast path
(``str.split``); records with quotes are checked against one regular expression (it runs in C) and
then split cell by cell. Positions are only computed when something is wrong.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterator
from pathlib import Path

#: One well-formed record: cells separated by commas; a cell is either quoted (a quote inside it
#: written twice) or holds no quote, comma or line break at all.
_QUOTED_CELL = r'"[^"]*(?:""[^"]*)*"'
_PLAIN_CELL = r'[^,"\r\n]*'
_WELL_FORMED_RECORD = re.compile(rf"(?:{_QUOTED_CELL}|{_PLAIN_CELL})(?:,(?:{_QUOTED_CELL}|{_PLAIN_CELL}))*")
_CELL_END_OR_STRAY = re.compile(r'[,"\r\n]')
_CELL = re.compile(rf'(?:"([^"]*(?:""[^"]*)*)"|({_PLAIN_CELL}))(?:,|\Z)')


def split_quoted(record: str) -> list[str]:
    """The cells of a well-formed record that holds quotes. (Not ``csv.reader``: it refuses cells
    over ``csv.field_size_limit()``, 128 KiB, and a group's member list is larger than that.)"""
    pairs = _CELL.findall(record)
    if not record.endswith(","):
        # After the last cell, the pattern also matches the empty string at the end of the
        # record; that is a cell only when the record ends with a comma.
        pairs.pop()
    if '""' not in record:  # no escaped quote (nor empty quoted cell): no replace per cell
        return [quoted or plain for quoted, plain in pairs]
    return [quoted.replace('""', '"') if quoted else plain for quoted, plain in pairs]


class CsvFormatError(Exception):
    """A place in one file and what is wrong there; the source turns it into a ``SourceError``."""

    def __init__(self, line: int, column: int, message: str) -> None:
        super().__init__(f"{line}:{column}: {message}")
        self.line = line
        self.column = column
        self.message = message


def show(value: str, limit: int = 60) -> str:
    """A cell's value for an error message: quoted, escaped (never a raw line break), shortened."""
    if len(value) > limit:
        value = value[:limit] + "…"
    return repr(value)


def line_and_column(record: str, first_line: int, offset: int) -> tuple[int, int]:
    """The place of character ``offset`` of ``record``, a record that begins on ``first_line``."""
    line = first_line + record.count("\n", 0, offset)
    return line, offset - (record.rfind("\n", 0, offset) + 1) + 1


def cell_offset(record: str, cell_index: int, offset_in_value: int = 0) -> int:
    """Offset in ``record`` (well-formed) of character ``offset_in_value`` of cell ``cell_index``'s
    value (0 = where the cell starts; past the end of a short record = the end of the record)."""
    position = 0
    for _ in range(cell_index):
        if position < len(record) and record[position] == '"':
            end = _closing_quote(record, position)
            position = end + 1
        else:
            comma = record.find(",", position)
            position = len(record) if comma < 0 else comma
        if position >= len(record):
            return len(record)
        position += 1  # the comma
    if position < len(record) and record[position] == '"' and offset_in_value:
        position += 1
        for _ in range(offset_in_value):
            position += 2 if record.startswith('""', position) else 1
        return position
    return position + offset_in_value


def _closing_quote(record: str, opening: int) -> int:
    """Offset of the quote that closes the quoted cell opened at ``opening``, or -1."""
    search = opening + 1
    while True:
        quote = record.find('"', search)
        if quote < 0:
            return -1
        if record.startswith('""', quote):
            search = quote + 2
            continue
        return quote


def _first_malformation(record: str) -> tuple[int, str]:
    """Where and why a record that failed ``_WELL_FORMED_RECORD`` is malformed."""
    position = 0
    while True:
        if position < len(record) and record[position] == '"':
            closing = _closing_quote(record, position)
            if closing < 0:
                return position, "unbalanced quote: the quoted cell that starts here is never closed"
            position = closing + 1
            if position == len(record):
                break
            if record[position] != ",":
                return position, ("unexpected character after a closing quote "
                                  "(inside a quoted cell a quote is written twice: \"\")")
            position += 1
            continue
        match = _CELL_END_OR_STRAY.search(record, position)
        if match is None:
            break
        if match.group() == '"':
            return match.start(), "quote inside an unquoted cell (quote the whole cell and write the quote twice)"
        if match.group() != ",":
            return match.start(), "line break inside an unquoted cell"
        position = match.end()
    raise AssertionError("a record that failed the record pattern must have a malformation")  # pragma: no cover


def _decode(raw: bytes, line: int) -> str:
    """One physical line as text; a non-UTF-8 byte is reported at its own column."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        column = len(raw[: error.start].decode("utf-8", "replace")) + 1
        raise CsvFormatError(line, column, f"not UTF-8: byte 0x{raw[error.start]:02X} "
                                           "(export the file as UTF-8)") from None


def read_records(path: Path, digest: Callable[[bytes], object] | None = None,
                 ) -> Iterator[tuple[int, list[str], str, bool]]:
    """Yield ``(first_line, cells, record_text, quoted)`` for every record of ``path``, header first.

    ``record_text`` is the record as written, without its final line break, so that callers can
    keep unquoted records compactly and place errors with :func:`cell_offset`. ``quoted`` says
    whether the text holds a quote (then ``record_text.split(",")`` is not the cells).
    ``digest`` (e.g. ``sha256().update``) is given every byte read. Raises :class:`CsvFormatError`
    at the first malformation: a non-UTF-8 byte, an empty line, a stray carriage return, an
    unbalanced or misplaced quote, or a file whose last line has no line break (a half-written
    export; checked after the last record was yielded, so that a truncated row is first reported
    for its missing cells).
    """
    with open(path, "rb") as file:
        lines = iter(file)
        line_number = 0
        for raw in lines:
            line_number += 1
            if digest is not None:
                digest(raw)
            if line_number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]  # a byte order mark is tolerated and not counted
            text = _decode(raw, line_number)
            first_line = line_number
            if '"' in text:
                # A line break inside quotes continues the record on the next physical line: an
                # odd number of quotes so far means a quoted cell is still open.
                quote_count = text.count('"')
                parts = [text]  # joined once: a stray quote can make the rest of the file one record
                while quote_count % 2 and parts[-1].endswith("\n"):
                    continuation = next(lines, None)
                    if continuation is None:
                        break
                    line_number += 1
                    if digest is not None:
                        digest(continuation)
                    parts.append(_decode(continuation, line_number))
                    quote_count += parts[-1].count('"')
                text = "".join(parts)
            ends_with_newline = text.endswith("\n")
            record = text[:-1] if ends_with_newline else text
            if record.endswith("\r"):
                record = record[:-1]  # CRLF line ends
            if '"' in record:
                if _WELL_FORMED_RECORD.fullmatch(record) is None:
                    offset, message = _first_malformation(record)
                    raise CsvFormatError(*line_and_column(record, first_line, offset), message)
                yield first_line, split_quoted(record), record, True
            else:
                if not record:
                    raise CsvFormatError(first_line, 1, "empty line (every line of the export must be a row)")
                carriage_return = record.find("\r")
                if carriage_return >= 0:
                    raise CsvFormatError(first_line, carriage_return + 1, "carriage return inside a line")
                yield first_line, record.split(","), record, False
            if not ends_with_newline:
                raise CsvFormatError(
                    line_number, len(text.rsplit("\n", 1)[-1]) + 1,
                    "no line break after the last row: the export looks truncated (half-written file)")


def locate(path: Path, first_line: int, cell_index: int, offset_in_value: int = 0) -> tuple[int, int]:
    """The place of a cell (and of a character in it) of the record that starts on ``first_line``,
    found by reading the file again: errors found after the whole file was read (a reference to
    an unknown id) are rare, so records are not kept with their positions."""
    try:
        for line, _cells, record, _quoted in read_records(path):
            if line == first_line:
                return line_and_column(record, line, cell_offset(record, cell_index, offset_in_value))
    except (OSError, CsvFormatError):
        pass
    return first_line, 1  # the file changed since it was read: the line is still right
