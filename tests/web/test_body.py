"""Request bodies (web/body.py): JSON only, and nesting capped at ``json_max_depth`` levels — however
many brackets a body holds in its strings or side by side."""

from __future__ import annotations

import orjson
import pytest

from identity_sync.errors import BadRequest
from identity_sync.web.body import parse_json

LIMIT = 8


def _nested(levels: int) -> object:
    value: object = "leaf"
    for level in range(levels):
        value = {"a": value} if level % 2 else [value]
    return value


@pytest.mark.parametrize("levels", [1, LIMIT - 1, LIMIT])
def test_a_body_nested_up_to_the_limit_is_read(levels: int) -> None:
    raw = orjson.dumps({"x": _nested(levels - 1)})
    assert parse_json(raw, "application/scim+json", max_depth=LIMIT) == orjson.loads(raw)


@pytest.mark.parametrize("levels", [LIMIT + 1, 10 * LIMIT])
def test_a_body_nested_past_the_limit_is_refused(levels: int) -> None:
    with pytest.raises(BadRequest) as refused:
        parse_json(orjson.dumps({"x": _nested(levels - 1)}), "application/json", max_depth=LIMIT)
    assert refused.value.scim_type == "invalidSyntax" and str(LIMIT) in refused.value.detail


def test_brackets_in_strings_and_wide_bodies_are_not_depth() -> None:
    wide = {"emails": [{"value": f"{n}@x.com"} for n in range(50)], "title": "[[[[{{{{" * 10}
    assert parse_json(orjson.dumps(wide), "application/scim+json", max_depth=LIMIT) == wide
