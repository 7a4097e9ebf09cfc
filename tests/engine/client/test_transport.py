"""The transport against a real loopback server that misbehaves on purpose: retries and their
waits, Retry-After, timeouts, what is final, what stops the job, headers, bounded concurrency,
and that no credential ever reaches an error or a log line."""

from __future__ import annotations

import asyncio
import email.utils
import ssl
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog

from identity_sync.engine.client import BearerToken, ScimClient, TargetError
from identity_sync.engine.client.transport import MAX_RETRY_AFTER_SECONDS, retry_after_seconds
from identity_sync.engine.model import Change
from tests.auth.tls_helpers import self_signed
from tests.engine.client.scripted import (
    EMPTY_LIST,
    FakeTime,
    Reply,
    Seen,
    html,
    json_reply,
    scim_error,
    scripted,
    sequence,
)
from tests.pg import free_port

pytestmark = pytest.mark.anyio

TOKEN = "s3cr3t-token-value-0123456789"
USER = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "u1", "userName": "ada@example.com"}


def client_for(url: str, fake: FakeTime | None = None, **options: object) -> ScimClient:
    timing = {"sleep": fake.sleep, "clock": fake.clock} if fake else {}
    return ScimClient(url, BearerToken(TOKEN), **timing, **options)  # type: ignore[arg-type]


async def test_429_waits_retry_after_seconds_then_succeeds() -> None:
    fake = FakeTime()
    with scripted(sequence(scim_error(429, "slow down", **{"Retry-After": "7"}), json_reply(EMPTY_LIST))) as server:
        async with client_for(server.url, fake) as client:
            assert await client.find("User", "userName", "ada@example.com") == []
            assert client.requests_sent["GET"] == 2
    assert fake.sleeps == [7.0]


async def test_429_retry_after_is_honoured_in_real_time() -> None:
    with scripted(sequence(scim_error(429, "slow down", **{"Retry-After": "1"}), json_reply(EMPTY_LIST))) as server:
        async with client_for(server.url) as client:
            began = time.monotonic()
            await client.find("User", "userName", "ada@example.com")
            elapsed = time.monotonic() - began
    first, second = server.requests("GET")
    assert second.at - first.at >= 0.95
    assert 0.95 <= elapsed < 5


async def test_429_pauses_every_request_of_the_client_not_only_the_throttled_one() -> None:
    throttled = {"done": False}

    def script(seen: Seen) -> Reply:
        if not throttled["done"]:
            throttled["done"] = True
            return scim_error(429, "slow down", **{"Retry-After": "1"})
        return json_reply(EMPTY_LIST)

    with scripted(script) as server:
        async with client_for(server.url) as client:
            began = time.monotonic()

            async def later() -> None:
                await asyncio.sleep(0.2)  # starts while the client is paused
                await client.find("User", "userName", "second")

            await asyncio.gather(client.find("User", "userName", "first"), later())
    first, *others = server.requests("GET")
    assert sorted(s.query["filter"][0] for s in others) == ['userName eq "first"', 'userName eq "second"']
    assert len(others) == 2 and all(s.at - first.at >= 0.95 for s in others)
    assert time.monotonic() - began < 5


async def test_429_with_an_http_date_waits_until_that_date() -> None:
    fake = FakeTime()
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    with scripted(sequence(scim_error(429, "slow down", **{"Retry-After": when}), json_reply(EMPTY_LIST))) as server:
        async with client_for(server.url, fake) as client:
            await client.find("User", "userName", "ada@example.com")
    assert len(fake.sleeps) == 1 and 27 <= fake.sleeps[0] <= 30


async def test_429_retry_after_is_capped_and_without_it_backs_off_with_jitter() -> None:
    fake = FakeTime()
    with scripted(sequence(scim_error(429, "x", **{"Retry-After": "86400"}), scim_error(429, "x"),
                           scim_error(429, "x"), json_reply(EMPTY_LIST))) as server:
        async with client_for(server.url, fake) as client:
            await client.find("User", "userName", "ada@example.com")
    assert fake.sleeps[0] == MAX_RETRY_AFTER_SECONDS
    # Exponential from 0.5 s, each step jittered between half and all of it.
    assert 0.5 <= fake.sleeps[1] <= 1.0 and 1.0 <= fake.sleeps[2] <= 2.0


async def test_429_forever_gives_up_after_max_retries_with_too_many_requests() -> None:
    fake = FakeTime()
    with scripted(sequence(scim_error(429, "x", **{"Retry-After": "1"}))) as server:
        async with client_for(server.url, fake, max_retries=3) as client:
            with pytest.raises(TargetError) as failed:
                await client.find("User", "userName", "ada@example.com")
    assert len(server.requests()) == 4 and fake.sleeps == [1.0, 1.0, 1.0]
    assert failed.value.error_code == "TooManyRequests" and failed.value.status == 429
    assert not failed.value.job_level


async def test_503_twice_then_200_is_retried_with_exponential_backoff() -> None:
    fake = FakeTime()
    with scripted(sequence(scim_error(503, "busy"), scim_error(503, "busy"), json_reply(USER))) as server:
        async with client_for(server.url, fake) as client:
            assert (await client.get("User", "u1")) == USER
    assert len(server.requests("GET")) == 3
    assert len(fake.sleeps) == 2 and 0.25 <= fake.sleeps[0] <= 0.5 and 0.5 <= fake.sleeps[1] <= 1.0


async def test_5xx_forever_ends_in_internal_server_error_and_501_is_not_retried() -> None:
    fake = FakeTime()
    with scripted(sequence(scim_error(500, "boom"))) as server:
        async with client_for(server.url, fake, max_retries=2) as client:
            with pytest.raises(TargetError) as failed:
                await client.get("User", "u1")
    assert len(server.requests()) == 3
    assert (failed.value.error_code, failed.value.job_level) == ("InternalServerError", False)
    with scripted(sequence(scim_error(501, "no PATCH here"))) as server:
        async with client_for(server.url, fake) as client:
            with pytest.raises(TargetError) as failed:
                await client.update("User", "u1", [Change("title", "x")])
    assert len(server.requests()) == 1 and failed.value.error_code == "NotImplemented"


@pytest.mark.parametrize(("reply", "code"), [
    (scim_error(409, "userName taken", "uniqueness"), "EntryConflict"),
    (scim_error(400, "taken", "uniqueness"), "EntryConflict"),
    (scim_error(400, "no such attribute", "invalidPath"), "SchemaAttributeNotFound"),
    (scim_error(400, "bad value", "invalidValue"), "UnprocessableEntity"),
])
async def test_4xx_is_final_and_names_entras_error_code(reply: Reply, code: str) -> None:
    fake = FakeTime()
    with scripted(sequence(reply)) as server:
        async with client_for(server.url, fake) as client:
            with pytest.raises(TargetError) as failed:
                await client.create("User", {"userName": "ada@example.com"})
    assert len(server.requests()) == 1 and fake.sleeps == []
    assert failed.value.error_code == code and failed.value.status == reply.status
    assert not failed.value.job_level and failed.value.detail == reply.body["detail"]
    assert f"POST /Users: {reply.status}" in str(failed.value)


async def test_404_means_gone_for_one_object_and_a_wrong_tenant_url_for_a_collection() -> None:
    with scripted(sequence(scim_error(404, "not found"))) as server:
        async with client_for(server.url) as client:
            assert await client.get("User", "u1") is None
            await client.delete("User", "u1")  # idempotent
            with pytest.raises(TargetError) as gone:
                await client.update("User", "u1", [Change("title", "x")])
            with pytest.raises(TargetError) as wrong_url:
                await client.find("User", "userName", "ada@example.com")
    assert (gone.value.error_code, gone.value.job_level) == ("InvalidAnchor", False)
    assert wrong_url.value.job_level and wrong_url.value.status == 404


async def test_a_slow_answer_times_out_and_is_retried() -> None:
    fake = FakeTime()
    with scripted(sequence(Reply(200, USER, delay=2.0), json_reply(USER))) as server:
        async with client_for(server.url, fake, timeout=0.6) as client:
            assert await client.get("User", "u1") == USER
    assert len(server.requests()) == 2 and len(fake.sleeps) == 1


async def test_a_timed_out_create_is_not_repeated_and_may_have_been_applied() -> None:
    fake = FakeTime()
    with scripted(sequence(Reply(201, USER, delay=2.0), json_reply(USER, 201))) as server:
        async with client_for(server.url, fake, timeout=0.6) as client:
            with pytest.raises(TargetError) as failed:
                await client.create("User", {"userName": "ada@example.com"})
    # A second POST could create a second object: the caller matches again instead.
    assert len(server.requests("POST")) == 1 and fake.sleeps == []
    assert failed.value.error_code == "Timeout" and failed.value.maybe_applied and not failed.value.job_level


async def test_a_create_retried_after_a_5xx_and_answered_409_is_a_conflict_that_may_be_ours() -> None:
    fake = FakeTime()
    with scripted(sequence(scim_error(500, "db hiccup"), scim_error(409, "exists", "uniqueness"))) as server:
        async with client_for(server.url, fake) as client:
            with pytest.raises(TargetError) as failed:
                await client.create("User", {"userName": "ada@example.com"})
    assert len(server.requests("POST")) == 2
    assert failed.value.error_code == "EntryConflict" and failed.value.maybe_applied


async def test_a_timed_out_patch_is_retried() -> None:
    fake = FakeTime()
    with scripted(sequence(Reply(204, delay=2.0), Reply(204))) as server:
        async with client_for(server.url, fake, timeout=0.6) as client:
            await client.update("User", "u1", [Change("title", "x")])
    assert len(server.requests("PATCH")) == 2 and len(fake.sleeps) == 1


async def test_503_retry_after_is_honoured_without_pausing_the_client() -> None:
    fake = FakeTime()
    with scripted(sequence(scim_error(503, "maintenance", **{"Retry-After": "4"}), json_reply(USER))) as server:
        async with client_for(server.url, fake) as client:
            assert await client.get("User", "u1") == USER
    assert fake.sleeps == [4.0]


async def test_timeouts_forever_end_in_timeout_that_a_get_never_applied() -> None:
    fake = FakeTime()
    with scripted(sequence(Reply(200, USER, delay=2.0))) as server:
        async with client_for(server.url, fake, timeout=0.6, max_retries=1) as client:
            with pytest.raises(TargetError) as failed:
                await client.get("User", "u1")
    assert failed.value.error_code == "Timeout" and failed.value.status is None
    assert not failed.value.maybe_applied and not failed.value.job_level


async def test_html_instead_of_json_stops_the_job_without_retrying() -> None:
    fake = FakeTime()
    with scripted(sequence(html())) as server:
        async with client_for(server.url, fake) as client:
            with pytest.raises(TargetError) as failed:
                await client.find("User", "userName", "ada@example.com")
    assert len(server.requests()) == 1
    assert failed.value.job_level and "not SCIM JSON (text/html)" in str(failed.value)


@pytest.mark.parametrize(("status", "code"), [(401, "Unauthorized"), (403, "InsufficientRights")])
async def test_401_and_403_stop_the_job_at_once(status: int, code: str) -> None:
    fake = FakeTime()
    with scripted(sequence(html(status))) as server:
        async with client_for(server.url, fake) as client:
            with pytest.raises(TargetError) as failed:
                await client.get("User", "u1")
    assert len(server.requests()) == 1 and fake.sleeps == []
    assert (failed.value.error_code, failed.value.job_level) == (code, True)


async def test_a_refused_connection_is_retried_then_stops_the_job() -> None:
    fake = FakeTime()
    async with client_for(f"http://127.0.0.1:{free_port()}", fake, max_retries=2) as client:
        with pytest.raises(TargetError) as failed:
            await client.find("User", "userName", "ada@example.com")
        assert client.requests_sent["GET"] == 3
    assert len(fake.sleeps) == 2
    assert failed.value.error_code == "Unreachable" and failed.value.job_level and not failed.value.maybe_applied


async def test_no_secret_reaches_an_error_message_or_a_log_line() -> None:
    def echo_credentials(seen: Seen) -> Reply:
        # A misbehaving target that echoes the Authorization header in its error detail.
        return scim_error(503 if seen.method == "GET" else 400, f"bad header {seen.headers['authorization']}")

    fake = FakeTime()
    messages: list[str] = []
    with structlog.testing.capture_logs() as logs, scripted(echo_credentials) as server:
        async with client_for(server.url, fake, max_retries=2) as client:
            for call in (client.get("User", "u1"), client.create("User", {"userName": "x"})):
                with pytest.raises(TargetError) as failed:
                    await call
                messages += [str(failed.value), failed.value.detail, repr(failed.value)]
            messages.append(repr(client._transport.auth))
    assert logs and all(entry["event"] == "scim.retry" for entry in logs)
    text = " ".join(messages) + " ".join(str(entry) for entry in logs)
    assert TOKEN not in text and "[redacted]" in text


async def test_requests_carry_scim_headers_and_the_tenant_url_flags_stay_home() -> None:
    def script(seen: Seen) -> Reply:
        return json_reply({**USER, "id": "new"}, 201) if seen.method == "POST" else Reply(204)

    with scripted(script) as server:
        async with client_for(f"{server.url}/scim/?aadOptscim062020") as client:
            await client.create("User", {"userName": "ada@example.com"})
            await client.update("User", "id/with space", [Change("title", "x")])
    post, patch = server.requests()
    assert (post.path, patch.path) == ("/scim/Users", "/scim/Users/id%2Fwith%20space")
    assert post.query == {} and patch.query == {}
    assert post.headers["authorization"] == f"Bearer {TOKEN}"
    assert post.headers["content-type"] == "application/scim+json"
    assert "application/scim+json" in post.headers["accept"]
    assert post.headers["user-agent"].startswith("identity-sync/")


async def test_find_escapes_quotes_and_backslashes_and_reads_groups_without_members() -> None:
    with scripted(sequence(json_reply(EMPTY_LIST))) as server:
        async with client_for(server.url) as client:
            await client.find("User", "userName", 'o"brien\\x@example.com')
            await client.find("Group", "displayName", "Sales")
    users, groups = server.requests()
    assert users.query["filter"] == ['userName eq "o\\"brien\\\\x@example.com"']
    assert groups.query == {"excludedAttributes": ["members"], "filter": ['displayName eq "Sales"']}


async def test_at_most_max_in_flight_requests_reach_the_server_at_once() -> None:
    with scripted(sequence(Reply(200, USER, delay=0.1))) as server:
        async with client_for(server.url, max_in_flight=3) as client:
            await asyncio.gather(*(client.get("User", f"u{i}") for i in range(20)))
    assert len(server.requests()) == 20
    assert server.max_in_flight == 3


def test_retry_after_parsing() -> None:
    now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(" 0 ") == 0.0
    assert retry_after_seconds("Sat, 05 Dec 2026 12:00:10 GMT", now=now) == 10.0
    assert retry_after_seconds("Sat, 05 Dec 2026 11:00:00 GMT", now=now) == 0.0  # in the past: now
    assert retry_after_seconds("999999") == MAX_RETRY_AFTER_SECONDS
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None
    assert retry_after_seconds("-5") is None


async def test_a_redirect_is_a_wrong_tenant_url_and_stops_the_job() -> None:
    with scripted(sequence(Reply(301, headers={"Location": "https://elsewhere.example/scim/Users"}))) as server:
        async with client_for(server.url) as client:
            with pytest.raises(TargetError) as failed:
                await client.find("User", "userName", "ada@example.com")
    assert len(server.requests()) == 1
    assert (failed.value.error_code, failed.value.job_level) == (
        "SystemForCrossDomainIdentityManagementServiceIncompatible", True)
    assert "redirect" in str(failed.value)


async def test_an_untrusted_certificate_stops_the_job_without_retrying(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    fake = FakeTime()
    with scripted(sequence(json_reply(USER)), tls=server_side) as server:
        async with client_for(server.url, fake) as client:
            with pytest.raises(TargetError) as failed:
                await client.get("User", "u1")
            assert client.requests_sent["GET"] == 1 and fake.sleeps == []
    assert (failed.value.error_code, failed.value.job_level) == ("TlsFailure", True)


async def test_a_list_response_that_hides_its_results_is_not_trusted() -> None:
    # totalResults says one user matched but Resources is missing: creating would duplicate it.
    with scripted(sequence(json_reply({**EMPTY_LIST, "totalResults": 1}))) as server:
        async with client_for(server.url) as client:
            with pytest.raises(TargetError) as failed:
                await client.find("User", "userName", "ada@example.com")
    assert failed.value.job_level and failed.value.error_code.endswith("ServiceIncompatible")


async def test_a_connection_lost_after_sending_fails_a_create_at_once_but_retries_a_read() -> None:
    fake = FakeTime()
    with scripted(sequence(Reply(drop=True), json_reply(USER))) as server:
        async with client_for(server.url, fake) as client:
            assert await client.get("User", "u1") == USER
    assert len(server.requests("GET")) == 2
    with scripted(sequence(Reply(drop=True), json_reply({**USER, "id": "new"}, 201))) as server:
        async with client_for(server.url, fake) as client:
            with pytest.raises(TargetError) as failed:
                await client.create("User", {"userName": "ada@example.com"})
    # The target got the request and may have created the user: not a job-level refusal.
    assert len(server.requests("POST")) == 1
    assert failed.value.error_code == "Unreachable" and failed.value.maybe_applied and not failed.value.job_level


async def test_a_create_answered_without_the_new_resource_stops_the_job() -> None:
    with scripted(sequence(Reply(201))) as server:
        async with client_for(server.url) as client:
            with pytest.raises(TargetError) as failed:
                await client.create("User", {"userName": "ada@example.com"})
    assert failed.value.job_level and "not SCIM JSON" in str(failed.value)
    with scripted(sequence(json_reply({"userName": "ada@example.com"}, 201))) as server:
        async with client_for(server.url) as client:
            with pytest.raises(TargetError) as failed:
                await client.create("User", {"userName": "ada@example.com"})
    assert failed.value.job_level and "without the new resource's id" in str(failed.value)
