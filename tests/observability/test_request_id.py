"""Every response carries ``X-Request-Id`` — the caller's when it is a sane token, else a new one
— and every log line written while the request is served carries it as ``request_id``; the
access log says who called and how it went, without credentials; libraries log JSON too."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog
from starlette.testclient import TestClient

from tests.conftest import ScimClient

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"


@pytest.mark.parametrize("sent", ["abc-123", "Entra.Request_42", "x" * 64])
def test_a_sane_request_id_is_echoed(scim: ScimClient, sent: str) -> None:
    response = scim.get("/Users", headers={"X-Request-Id": sent})
    assert response.status_code == 200
    assert response.headers["X-Request-Id"] == sent


@pytest.mark.parametrize("sent", ["", "x" * 65, "has space", "quote\"d", "new\\nline", "a/b", "semi;colon"])
def test_any_other_request_id_is_replaced(scim: ScimClient, sent: str) -> None:
    response = scim.get("/Users", headers={"X-Request-Id": sent})
    replaced = response.headers["X-Request-Id"]
    assert replaced != sent
    assert len(replaced) == 32 and all(c in "0123456789abcdef" for c in replaced)  # uuid4, hex


def test_every_response_has_a_new_id(http: TestClient, scim: ScimClient) -> None:
    responses = [http.get("/healthz"), http.get("/no/such/endpoint"), scim.get("/Users/nope"),
                 http.get("/scim/v2/acme/Users"), http.get("/scim/v2/acme/Users/a%00b")]
    ids = [r.headers.get("X-Request-Id") for r in responses]
    assert [r.status_code for r in responses] == [200, 404, 404, 401, 404]
    assert all(ids) and len(set(ids)) == len(ids)


def test_every_log_line_of_a_request_carries_its_id(scim: ScimClient, json_lines: Any) -> None:
    created = scim.post("/Users", {"schemas": [USER_SCHEMA], "userName": "alice@example.test"},
                        headers={"X-Request-Id": "req-create-1"})
    refused = scim.http.get(scim.base + "/Users", headers={"Authorization": "Bearer idsync_" + "Q" * 43})
    assert created.status_code == 201 and refused.status_code == 401

    lines = json_lines()

    mine = [line for line in lines if line.get("request_id") == "req-create-1"]
    # The service's event, written in the worker thread that ran the request, and the access log.
    assert {"resource.created", "http.request"} <= {line["event"] for line in mine}
    access = next(line for line in mine if line["event"] == "http.request")
    assert access["status"] == 201 and access["method"] == "POST" and access["route"] == "/scim/v2/{tenant}/Users"
    assert access["tenant"] == "acme" and access["client"] == "testclient"
    assert isinstance(access["ms"], float)
    rid = refused.headers["X-Request-Id"]
    theirs = {line["event"]: line for line in lines if line.get("request_id") == rid}
    assert theirs["auth.refused"]["reason"] == "unknown" and theirs["auth.refused"]["level"] == "info"
    assert theirs["http.request"]["auth_failure"] == "unknown" and theirs["http.request"]["status"] == 401
    output = json.dumps(lines)
    assert "Q" * 43 not in output and scim.token not in output


def test_the_access_log_names_the_credential_not_the_token(scim: ScimClient, json_lines: Any,
                                                           tenants: Any) -> None:
    (token_row,) = tenants.list_tokens("acme")
    scim.get("/Users")
    access = [line for line in json_lines() if line["event"] == "http.request"]
    assert access[-1]["credential_id"] == token_row["id"]
    assert scim.token not in json.dumps(access)


def test_library_logs_are_json_lines_with_the_request_id(json_lines: Any) -> None:
    from identity_sync.observability import context

    token = context.begin(context.RequestFacts("lib-req-7"))
    try:
        with structlog.contextvars.bound_contextvars(request_id="lib-req-7"):
            logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
    finally:
        context.end(token)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("some.library").exception("it failed")
    lines = json_lines()
    uvicorn_line = next(line for line in lines if line.get("logger") == "uvicorn.error")
    assert uvicorn_line["event"] == "Invalid HTTP request received."
    assert uvicorn_line["level"] == "warning" and uvicorn_line["request_id"] == "lib-req-7"
    assert "timestamp" in uvicorn_line
    failed = next(line for line in lines if line.get("logger") == "some.library")
    assert failed["level"] == "error" and "ValueError: boom" in failed["exception"]


def test_a_server_error_has_its_id_and_its_log_lines(scim: ScimClient, json_lines: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from identity_sync.service.resources import ResourceService

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(ResourceService, "get", broken)
    with TestClient(scim.http.app, base_url="https://scim.example.test", raise_server_exceptions=False) as http:
        response = http.get("/scim/v2/acme/Users/some-id", headers={"Authorization": f"Bearer {scim.token}",
                                                                    "X-Request-Id": "req-500"})
    assert response.status_code == 500
    assert response.headers["X-Request-Id"] == "req-500"
    mine = {line["event"]: line for line in json_lines() if line.get("request_id") == "req-500"}
    assert "RuntimeError: a bug" in mine["request.failed"]["exception"]
    assert mine["http.request"]["status"] == 500 and mine["http.request"]["tenant"] == "acme"


def test_our_lines_are_stamped_in_utc_to_the_microsecond(json_lines: Any) -> None:
    structlog.get_logger("identity_sync.test").info("stamped")
    line = next(line for line in json_lines() if line.get("event") == "stamped")
    stamped = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z", line["timestamp"])
    assert abs((datetime.now(UTC) - stamped).total_seconds()) < 60
