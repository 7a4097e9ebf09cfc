"""One check for every filter consumer: the SQL compiler and the in-memory evaluator refuse the
same filters with the same error, because both take what ``check_filter`` returns."""

from __future__ import annotations

import pytest

from identity_sync.errors import BadRequest
from identity_sync.scim.evaluate import Candidate, matches
from identity_sync.scim.filter import parse_filter
from identity_sync.scim.filter_check import AllOf, Elements, ElementTerm, Term, check_filter
from identity_sync.scim.registry import GROUP, USER, ResourceType
from identity_sync.storage.filter_sql import compile_filter
from identity_sync.storage.sqltext import Sql

BAD = [
    (USER, 'nosuch eq "x"', "Unknown attribute"),
    (USER, 'urn:example:nosuch:1.0:User:x eq "x"', "Unknown schema"),
    (USER, 'name gt "x"', "cannot be compared directly"),
    (USER, "active gt true", "Booleans can only be compared with eq or ne."),
    (USER, 'emails[primary lt "true"]', "Booleans can only be compared with eq or ne."),
    (USER, "userName gt null", "null can only be compared with eq or ne."),
    (USER, "id co null", "null can only be compared with eq or ne."),
    (USER, 'emails[value sw null]', "null can only be compared with eq or ne."),
    (USER, 'meta eq "x"', "meta sub-attribute"),
    (USER, 'meta.resourceType co "User"', "Unsupported operator for meta.resourceType"),
    (USER, 'meta.location eq "x"', "Filtering on meta.location is not supported."),
    (USER, 'meta.created co "2026"', "A dateTime is compared with"),
    (USER, 'meta.lastModified gt "yesterday"', "A dateTime literal is required here."),
    (USER, "meta.created gt 5", "A dateTime is compared with"),
    (USER, 'userName[value eq "x"]', "cannot take a value filter"),
    (USER, 'emails[nosuch eq "x"]', "Unknown sub-attribute in value filter: emails.nosuch"),
    (USER, 'groups.display eq "x"', "can be filtered with value eq/ne or pr only"),
    (GROUP, 'members gt "x"', "can be filtered with value eq/ne or pr only"),
    (GROUP, "members eq 5", "can be filtered with value eq/ne or pr only"),
    (GROUP, 'members[value eq "a" or value eq "b"]', "takes one value eq/ne or pr term"),
    (GROUP, 'members[type eq "User"]', "can be filtered with value eq/ne or pr only"),
    # A bad term is refused on either side of an `or`, whatever the data.
    (USER, 'userName eq "x" or nosuch pr', "Unknown attribute"),
    (USER, 'not (active ge false) and userName pr', "Booleans can only be compared with eq or ne."),
]


def _compiler_error(rt: ResourceType, text: str) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        compile_filter(Sql("sqlite"), rt, parse_filter(text))
    return caught.value


def _evaluator_error(rt: ResourceType, text: str) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        matches(rt, Candidate("id", {}, "2026-01-01T00:00:00.000000Z", "2026-01-01T00:00:00.000000Z"),
                parse_filter(text))
    return caught.value


@pytest.mark.parametrize(("rt", "text", "message"), BAD, ids=[text for _, text, _ in BAD])
def test_compiler_and_evaluator_refuse_the_same_filters_the_same_way(rt: ResourceType, text: str,
                                                                     message: str) -> None:
    compiled, evaluated = _compiler_error(rt, text), _evaluator_error(rt, text)
    assert (compiled.status, compiled.scim_type, str(compiled)) == (evaluated.status, evaluated.scim_type,
                                                                     str(evaluated))
    assert compiled.status == 400 and compiled.scim_type == "invalidFilter"
    assert message in str(compiled)


GOOD = ['userName eq "x"', "active eq true", 'active ne "True"', "emails pr", 'emails eq "a@b"',
        'emails[type eq "work" and value co "@"]', 'meta.lastModified gt "2026-01-01T00:00:00Z"',
        'meta.resourceType eq "User"', "title eq null", 'groups.value eq "g"', 'not (id eq "x")',
        'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "m"']


@pytest.mark.parametrize("text", GOOD)
def test_what_the_check_accepts_both_consumers_accept(text: str) -> None:
    checked = check_filter(USER, parse_filter(text))
    assert compile_filter(Sql("sqlite"), USER, checked)
    assert matches(USER, Candidate("id", {}, "", ""), checked) in (True, False)


def test_the_checked_filter_is_resolved() -> None:
    checked = check_filter(USER, parse_filter('EMAILS eq "a@b" and emails[TYPE eq "work"] and '
                                              'meta.created ge "2026-01-01T01:00:00+01:00"'))
    assert isinstance(checked, AllOf) and isinstance(checked.left, AllOf)
    direct, elements = checked.left.left, checked.left.right
    assert isinstance(direct, Term) and direct.kind == "value"
    assert (direct.resolved.attribute.name, direct.resolved.target.name) == ("emails", "value")
    assert isinstance(elements, Elements) and isinstance(elements.inner, ElementTerm)
    assert elements.inner.sub.name == "type"
    created = checked.right
    assert isinstance(created, Term) and created.kind == "meta_time"
    assert created.value == "2026-01-01T00:00:00.000000Z"  # in stored (UTC) form


def test_a_nested_value_filter_built_by_hand_is_refused_by_both() -> None:
    """The parser refuses ``emails[addresses[…]]`` already; an AST built in code meets the check."""
    from identity_sync.scim.filter_ast import AttrPath, Compare, ValuePath

    node = ValuePath(AttrPath(None, "emails"), ValuePath(AttrPath(None, "addresses"),
                                                        Compare(AttrPath(None, "type"), "eq", "x")))
    with pytest.raises(BadRequest, match="Value filters cannot be nested.") as compiled:
        compile_filter(Sql("postgresql"), USER, node)
    with pytest.raises(BadRequest, match="Value filters cannot be nested.") as evaluated:
        matches(USER, Candidate("id", {}, "", ""), node)
    assert compiled.value.scim_type == evaluated.value.scim_type == "invalidFilter"
