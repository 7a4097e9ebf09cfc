"""Date functions (§2.3): CDate, Now, DateAdd, DateDiff, DateFromNum, NumFromDate, FormatDateTime.
The tables of Microsoft's reference are the test vectors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from identity_sync.engine.mapping.expressions import (
    EvaluationContext,
    ExpressionError,
    ExpressionEvaluationError,
    parse_expression,
)

MOMENT = datetime(2021, 8, 25, 17, 41, 18, tzinfo=UTC)


def evaluate(text: str, **attributes: object) -> object:
    return parse_expression(text).evaluate(attributes, EvaluationContext(now=MOMENT))


class TestCDate:
    @pytest.mark.parametrize(
        ("source", "expected"),
        [
            ("2020-03-16-07:00", "3/16/2020 7:00:00 AM"),
            ("2021-06-30+08:00", "6/29/2021 4:00:00 PM"),
            ("2009-06-15T01:45:30-07:00", "6/15/2009 8:45:30 AM"),
        ],
    )
    def test_documented_examples_are_utc(self, source: str, expected: str) -> None:
        assert evaluate("CDate([StatusHireDate])", StatusHireDate=source) == expected

    @pytest.mark.parametrize(
        ("source", "expected"),
        [
            ("2021-08-24", "8/24/2021 12:00:00 AM"),
            ("2021-08-24T12:05:09Z", "8/24/2021 12:05:09 PM"),
            ("2021-08-24 23:59:59.9999999+0130", "8/24/2021 10:29:59 PM"),
            ("8/25/2021 5:41:18 PM", "8/25/2021 5:41:18 PM"),
            ("12/1/2021 12:00:00 AM", "12/1/2021 12:00:00 AM"),
            ("1/2/2021 14:30", "1/2/2021 2:30:00 PM"),
            ("2021/01/02", "1/2/2021 12:00:00 AM"),
            ("Tue, 15 Jun 2021 10:00:00 GMT", "6/15/2021 10:00:00 AM"),
            ("  2021-06-30  ", "6/30/2021 12:00:00 AM"),
        ],
    )
    def test_other_common_forms(self, source: str, expected: str) -> None:
        assert evaluate("CDate([d])", d=source) == expected

    @pytest.mark.parametrize("source", ["not a date", "2021-13-01", "2021-02-30", "13:00", "2021-06-30+25:00",
                                        "8/25/2021 13:00 PM"])
    def test_unreadable_dates_fail_for_the_object(self, source: str) -> None:
        with pytest.raises(ExpressionEvaluationError) as caught:
            evaluate("CDate([d])", d=source)
        assert caught.value.column == 1 and caught.value.message.startswith("CDate: ")

    def test_null_stays_null(self) -> None:
        assert evaluate("CDate([missing])") is None


class TestNow:
    def test_the_contexts_moment_in_entras_format(self) -> None:
        assert evaluate("Now()") == "8/25/2021 5:41:18 PM"

    def test_one_context_one_moment_and_a_fresh_one_without_context(self) -> None:
        expression = parse_expression("Now()")
        context = EvaluationContext(now=datetime(2021, 7, 2, 15, 33, 38, 900_000, tzinfo=UTC))
        assert expression.evaluate({}, context) == expression.evaluate({}, context) == "7/2/2021 3:33:38 PM"
        before = datetime.now(UTC).replace(microsecond=0)
        fresh = parse_expression("CBool(Now() >= [before])").evaluate({"before": before.isoformat()})
        assert fresh is True

    def test_a_context_needs_an_aware_moment_and_keeps_it_in_utc(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            EvaluationContext(now=datetime(2021, 1, 1))
        eastern = EvaluationContext(now=datetime(2021, 1, 1, 3, tzinfo=timezone(timedelta(hours=-5))))
        assert parse_expression("Now()").evaluate({}, eastern) == "1/1/2021 8:00:00 AM"


class TestDateAdd:
    @pytest.mark.parametrize(
        ("interval", "value", "expected"),
        [
            ("d", 7, "3/23/2012 7:00:00 AM"),
            ("d", -10, "3/6/2012 7:00:00 AM"),
            ("ww", 2, "3/30/2012 7:00:00 AM"),
            ("m", 10, "1/16/2013 7:00:00 AM"),
            ("yyyy", 2, "3/16/2014 7:00:00 AM"),
        ],
    )
    def test_documented_table(self, interval: str, value: int, expected: str) -> None:
        text = f'DateAdd("{interval}", {value}, CDate([StatusHireDate]))'
        assert evaluate(text, StatusHireDate="2012-03-16-07:00") == expected

    @pytest.mark.parametrize(
        ("interval", "value", "expected"),
        [("h", 30, "3/17/2012 1:00:00 PM"), ("n", -90, "3/16/2012 5:30:00 AM"), ("s", 59, "3/16/2012 7:00:59 AM"),
         ("q", 1, "6/16/2012 7:00:00 AM"), ("Y", 1, "3/17/2012 7:00:00 AM"), ("M", 1, "4/16/2012 7:00:00 AM")],
    )
    def test_other_intervals_case_insensitive(self, interval: str, value: int, expected: str) -> None:
        assert evaluate(f'DateAdd("{interval}", {value}, [d])', d="2012-03-16T07:00:00Z") == expected

    def test_months_clamp_to_the_end_of_the_month(self) -> None:
        assert evaluate('DateAdd("m", 1, "2021-01-31")') == "2/28/2021 12:00:00 AM"
        assert evaluate('DateAdd("yyyy", 1, "2020-02-29")') == "2/28/2021 12:00:00 AM"

    def test_plain_date_strings_are_read_like_cdate_and_now_works(self) -> None:
        assert evaluate('DateAdd("d", 1, Now())') == "8/26/2021 5:41:18 PM"

    def test_null_date_is_null_and_bad_input_fails(self) -> None:
        assert evaluate('DateAdd("d", 1, [missing])') is None
        with pytest.raises(ExpressionEvaluationError, match="DateAdd: the result is outside the years 1 to 9999"):
            evaluate('DateAdd("yyyy", 9000, "2021-01-01")')
        with pytest.raises(ExpressionEvaluationError, match="DateAdd: unknown interval 'fortnight'"):
            evaluate('DateAdd([unit], 1, "2021-01-01")', unit="fortnight")
        with pytest.raises(ExpressionEvaluationError, match="DateAdd: expected a date, got 5"):
            evaluate('DateAdd("d", 1, [n])', n=5)

    def test_a_constant_unknown_interval_is_a_parse_error(self) -> None:
        with pytest.raises(ExpressionError) as caught:
            parse_expression('DateAdd("days", 1, Now())')
        assert caught.value.column == 9 and "unknown interval 'days'" in caught.value.message


class TestDateDiff:
    @pytest.mark.parametrize(
        ("interval", "date1", "date2", "expected"),
        [
            ("d", "2021-08-18+08:00", "2021-08-31+08:00", 13),
            ("d", "8/25/2021 5:41:18 PM", "2012-03-16-07:00", -3449),
            ("ww", "8/25/2021 5:41:18 PM", "2012-03-16-07:00", -493),
            ("m", "8/25/2021 5:41:18 PM", "2012-03-16-07:00", -113),
            ("yyyy", "8/25/2021 5:41:18 PM", "2012-03-16-07:00", -9),
            ("d", "2021-08-31+08:00", "2021-08-31+08:00", 0),
            ("h", "2021-08-24", "2021-08-25", 24),
            ("n", "2021-08-24", "2021-08-25", 1440),
            ("s", "2021-08-24", "2021-08-25", 86400),
        ],
    )
    def test_documented_table(self, interval: str, date1: str, date2: str, expected: int) -> None:
        text = f'DateDiff("{interval}", CDate([date1]), CDate([date2]))'
        assert evaluate(text, date1=date1, date2=date2) == expected

    def test_with_now_as_in_the_docs(self) -> None:
        assert evaluate('DateDiff("d", Now(), CDate([StatusHireDate]))', StatusHireDate="2012-03-16-07:00") == -3449

    def test_elapsed_units_truncate_toward_zero_calendar_units_count_boundaries(self) -> None:
        assert evaluate('DateDiff("d", "2021-01-01T23:00:00Z", "2021-01-02T22:59:59Z")') == 0
        assert evaluate('DateDiff("d", "2021-01-02T22:59:59Z", "2021-01-01T23:00:00Z")') == 0
        assert evaluate('DateDiff("yyyy", "2020-12-31T23:59:59Z", "2021-01-01")') == 1
        assert evaluate('DateDiff("q", "2021-03-31", "2021-04-01")') == 1
        assert evaluate('DateDiff("w", "2021-01-01", "2021-01-15")') == 2
        assert evaluate('DateDiff("ww", "2021-08-21", "2021-08-22")') == 1  # Saturday → Sunday

    def test_null_dates_give_null(self) -> None:
        assert evaluate('DateDiff("d", [missing], Now())') is None


class TestFileTime:
    def test_date_from_num_documented_example(self) -> None:
        assert evaluate("DateFromNum(129699324000000000)") == "1/1/2012 11:00:00 PM"
        assert evaluate("DateFromNum([lastLogonTimestamp])", lastLogonTimestamp="129699324000000000") == (
            "1/1/2012 11:00:00 PM"
        )

    def test_date_from_num_edges(self) -> None:
        assert evaluate("DateFromNum(0)") == "1/1/1601 12:00:00 AM"
        assert evaluate("DateFromNum([missing])") is None
        with pytest.raises(ExpressionEvaluationError, match="out of range"):
            evaluate("DateFromNum(9223372036854775807)")
        with pytest.raises(ExpressionEvaluationError, match="negative"):
            evaluate("DateFromNum(-1)")

    def test_num_from_date_workday_example(self) -> None:
        text = ('NumFromDate(Join("", FormatDateTime([ContractEndDate], ,"yyyy-MM-ddzzz", "yyyy-MM-dd"), '
                '" 23:59:59-08:00"))')
        assert evaluate(text, ContractEndDate="2020-12-31-08:00") == 132539615990000000

    def test_num_from_date_successfactors_example(self) -> None:
        text = ('NumFromDate(Join("",FormatDateTime([endDate], ,"M/d/yyyy hh:mm:ss tt","yyyy-MM-dd"),'
                '" 23:59:59-08:00"))')
        assert evaluate(text, endDate="1/5/2021 09:30:00 PM") == 132543935990000000

    def test_round_trip_and_null(self) -> None:
        assert evaluate("DateFromNum(NumFromDate([d]))", d="2012-01-01T23:00:00Z") == "1/1/2012 11:00:00 PM"
        assert evaluate("NumFromDate([missing])") is None


class TestFormatDateTime:
    def test_documented_example(self) -> None:
        text = 'FormatDateTime([extensionAttribute1], , "yyyyMMddHHmmss.fZ", "yyyy-MM-dd")'
        assert evaluate(text, extensionAttribute1="20150123105347.1Z") == "2015-01-23"

    @pytest.mark.parametrize(
        ("output_format", "expected"),
        [
            ("yyyy-MM-ddTHH:mm:ss", "2021-06-30T16:05:09"),
            ("M/d/yy h:m:s tt", "6/30/21 4:5:9 PM"),
            ("dddd, MMMM d, yyyy", "Wednesday, June 30, 2021"),
            ("ddd dd MMM", "Wed 30 Jun"),
            ("HH:mm:ss.fff", "16:05:09.120"),
            ("HH:mm:ss.FFF", "16:05:09.12"),
            ("zzz|zz|z|K", "+08:00|+08|+8|+08:00"),
            ("'quoted: 'yyyy \"y\" \\y %d", "quoted: 2021 y y 30"),
            ("t", "4:05 PM"),
            ("o", "2021-06-30T16:05:09.1200000+08:00"),
            ("s", "2021-06-30T16:05:09"),
            ("u", "2021-06-30 08:05:09Z"),
            ("d", "6/30/2021"),
            ("G", "6/30/2021 4:05:09 PM"),
            ("yyyyyMMdd", "020210630"),
        ],
    )
    def test_output_formats(self, output_format: str, expected: str) -> None:
        text = f'FormatDateTime([d], , "yyyy-MM-ddTHH:mm:ss.FFFFFFFzzz", "{_escape(output_format)}")'
        assert evaluate(text, d="2021-06-30T16:05:09.12+08:00") == expected

    def test_all_zero_f_fraction_drops_its_point(self) -> None:
        assert evaluate('FormatDateTime("10:00:00", , "HH:mm:ss", "HH:mm:ss.FFF")') == "10:00:00"

    def test_a_date_without_zone_keeps_none_and_adjust_to_universal_converts(self) -> None:
        assert evaluate('FormatDateTime("2021-06-30 10:00", , "yyyy-MM-dd HH:mm", "HH:mm|K")') == "10:00|"
        text = 'FormatDateTime("2021-06-30 10:00+02:00", "AdjustToUniversal", "yyyy-MM-dd HH:mmzzz", "HH:mm K")'
        assert evaluate(text) == "08:00 Z"
        assert evaluate('FormatDateTime("10:00", "AssumeUniversal", "HH:mm", "HH:mm K")') == "10:00 Z"

    def test_date_values_from_other_functions_are_used_as_they_are(self) -> None:
        assert evaluate('FormatDateTime(CDate("2021-06-30+08:00"), , "M/d/yyyy", "yyyy-MM-dd HH:mm")') == (
            "2021-06-29 16:00"
        )

    def test_two_digit_years_and_month_names_are_read(self) -> None:
        assert evaluate('FormatDateTime("30-Jun-49", , "dd-MMM-yy", "yyyy")') == "2049"
        assert evaluate('FormatDateTime("30 JUNE 50", , "dd MMMM yy", "yyyy-MM")') == "1950-06"

    def test_a_time_only_format_takes_todays_date(self) -> None:
        assert evaluate('FormatDateTime("09:15", , "HH:mm", "yyyy-MM-dd HH:mm")') == "2021-08-25 09:15"

    def test_input_that_does_not_match_fails_for_the_object(self) -> None:
        with pytest.raises(ExpressionEvaluationError, match="does not match the date format 'yyyy-MM-dd'"):
            evaluate('FormatDateTime([d], , "yyyy-MM-dd", "yyyy")', d="30/06/2021")
        with pytest.raises(ExpressionEvaluationError, match="not a valid date"):
            evaluate('FormatDateTime([d], , "yyyy-MM-dd", "yyyy")', d="2021-02-30")
        with pytest.raises(ExpressionEvaluationError, match="hour 13 with PM"):
            evaluate('FormatDateTime([d], , "h tt", "HH")', d="13 PM")

    def test_null_source_is_null(self) -> None:
        assert evaluate('FormatDateTime([missing], , "yyyy", "yyyy")') is None

    @pytest.mark.parametrize(
        ("arguments", "column", "message"),
        [
            ('[d], , "yyyy gg", "yyyy"', 23, "the era specifier 'g' is not supported"),
            ('[d], , "yyyy", "x"', 31, "standard date format 'x' is not supported"),
            ('[d], , "fffffffff", "yyyy"', 23, "specifier 'fffffffff' is not supported"),
            ('[d], , "\'open", "yyyy"', 23, "unterminated quoted text"),
            ('[d], , "yyyy%", "yyyy"', 23, "'%' in date format"),
            ('[d], , "yyyy\\\\", "yyyy"', 23, "ends with a lone backslash"),
            ('[d], "Sometimes", "yyyy", "yyyy"', 21, "unknown DateTimeStyles value 'sometimes'"),
            ('[d], , "", "yyyy"', 23, "the date format is empty"),
        ],
    )
    def test_constant_format_problems_are_parse_errors(self, arguments: str, column: int, message: str) -> None:
        with pytest.raises(ExpressionError) as caught:
            parse_expression(f"FormatDateTime({arguments})")
        assert caught.value.column == column
        assert message in caught.value.message

    def test_formats_from_attributes_are_checked_when_used(self) -> None:
        with pytest.raises(ExpressionEvaluationError, match="era specifier"):
            evaluate('FormatDateTime("2021", , "yyyy", [f])', f="gg")


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
