"""Timestamps have one stored form — UTC, microseconds, ``Z`` — whichever function wrote them, so
that they sort as strings; ``now_text`` formats each second once and must still be exact."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import pytest

from identity_sync import clock

STORED_FORM = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


def test_now_text_is_the_stored_form_of_now() -> None:
    before = datetime.now(UTC)
    text = clock.now_text()
    after = datetime.now(UTC)
    assert STORED_FORM.match(text)
    assert clock.format_timestamp(before) <= text <= clock.format_timestamp(after)
    assert before <= clock.parse_timestamp(text) <= after


@pytest.mark.parametrize("nanos", [
    1_764_979_199_999_999_000,  # the last microsecond of a day
    1_764_979_200_000_000_000,  # the first of the next
    1_764_979_200_000_001_999,  # nanoseconds below the microsecond are cut, as datetime does
    951_782_400_000_000_000,    # 2000-02-29
])
def test_each_second_is_formatted_anew(monkeypatch: pytest.MonkeyPatch, nanos: int) -> None:
    # The same second, then the next, then back (a clock set back): each equals the full formatting.
    for moment in (nanos, nanos + 1_000_000_000, nanos):
        monkeypatch.setattr(time, "time_ns", lambda moment=moment: moment)
        whole = datetime.fromtimestamp(moment // 10**9, UTC).replace(microsecond=moment // 1000 % 10**6)
        expected = clock.format_timestamp(whole)
        assert clock.now_text() == expected
