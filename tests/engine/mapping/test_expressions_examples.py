"""The composite examples of Microsoft's reference and of provisioning-engine.md §2.3, end to end."""

from __future__ import annotations

import re

from identity_sync.engine.mapping.expressions import EvaluationContext, parse_expression


def evaluate(text: str, **attributes: object) -> object:
    return parse_expression(text).evaluate(attributes)


def test_upn_from_preferred_names() -> None:
    text = ('Join("@", NormalizeDiacritics(StripSpaces(Join(".", [PreferredFirstName], [PreferredLastName]))), '
            '"contoso.com")')
    upn = evaluate(text, PreferredFirstName="Zoë Anne", PreferredLastName="Ångström")
    assert upn == "ZoeAnne.Angstrom@contoso.com"


def test_phone_number_without_country_code() -> None:
    text = r'Replace([telephoneNumber], , "\\+(?<isdCode>\\d* )(?<phoneNumber>\\d{10})", , "${phoneNumber}", , )'
    assert evaluate(text, telephoneNumber="+91 9998887777") == "9998887777"


def test_mobile_digits_only() -> None:
    assert evaluate(r'Replace([mobile], , "[()\\s-]+", , "", , )', mobile="1 (999) 888-7777") == "19998887777"


def test_time_zone_by_state() -> None:
    text = ('Switch([state], "Australia/Sydney", "NSW", "Australia/Sydney", "QLD", "Australia/Brisbane", "SA", '
            '"Australia/Adelaide")')
    assert [evaluate(text, state=state) for state in ("NSW", "QLD", "SA", None)] == [
        "Australia/Sydney", "Australia/Brisbane", "Australia/Adelaide", "Australia/Sydney",
    ]


def test_alias_from_first_and_last_name() -> None:
    assert evaluate("Append(Mid([givenName], 1, 3), Mid([surname], 1, 5))", givenName="John", surname="Doe") == "JohDoe"


def test_identifier_from_object_id() -> None:
    # Microsoft's sample output belongs to another object id; the rule is "1000" then the digits of
    # the UTF-8 hex of the id.
    object_id = "00aa00aa-bb11-cc22-dd33-44ee44ee44ee"
    text = 'Join("", 1000, Replace(ConvertToUTF8Hex([objectId]), , "[a-zA-Z_]*", , "", , ))'
    value = evaluate(text, objectId=object_id)
    assert value == "1000" + re.sub("[A-F]", "", object_id.encode().hex().upper())
    assert str(value).isdigit()


def test_the_default_entra_to_scim_user_expressions() -> None:
    user = {"IsSoftDeleted": False, "mailNickname": "ann", "userPrincipalName": "ann@contoso.com"}
    assert evaluate("Not([IsSoftDeleted])", **user) is True
    assert evaluate('Not([IsSoftDeleted])', IsSoftDeleted="True") is False
    assert evaluate("[mailNickname]", **user) == "ann"


def test_hire_date_workday_window() -> None:
    from datetime import UTC, datetime

    text = 'IIF(DateDiff("d", Now(), CDate([StatusHireDate])) > 5, "False", "True")'
    context = EvaluationContext(now=datetime(2021, 8, 25, 17, 41, 18, tzinfo=UTC))
    expression = parse_expression(text)
    assert expression.evaluate({"StatusHireDate": "2021-09-01-07:00"}, context) == "False"  # 6 days ahead
    assert expression.evaluate({"StatusHireDate": "2021-08-31-07:00"}, context) == "True"  # 5 days 13 hours: 5
    assert expression.evaluate({"StatusHireDate": "2021-08-28-07:00"}, context) == "True"
