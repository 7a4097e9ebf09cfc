"""The CSV reader under the source: RFC 4180 as ``csv.writer`` writes it, with exact places."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from identity_sync.engine.sources.csv_records import (
    CsvFormatError,
    cell_offset,
    line_and_column,
    locate,
    read_records,
    split_quoted,
)

# Cells as exports hold them: any text, including the separators, quotes and line breaks.
cell_text = st.text(alphabet=st.sampled_from(list('ab ,;"\n\r\téŁ\x1f')), max_size=8)


def written(rows: list[list[str]]) -> str:
    # CRLF, csv's default: with "\n" it would leave a "\r" unquoted, which RFC 4180 forbids (and
    # which the reader refuses, since "x\r\n" could be a cell "x\r" or a CRLF line end).
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(cell_text, min_size=2, max_size=4), min_size=1, max_size=5))
def test_reads_back_what_csv_writer_wrote(tmp_path_factory: pytest.TempPathFactory, rows: list[list[str]]) -> None:
    width = len(rows[0])
    rows = [(row + [""] * width)[:width] for row in rows]
    path = tmp_path_factory.mktemp("records") / "file.csv"
    path.write_bytes(written(rows).encode())
    records = list(read_records(path))
    assert [cells for _line, cells, _record, _quoted in records] == rows
    # Each record starts on the line after the previous one's last line.
    line = 1
    for first_line, _cells, record, _quoted in records:
        assert first_line == line
        line += record.count("\n") + 1


@pytest.mark.parametrize(("record", "cells"), [
    ('"a",b', ["a", "b"]),
    ('a,"b"', ["a", "b"]),
    ('"a",', ["a", ""]),
    ('"",""', ["", ""]),
    ('"a,b",,"c""d"', ["a,b", "", 'c"d']),
    (',"x",', ["", "x", ""]),
    ('"line\nbreak"', ["line\nbreak"]),
])
def test_split_quoted(record: str, cells: list[str]) -> None:
    assert split_quoted(record) == cells


def test_a_cell_over_csv_modules_field_limit_is_read(tmp_path: Path) -> None:
    members = ";".join(f"user-{number:06d}" for number in range(20_000))  # 240,000 characters
    path = tmp_path / "groups.csv"
    path.write_text(f'id,description,members\ng1,"a, b",{members}\n')
    assert list(read_records(path))[1][1] == ["g1", "a, b", members]


def test_digest_is_fed_every_byte(tmp_path: Path) -> None:
    data = b'\xef\xbb\xbfid,x\r\nu1,"a\r\nb"\r\n'
    path = tmp_path / "f.csv"
    path.write_bytes(data)
    seen = bytearray()
    list(read_records(path, seen.extend))
    assert bytes(seen) == data


def test_places_inside_a_multi_line_record() -> None:
    record = 'u1,"a\n""b"";c",d'
    assert line_and_column(record, 7, cell_offset(record, 2)) == (8, 10)
    assert line_and_column(record, 7, cell_offset(record, 1, 2)) == (8, 1)  # the "" after "a\n"
    assert line_and_column(record, 7, cell_offset(record, 1, 5)) == (8, 6)  # each "" is one character
    assert cell_offset("a,b", 5) == 3  # a missing cell: the end of the record


def test_locate_reads_the_file_again(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text('id,x\nu1,"a\nb"\nu2,c;d\n')
    assert locate(path, 4, 1, 2) == (4, 6)


def test_errors_carry_their_place(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text('id,x\nu1,"never closed\nu2,b\n')
    with pytest.raises(CsvFormatError) as raised:
        list(read_records(path))
    assert (raised.value.line, raised.value.column) == (2, 4)
    assert str(raised.value).startswith("2:4: unbalanced quote")


def test_locate_falls_back_to_the_line_when_the_file_is_gone(tmp_path: Path) -> None:
    assert locate(tmp_path / "gone.csv", 12, 3) == (12, 1)
