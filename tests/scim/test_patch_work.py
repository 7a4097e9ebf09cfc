"""PATCH costs work linear in what it names (issue 11): adding or removing n values of a
multi-valued attribute compares each value a constant number of times, never each value with every
other (4,000 emails used to be 8 million comparisons, and a 1 MiB body minutes of CPU).

Work is measured by counting the comparison-form computations (``comparable``) a PATCH makes, not
by timing: the counts are exact and the same on every machine."""

from __future__ import annotations

from typing import Any

import pytest

from identity_sync.errors import BadRequest
from identity_sync.scim import patch
from identity_sync.scim.patch import apply_operations, parse_operations
from identity_sync.scim.registry import USER
from identity_sync.scim.resource import normalize

GR = "urn:ietf:params:scim:schemas:extension:GlobalRelay:2.0:User"
ROOMY = 100_000  # a cap out of the way: these tests measure work, not the cap


@pytest.fixture
def comparisons(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many times PATCH computed a value's comparison form."""
    counter = {"calls": 0}
    real = patch.comparable

    def counting(attr: Any, value: Any) -> Any:
        counter["calls"] += 1
        return real(attr, value)

    monkeypatch.setattr(patch, "comparable", counting)
    return counter


def _apply(doc: dict[str, Any], *operations: dict[str, Any], max_values: int = ROOMY) -> dict[str, Any]:
    parsed = parse_operations({"Operations": list(operations)}, max_operations=1_000)
    return apply_operations(USER, doc, parsed, max_values=max_values)


def _emails(count: int, prefix: str = "u", kind: str = "work") -> list[dict[str, Any]]:
    return [{"value": f"{prefix}{i}@example.com", "type": kind} for i in range(count)]


def _work_to_add(comparisons: dict[str, int], count: int) -> int:
    comparisons["calls"] = 0
    result = _apply({"userName": "a"}, {"op": "add", "path": "emails", "value": _emails(count)})
    assert len(result["emails"]) == count
    return comparisons["calls"]


def test_adding_n_new_emails_compares_each_a_constant_number_of_times(comparisons: dict[str, int]) -> None:
    small, large = _work_to_add(comparisons, 2_000), _work_to_add(comparisons, 4_000)

    assert large <= 3 * 4_000  # quadratic de-duplication made 8,000,000
    assert large <= 2.1 * small  # twice the values, twice the work


def test_adding_values_that_are_all_there_already_is_linear(comparisons: dict[str, int]) -> None:
    doc = normalize(USER, {"userName": "a", "emails": _emails(3_000)}, max_values=ROOMY)
    comparisons["calls"] = 0

    result = _apply(doc, {"op": "add", "path": "emails", "value": _emails(3_000)})

    assert result["emails"] == doc["emails"]
    assert comparisons["calls"] <= 3 * 6_000


def test_removing_n_of_n_values_is_linear(comparisons: dict[str, int]) -> None:
    doc = normalize(USER, {"userName": "a", "emails": _emails(4_000)}, max_values=ROOMY)
    doomed = [{"value": f"U{i}@EXAMPLE.COM"} for i in range(0, 4_000, 2)]  # every other one, any case
    comparisons["calls"] = 0

    result = _apply(doc, {"op": "remove", "path": "emails", "value": doomed})

    assert [e["value"] for e in result["emails"]] == [f"u{i}@example.com" for i in range(1, 4_000, 2)]
    assert comparisons["calls"] <= 3 * (4_000 + 2_000)  # pairwise removal made 8,000,000


def test_a_simple_multi_valued_attribute_is_linear_too(comparisons: dict[str, int]) -> None:
    addresses = [f"smtp:u{i}@example.com" for i in range(4_000)]
    result = _apply({"userName": "a"}, {"op": "add", "path": f"{GR}:proxyAddresses", "value": addresses + addresses})

    assert result[GR]["proxyAddresses"] == addresses
    assert comparisons["calls"] == 0  # proxyAddresses compare exactly: no comparison form at all


# -- what the linear merge keeps of the quadratic one's meaning ---------------------------------------


def test_an_added_value_equal_to_one_there_takes_its_place_by_case_rule_and_type() -> None:
    doc = normalize(USER, {"userName": "a", "emails": [
        {"value": "Ada@Example.com", "type": "work"}, {"value": "ada@example.com", "type": "home"}]})

    result = _apply(doc, {"op": "add", "path": "emails", "value": [
        {"value": "ADA@example.COM", "type": "work", "display": "Ada"},  # same as the first: merged into it
        {"value": "ada@example.com", "type": "other"},  # another type: a new value
    ]})

    assert result["emails"] == [
        {"value": "ADA@example.COM", "type": "work", "display": "Ada"},
        {"value": "ada@example.com", "type": "home"},
        {"value": "ada@example.com", "type": "other"},
    ]


def test_duplicates_within_one_add_collapse_into_the_first_and_primary_stays_single() -> None:
    result = _apply({"userName": "a"}, {"op": "add", "path": "emails", "value": [
        {"value": "a@x.com", "type": "work"}, {"value": "b@x.com", "type": "work"},
        {"value": "A@X.COM", "type": "work", "primary": True}]})
    assert result["emails"] == [{"value": "A@X.COM", "type": "work", "primary": True},
                                {"value": "b@x.com", "type": "work"}]

    again = _apply(result, {"op": "add", "path": "emails", "value": [{"value": "b@x.com", "type": "work",
                                                                       "primary": True}]})
    assert [e.get("primary") for e in again["emails"]] == [False, True]


def test_proxy_addresses_differing_only_in_prefix_case_are_both_kept() -> None:
    result = _apply({"userName": "a"}, {"op": "add", "path": f"{GR}:proxyAddresses",
                                        "value": ["SMTP:a@x.com", "smtp:a@x.com", "SMTP:a@x.com"]})
    assert result[GR]["proxyAddresses"] == ["SMTP:a@x.com", "smtp:a@x.com"]


def test_remove_with_values_names_elements_by_every_sub_attribute_given() -> None:
    doc = normalize(USER, {"userName": "a", "emails": [
        {"value": "a@x.com", "type": "work"}, {"value": "a@x.com", "type": "home"}, {"value": "b@x.com"}]})

    result = _apply(doc, {"op": "remove", "path": "emails", "value": [
        {"value": "A@X.com", "type": "home"}, {"value": "b@x.com", "display": "B"}]})

    # type must match too (case rule of value applies), and so must a display the element lacks
    assert result["emails"] == [{"value": "a@x.com", "type": "work"}, {"value": "b@x.com"}]


# -- the cap on values ------------------------------------------------------------------------------


def test_a_patch_may_not_grow_an_attribute_past_the_cap_and_changes_nothing() -> None:
    doc = normalize(USER, {"userName": "a", "emails": _emails(8)})

    with pytest.raises(BadRequest) as refused:
        _apply(doc, {"op": "add", "path": "emails", "value": _emails(3, prefix="new")}, max_values=10)
    assert refused.value.scim_type == "invalidValue" and "at most 10" in refused.value.detail
    with pytest.raises(BadRequest) as too_many_at_once:
        _apply(doc, {"op": "replace", "path": "emails", "value": _emails(11)}, max_values=10)
    assert too_many_at_once.value.scim_type == "invalidValue"

    assert len(_apply(doc, {"op": "add", "path": "emails", "value": _emails(2, prefix="new")},
                      max_values=10)["emails"]) == 10
    assert len(doc["emails"]) == 8


def test_a_list_stored_longer_than_the_cap_may_still_shrink_or_be_left_alone() -> None:
    doc = normalize(USER, {"userName": "a", "emails": _emails(12)}, max_values=ROOMY)  # stored before the cap

    assert _apply(doc, {"op": "replace", "path": "displayName", "value": "Ada"}, max_values=10)["displayName"] == "Ada"
    shrunk = _apply(doc, {"op": "remove", "path": 'emails[value eq "u0@example.com"]'}, max_values=10)
    assert len(shrunk["emails"]) == 11
    with pytest.raises(BadRequest):
        _apply(doc, {"op": "add", "path": "emails", "value": _emails(1, prefix="new")}, max_values=10)


# -- a filtered sub-attribute operation touches only the elements it matches ------------------------


@pytest.mark.parametrize("operation", [
    {"op": "replace", "path": 'emails[value eq "b@x.com"].display', "value": "B"},
    {"op": "add", "path": 'emails[value eq "b@x.com"].display', "value": "B"},
    {"op": "remove", "path": 'emails[value eq "b@x.com"].display'},
])
def test_a_filter_on_value_leaves_the_other_elements_whole(operation: dict[str, Any]) -> None:
    """The elements not matched used to be dropped (or re-created without their type) when all
    they held was a value and a type: their keys minus the filter's ``value`` looked empty."""
    doc = normalize(USER, {"userName": "a", "emails": [
        {"value": "a@x.com", "type": "work"}, {"value": "b@x.com", "type": "home", "display": "old"},
        {"value": "c@x.com", "type": "other"}]})

    result = _apply(doc, operation)

    expected_b = {"value": "b@x.com", "type": "home"} | ({} if operation["op"] == "remove" else {"display": "B"})
    assert result["emails"] == [{"value": "a@x.com", "type": "work"}, expected_b, {"value": "c@x.com", "type": "other"}]


def test_clearing_the_value_of_the_matched_element_still_removes_what_is_left_of_it() -> None:
    doc = normalize(USER, {"userName": "a", "emails": [
        {"value": "a@x.com", "type": "work", "primary": True}, {"value": "b@x.com", "type": "home"}]})

    result = _apply(doc, {"op": "replace", "path": 'emails[type eq "work"].value', "value": ""})

    assert result["emails"] == [{"value": "b@x.com", "type": "home"}]
