"""Bad input: one clear line naming what is wrong, and not a single request sent."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from identity_sync.engine.client import BearerToken, ScimClient
from identity_sync.engine.model import Change
from tests.engine.client.scripted import Reply, scripted

pytestmark = pytest.mark.anyio

Call = Callable[[ScimClient], Awaitable[Any]]

BAD_CALLS: list[tuple[Call, str]] = [
    (lambda c: c.find("Device", "name", "x"), "resource type 'Device'"),
    (lambda c: c.find("User", 'userName eq "x" or userName', "y"), "attribute path 'userName eq"),
    (lambda c: c.find("User", "userName", None), "filter value for userName"),
    (lambda c: c.get("User", ""), "User id ''"),
    (lambda c: c.create("User", {'emails[type eq "work".value': "x"}), "attribute path 'emails"),
    (lambda c: c.update("User", "u1", [Change("title", "a"), Change('addresses[type pr].locality', "b")]),
     "only 'eq' terms"),
    (lambda c: c.update("Group", "g1", [Change("members", ["u1"])]), "add_members/remove_members"),
    (lambda c: c.add_members("g1", ["u1", ""]), "member id ''"),
    (lambda c: c.remove_members("", ["u1"]), "Group id ''"),
]


@pytest.mark.parametrize(("call", "message"), BAD_CALLS)
async def test_bad_input_is_refused_before_anything_is_sent(call: Call, message: str) -> None:
    with scripted(lambda seen: Reply(500)) as server:
        async with ScimClient(server.url, BearerToken("input-test-token")) as client:
            with pytest.raises(ValueError, match=re.escape(message)) as raised:
                await call(client)
    assert "\n" not in str(raised.value)
    assert server.requests() == []


@pytest.mark.parametrize(("options", "message"), [
    ({"dialect": "okta"}, "unknown SCIM dialect 'okta'"),
    ({"max_in_flight": 0}, "max_in_flight"),
    ({"max_retries": -1}, "max_retries"),
    ({"timeout": 0}, "timeout"),
    ({"members_per_request": 0}, "members_per_request"),
])
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScimClient("https://scim.example.test/scim", BearerToken("input-test-token"), **options)


def test_a_tenant_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="tenant URL 'scim.example.test': expected an http"):
        ScimClient("scim.example.test", BearerToken("input-test-token"))
