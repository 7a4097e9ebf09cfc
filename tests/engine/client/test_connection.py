"""Test Connection (entra-scim-requests.md §1.2): two probes for a random GUID; each way a target
can be wrong is one ConnectionProblem kind. Nothing is retried."""

from __future__ import annotations

import ssl
import uuid
from pathlib import Path

import pytest

from identity_sync.engine.client import BearerToken, ConnectionProblem, ScimClient
from tests.auth.tls_helpers import self_signed
from tests.engine.client.scripted import EMPTY_LIST, Reply, html, json_reply, scim_error, scripted, sequence
from tests.engine.targets import Target
from tests.pg import free_port

pytestmark = pytest.mark.anyio

TOKEN = "connection-test-token-0123456789"


async def problem(url: str, **options: object) -> ConnectionProblem:
    async with ScimClient(url, BearerToken(TOKEN), **options) as client:  # type: ignore[arg-type]
        with pytest.raises(ConnectionProblem) as raised:
            await client.test_connection()
    assert TOKEN not in str(raised.value)
    return raised.value


async def test_an_empty_list_response_for_both_probes_is_a_working_target() -> None:
    with scripted(sequence(json_reply(EMPTY_LIST))) as server:
        async with ScimClient(server.url, BearerToken(TOKEN)) as client:
            assert await client.test_connection(user_attribute="externalId") is None
    users, groups = server.requests("GET")
    assert users.path == "/Users" and groups.path == "/Groups"
    attribute, op, literal = users.query["filter"][0].split(" ", 2)
    assert (attribute, op) == ("externalId", "eq") and uuid.UUID(literal.strip('"'))
    assert groups.query["excludedAttributes"] == ["members"]
    assert groups.query["filter"][0].startswith("displayName eq ")


@pytest.mark.parametrize(("reply", "kind"), [
    (scim_error(404, "no such endpoint"), "not_found"),
    (scim_error(401, "bad token"), "unauthorized"),
    (html(403), "forbidden"),
    (html(200), "not_scim"),
    (json_reply({"id": "x"}), "not_scim"),
    (json_reply({**EMPTY_LIST, "totalResults": 3, "Resources": [{"id": "a"}]}), "not_scim"),
    (scim_error(400, "cannot filter on userName", "invalidFilter"), "not_scim"),
    (scim_error(503, "maintenance"), "unreachable"),
])
async def test_each_wrong_answer_is_its_kind_of_problem(reply: Reply, kind: str) -> None:
    with scripted(sequence(reply)) as server:
        found = await problem(server.url)
    assert found.kind == kind and found.reason
    assert len(server.requests()) == 1  # not retried: the admin is waiting


async def test_a_refused_port_is_unreachable() -> None:
    assert (await problem(f"http://127.0.0.1:{free_port()}")).kind == "unreachable"


async def test_a_slow_target_is_unreachable() -> None:
    with scripted(sequence(Reply(200, EMPTY_LIST, delay=2.0))) as server:
        assert (await problem(server.url, timeout=0.6)).kind == "unreachable"


async def test_a_self_signed_certificate_is_a_tls_problem_unless_trusted(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    with scripted(sequence(json_reply(EMPTY_LIST)), tls=server_side) as server:
        found = await problem(server.url)
        assert found.kind == "tls" and "certificate" in found.reason
        trusted = ssl.create_default_context(cafile=str(cert))
        async with ScimClient(server.url, BearerToken(TOKEN), verify=trusted) as client:
            assert await client.test_connection() is None


async def test_real_targets_pass_and_a_wrong_token_is_unauthorized(our_target: Target, scim2_target: Target) -> None:
    for target in (our_target, scim2_target):
        async with ScimClient(target.base_url, BearerToken(target.token)) as client:
            assert await client.test_connection() is None
        assert (await problem(target.base_url)).kind == "unauthorized"


async def test_a_wrong_tenant_url_on_our_service_is_reported(our_target: Target) -> None:
    wrong = our_target.base_url.rsplit("/", 1)[0] + "/no-such-tenant"
    async with ScimClient(wrong, BearerToken(our_target.token)) as client:
        with pytest.raises(ConnectionProblem) as raised:
            await client.test_connection()
    # Our service does not say whether a tenant exists: a token for another Tenant URL is a 401.
    assert raised.value.kind == "unauthorized"
