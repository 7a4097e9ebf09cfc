"""OAuth 2.0 client credentials (entra-scim-requests.md §4.4): the token request in each of
Entra's three ways of sending credentials, caching until shortly before expiry, one refresh on a
401, and the failures of the token endpoint — against a scripted token endpoint and against this
project's real service."""

from __future__ import annotations

import asyncio
import base64
import itertools
from urllib.parse import parse_qs

import pytest

from identity_sync.engine.client import BearerToken, ClientCredentials, ConnectionProblem, ScimClient, TargetError
from tests.engine.client.scripted import EMPTY_LIST, FakeTime, Reply, Seen, html, json_reply, scim_error, scripted
from tests.engine.conftest import unique
from tests.engine.targets import Target

pytestmark = pytest.mark.anyio

CLIENT_ID = "engine-client"
SECRET = "client-secret-that-must-stay-secret"


class TokenIssuer:
    """A token endpoint at /oauth/token and a SCIM endpoint that accepts only live tokens."""

    def __init__(self, expires_in: int = 3600) -> None:
        self.expires_in = expires_in
        self.counter = itertools.count(1)
        self.live: set[str] = set()
        self.token_requests: list[Seen] = []

    def __call__(self, seen: Seen) -> Reply:
        if seen.path == "/oauth/token":
            self.token_requests.append(seen)
            token = f"tok-{next(self.counter)}"
            self.live.add(token)
            return json_reply({"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in})
        if seen.headers.get("authorization", "").removeprefix("Bearer ") not in self.live:
            return scim_error(401, "token not valid")
        return json_reply(EMPTY_LIST)


def form(seen: Seen) -> dict[str, list[str]]:
    return parse_qs(seen.body.decode())


@pytest.mark.parametrize("send", ["header", "body", "both"])
async def test_token_request_sends_credentials_as_entra_does(send: str) -> None:
    issuer = TokenIssuer()
    with scripted(issuer) as server:
        auth = ClientCredentials(f"{server.url}/oauth/token", CLIENT_ID, SECRET, scope="scim", send_credentials=send)
        async with ScimClient(server.url, auth) as client:
            await client.find("User", "userName", "ada@example.com")
    (request,) = issuer.token_requests
    body = form(request)
    assert request.method == "POST" and request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert body["grant_type"] == ["client_credentials"] and body["scope"] == ["scim"]
    basic = request.headers.get("authorization")
    if send in ("header", "both"):
        assert basic == "Basic " + base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
    else:
        assert basic is None
    if send in ("body", "both"):
        assert body["client_id"] == [CLIENT_ID] and body["client_secret"] == [SECRET]
    else:
        assert "client_secret" not in body


async def test_the_token_is_fetched_once_for_many_concurrent_requests() -> None:
    issuer = TokenIssuer()
    with scripted(issuer) as server:
        auth = ClientCredentials(f"{server.url}/oauth/token", CLIENT_ID, SECRET)
        async with ScimClient(server.url, auth, max_in_flight=4) as client:
            await asyncio.gather(*(client.find("User", "userName", f"u{i}") for i in range(12)))
            assert client.requests_sent["GET"] == 12 and client.requests_sent["POST"] == 0
    assert auth.tokens_fetched == 1 and len(issuer.token_requests) == 1
    assert {s.headers["authorization"] for s in server.requests("GET")} == {"Bearer tok-1"}


async def test_the_token_is_renewed_shortly_before_it_expires() -> None:
    issuer = TokenIssuer(expires_in=120)
    fake = FakeTime()
    with scripted(issuer) as server:
        auth = ClientCredentials(f"{server.url}/oauth/token", CLIENT_ID, SECRET, clock=fake.clock)
        async with ScimClient(server.url, auth) as client:
            await client.find("User", "userName", "a")
            fake.now += 100  # 20 s left: still used (margin is a tenth of 120 s)
            await client.find("User", "userName", "b")
            assert auth.tokens_fetched == 1
            fake.now += 10  # 10 s left: renewed before use
            await client.find("User", "userName", "c")
    assert auth.tokens_fetched == 2
    assert [s.headers["authorization"] for s in server.requests("GET")] == ["Bearer tok-1"] * 2 + ["Bearer tok-2"]


async def test_a_401_fetches_a_new_token_once_then_gives_up() -> None:
    issuer = TokenIssuer()
    with scripted(issuer) as server:
        auth = ClientCredentials(f"{server.url}/oauth/token", CLIENT_ID, SECRET)
        async with ScimClient(server.url, auth) as client:
            await client.find("User", "userName", "a")
            issuer.live.clear()  # the target revoked tok-1: one 401, a new token, success
            await client.find("User", "userName", "b")
            assert auth.tokens_fetched == 2 and client.requests_sent["GET"] == 3

            def nothing_valid(seen: Seen) -> Reply:
                reply = issuer(seen)
                issuer.live.clear()  # every token is refused
                return reply

            server.script = nothing_valid
            issuer.live.clear()
            with pytest.raises(TargetError) as failed:
                await client.find("User", "userName", "c")
            assert client.requests_sent["GET"] == 5  # tok-2 refused, one new token, refused: stop
    assert (failed.value.error_code, failed.value.job_level) == ("Unauthorized", True)
    assert auth.tokens_fetched == 3
    assert SECRET not in str(failed.value) and "tok-" not in str(failed.value)


@pytest.mark.parametrize("reply", [json_reply({"error": "invalid_client"}, 401), html(200),
                                   json_reply({"token_type": "Bearer"}), json_reply({"error": "down"}, 503)])
async def test_a_failing_token_endpoint_stops_the_job_and_keeps_the_secret(reply: Reply) -> None:
    with scripted(lambda seen: reply if seen.path == "/oauth/token" else json_reply(EMPTY_LIST)) as server:
        auth = ClientCredentials(f"{server.url}/oauth/token", CLIENT_ID, SECRET)
        async with ScimClient(server.url, auth, max_retries=1, sleep=FakeTime().sleep) as client:
            with pytest.raises(TargetError) as failed:
                await client.find("User", "userName", "a")
            assert client.requests_sent["GET"] == 0
    assert failed.value.job_level
    assert SECRET not in f"{failed.value} {failed.value.detail} {auth!r}"


def test_credentials_are_validated_and_never_shown() -> None:
    assert "tok" not in repr(BearerToken("tok-abc"))
    assert SECRET not in repr(ClientCredentials("https://idp.example/token", CLIENT_ID, SECRET))
    with pytest.raises(ValueError, match="bearer token"):
        BearerToken(" ")
    with pytest.raises(ValueError, match="token endpoint"):
        ClientCredentials("ftp://x", CLIENT_ID, SECRET)
    with pytest.raises(ValueError, match="client id and client secret"):
        ClientCredentials("https://idp.example/token", CLIENT_ID, "")


@pytest.mark.parametrize("send", ["header", "body", "both"])
async def test_client_credentials_against_our_service(our_target: Target, send: str) -> None:
    assert our_target.token_endpoint and our_target.client_id and our_target.client_secret
    auth = ClientCredentials(our_target.token_endpoint, our_target.client_id, our_target.client_secret,
                             send_credentials=send)
    async with ScimClient(our_target.base_url, auth) as client:
        await client.test_connection()
        created = await client.create("User", {"userName": unique("oauth") + "@example.com", "active": True})
        assert [u["id"] for u in await client.find("User", "userName", created["userName"])] == [created["id"]]
    assert auth.tokens_fetched == 1


def test_one_credential_serves_cycles_on_successive_event_loops() -> None:
    issuer = TokenIssuer()

    async def cycle(url: str, auth: ClientCredentials) -> None:
        async with ScimClient(url, auth, max_in_flight=2) as client:
            await asyncio.gather(*(client.find("User", "userName", f"u{i}") for i in range(6)))

    with scripted(issuer) as server:
        auth = ClientCredentials(f"{server.url}/oauth/token", CLIENT_ID, SECRET)
        asyncio.run(cycle(server.url, auth))
        asyncio.run(cycle(server.url, auth))  # a new loop: the cached token is reused, the lock is not
    assert auth.tokens_fetched == 1 and len(server.requests("GET")) == 12


@pytest.mark.parametrize(("token_reply", "kind"), [(json_reply({"error": "invalid_client"}, 401), "unauthorized"),
                                                   (json_reply({"error": "not here"}, 404), "not_scim")])
async def test_test_connection_reports_a_token_endpoint_that_refuses(token_reply: Reply, kind: str) -> None:
    with scripted(lambda seen: token_reply if seen.path == "/oauth/token" else json_reply(EMPTY_LIST)) as server:
        auth = ClientCredentials(f"{server.url}/oauth/token", CLIENT_ID, SECRET)
        async with ScimClient(server.url, auth) as client:
            with pytest.raises(ConnectionProblem) as raised:
                await client.test_connection()
    assert raised.value.kind == kind and "token endpoint" in raised.value.reason
    assert SECRET not in str(raised.value)


@pytest.mark.parametrize(("expires_in", "lifetime"), [(3600, 3600), ("1800", 1800), (None, 300), (-5, 300),
                                                      ("soon", 300), (True, 300)])
async def test_token_lifetime_is_read_leniently(expires_in: object, lifetime: float) -> None:
    fake = FakeTime()
    body = {"access_token": "tok", "token_type": "Bearer"}
    if expires_in is not None:
        body["expires_in"] = expires_in  # type: ignore[assignment]
    with scripted(lambda seen: json_reply(body) if seen.path == "/oauth/token" else json_reply(EMPTY_LIST)) as server:
        auth = ClientCredentials(f"{server.url}/oauth/token", CLIENT_ID, SECRET, clock=fake.clock)
        async with ScimClient(server.url, auth) as client:
            await client.find("User", "userName", "a")
            fake.now += lifetime - min(60, lifetime / 10) - 1  # just before the renewal point
            await client.find("User", "userName", "b")
            assert auth.tokens_fetched == 1
            fake.now += 2  # just after it
            await client.find("User", "userName", "c")
            assert auth.tokens_fetched == 2
