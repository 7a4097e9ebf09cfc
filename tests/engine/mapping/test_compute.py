"""Evaluation of a mapping for one object, and the diff that decides what travels (§1.4, §2.1)."""

from __future__ import annotations

import pytest

from identity_sync.engine.jsonfile import load_json_text
from identity_sync.engine.mapping.compute import (
    REDACTED,
    MappingEvaluationError,
    compute_values,
    diff,
    digest,
    same,
    shown,
    stored_form,
)
from identity_sync.engine.mapping.expressions import EvaluationContext
from identity_sync.engine.mapping.model import ObjectMapping, parse_mapping
from identity_sync.engine.model import Change


def _users(*mappings: dict[str, object]) -> ObjectMapping:
    import json

    document = {"users": {"mappings": [{"target": "userName", "source": "upn", "matching": 1}, *mappings]}}
    return parse_mapping(load_json_text(json.dumps(document), "m.json")).users


def _values(mapping: ObjectMapping, attributes: dict[str, object], *, creating: bool = True) -> dict[str, object]:
    return compute_values(mapping, attributes, EvaluationContext(), creating=creating).values


def test_direct_constant_and_expression_mappings() -> None:
    mapping = _users({"target": "title", "source": "jobTitle"}, {"target": "userType", "constant": "Employee"},
                     {"target": "nickName", "expression": 'Join(".", [givenName], [surname])'})
    assert _values(mapping, {"upn": "a@x", "jobTitle": "CEO", "givenName": "Ada", "surname": "L"}) == {
        "userName": "a@x", "title": "CEO", "userType": "Employee", "nickName": "Ada.L"}


def test_source_attribute_names_are_case_insensitive_as_in_entra() -> None:
    assert _values(_users({"target": "title", "source": "JOBTITLE"}), {"upn": "a", "jobTitle": "CEO"})["title"] == "CEO"


def test_default_value_applies_on_creation_only() -> None:
    mapping = _users({"target": "title", "source": "jobTitle", "default": "Staff"})
    assert _values(mapping, {"upn": "a"})["title"] == "Staff"
    assert "title" not in _values(mapping, {"upn": "a"}, creating=False)


def test_only_during_creation_mappings_do_not_flow_on_update() -> None:
    mapping = _users({"target": "title", "source": "jobTitle", "flow": "create"})
    assert _values(mapping, {"upn": "a", "jobTitle": "CEO"})["title"] == "CEO"
    assert "title" not in _values(mapping, {"upn": "a", "jobTitle": "CEO"}, creating=False)


def test_nulls_and_empty_strings_are_not_provisioned() -> None:
    mapping = _users({"target": "title", "source": "jobTitle"}, {"target": "nickName", "expression": 'Join("", [x])'})
    assert _values(mapping, {"upn": "a", "jobTitle": ""}) == {"userName": "a"}


def test_ignore_flow_drops_the_attribute() -> None:
    mapping = _users({"target": "title", "expression": "IgnoreFlowIfNullOrEmpty([jobTitle])"})
    assert "title" not in _values(mapping, {"upn": "a"})
    assert _values(mapping, {"upn": "a", "jobTitle": "CEO"})["title"] == "CEO"


def test_types_are_coerced_and_a_list_for_a_single_valued_attribute_fails_with_entras_code() -> None:
    mapping = _users({"target": "active", "source": "enabled"}, {"target": "title", "source": "titles"})
    assert _values(mapping, {"upn": "a", "enabled": "TRUE"})["active"] is True
    assert _values(mapping, {"upn": "a", "titles": ["only one"]})["title"] == "only one"
    with pytest.raises(MappingEvaluationError) as raised:
        _values(mapping, {"upn": "a", "titles": ["one", "two"]})
    assert raised.value.error_code == "SchemaPropertyCanOnlyAcceptValue"
    with pytest.raises(MappingEvaluationError):
        _values(mapping, {"upn": "a", "enabled": "maybe"})


def test_an_expression_failing_for_one_object_is_that_objects_failure() -> None:
    mapping = _users({"target": "title", "expression": "CDate([hired])"})
    with pytest.raises(MappingEvaluationError) as raised:
        _values(mapping, {"upn": "a", "hired": "not a date"})
    assert raised.value.target == "title"


def test_only_changed_attributes_travel_and_nulls_never_clear() -> None:
    changes = diff({"userName": "a", "title": "CEO", "active": True}, {"userName": "a", "title": "CTO",
                                                                       "nickName": "x", "active": "True"},
                   references=frozenset(), redacted=frozenset(), multi_valued=frozenset())
    assert changes == [Change("title", "CEO")]


def test_a_removed_reference_is_sent_as_a_removal() -> None:
    manager = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"
    assert diff({"userName": "a"}, {"userName": "a", manager: "m1"}, references=frozenset({manager}),
                redacted=frozenset(), multi_valued=frozenset()) == [Change(manager, None)]


def test_multi_valued_values_compare_as_sets() -> None:
    assert same(["b", "a"], ["a", "b"], multi=True)
    assert not same(["a"], ["a", "b"], multi=True)
    assert same("a", ["a"], multi=True)


def test_redacted_values_are_stored_as_digests_and_shown_as_redact() -> None:
    stored = stored_form({"userName": "a", "password": "s3cret"}, frozenset({"password"}))
    assert "s3cret" not in str(stored) and stored["userName"] == "a"
    assert same(stored["password"], "s3cret", redacted=True)
    assert not same(stored["password"], "other", redacted=True)
    assert shown("password", "s3cret", frozenset({"password"})) == REDACTED
    assert digest(stored) == digest(dict(reversed(list(stored.items()))))
    assert digest({"p": ["a", "b"]}) == digest({"p": ["b", "a"]})
