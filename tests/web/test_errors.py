"""Error shapes: whatever a client gets wrong, the answer is an RFC 7644 §3.12 error body in
``application/scim+json`` (never HTML), and the lenient spellings IdPs use are accepted.
Also: what reaches the log never includes a bearer token or a filter value."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from identity_sync.config import Settings
from identity_sync.errors import ERROR_SCHEMA
from identity_sync.storage.db import Database
from identity_sync.web.app import create_app
from tests.conftest import SCIM_JSON, ScimClient, captured_logs

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
#: RFC 7644 §3.12: "schemas" and "status" are required, "scimType" and "detail" optional; nothing else.
ERROR_KEYS = {"schemas", "status", "scimType", "detail"}


def assert_scim_error(response: Any, status: int, scim_type: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(SCIM_JSON)
    assert "<html" not in response.text.lower()
    body = response.json()
    assert {"schemas", "status"} <= set(body) <= ERROR_KEYS, body
    assert body["schemas"] == [ERROR_SCHEMA]
    assert body["status"] == str(status)
    assert isinstance(body.get("detail", ""), str)
    if scim_type is not None:
        assert body["scimType"] == scim_type
    return body


def user_body(user_name: str = "alice@example.com", **attributes: Any) -> dict[str, Any]:
    return {"schemas": [USER_SCHEMA], "userName": user_name, **attributes}


def raw(client: ScimClient, method: str, path: str, content: Any = None, **headers: str) -> Any:
    """A request with a hand-made body and the client's token."""
    merged = {"Authorization": f"Bearer {client.token}", "Content-Type": SCIM_JSON}
    merged.update({k.replace("_", "-"): v for k, v in headers.items()})
    return client.http.request(method, client.base + path, content=content, headers=merged)


def nested(levels: int) -> Any:
    """``levels`` nested JSON containers (the outermost a SCIM User object)."""
    value: Any = []
    for _ in range(levels - 2):
        value = [value]
    return user_body(deep=value)


# -- unknown endpoints and methods ---------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/scim/v2/acme/Nothing",
    "/scim/v2/acme/Userz",
    "/scim/v2/acme/Users/some-id/extra",
    "/scim/v2",
    "/",
    "/favicon.ico",
])
def test_an_unknown_endpoint_is_a_scim_404_not_an_html_page(scim: ScimClient, path: str) -> None:
    response = scim.http.get(path, headers={"Authorization": f"Bearer {scim.token}", "Accept": "text/html"})
    assert_scim_error(response, 404)


def test_an_unknown_user_id_is_a_scim_404(scim: ScimClient) -> None:
    for response in (scim.get("/Users/does-not-exist"), scim.delete("/Users/does-not-exist"),
                     scim.put("/Users/does-not-exist", user_body()),
                     scim.patch("/Users/does-not-exist", {"schemas": [PATCH_SCHEMA], "Operations": [
                         {"op": "replace", "path": "displayName", "value": "x"}]})):
        assert_scim_error(response, 404)


@pytest.mark.parametrize(("method", "path"), [
    ("DELETE", "/Users"),
    ("PUT", "/Users"),
    ("PATCH", "/Users"),
    ("POST", "/Users/some-id"),
    ("POST", "/ServiceProviderConfig"),
    ("DELETE", "/Schemas"),
    ("PUT", "/ResourceTypes"),
])
def test_a_wrong_method_is_a_scim_405(scim: ScimClient, method: str, path: str) -> None:
    assert_scim_error(scim.request(method, path), 405)


def test_a_405_lists_every_method_the_endpoint_supports_in_allow(scim: ScimClient) -> None:
    collection = scim.request("DELETE", "/Users")
    item = scim.request("POST", "/Users/some-id")
    assert {m.strip() for m in collection.headers["allow"].split(",")} >= {"GET", "POST"}
    assert {m.strip() for m in item.headers["allow"].split(",")} >= {"GET", "PUT", "PATCH", "DELETE"}


# -- bodies --------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"{", b"not json", b'{"userName": "a",}', b"\xff\xfe", b"{'a': 1}", b"NaN"])
def test_invalid_json_is_400_invalid_syntax(scim: ScimClient, content: bytes) -> None:
    user = scim.create_user("bob@example.com")
    assert_scim_error(raw(scim, "POST", "/Users", content), 400, "invalidSyntax")
    assert_scim_error(raw(scim, "PUT", f"/Users/{user['id']}", content), 400, "invalidSyntax")
    assert_scim_error(raw(scim, "PATCH", f"/Users/{user['id']}", content), 400, "invalidSyntax")


@pytest.mark.parametrize("content", [b"", b"   \n"])
def test_an_empty_body_is_400_invalid_syntax(scim: ScimClient, content: bytes) -> None:
    assert_scim_error(raw(scim, "POST", "/Users", content), 400, "invalidSyntax")


@pytest.fixture
def small_body_client(settings: Settings, db: Database, scim: ScimClient) -> Iterator[ScimClient]:
    """``scim``'s tenant, served by an app whose body limit is 1,000 bytes."""
    app = create_app(settings.model_copy(update={"max_body_bytes": 1000}), db)
    with TestClient(app, base_url="https://scim.example.test") as http:
        yield ScimClient(http, scim.tenant, scim.token)


def test_a_body_over_the_configured_limit_is_413(small_body_client: ScimClient) -> None:
    fits = json.dumps(user_body(displayName="x" * 800)).encode()
    too_big = json.dumps(user_body(displayName="x" * 1000)).encode()
    assert len(fits) <= 1000 < len(too_big)

    assert raw(small_body_client, "POST", "/Users", fits).status_code == 201
    assert_scim_error(raw(small_body_client, "POST", "/Users", too_big), 413)
    assert len(small_body_client.find("userName pr")) == 1


def test_a_body_over_the_limit_without_content_length_is_413_while_streaming(
        small_body_client: ScimClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"schemas": ["' + USER_SCHEMA.encode() + b'"], "userName": "a", "displayName": "'
        for _ in range(100):
            yield b"x" * 100
        yield b'"}'

    response = small_body_client.http.post(
        small_body_client.base + "/Users", content=chunks(),
        headers={"Authorization": f"Bearer {small_body_client.token}", "Content-Type": SCIM_JSON})
    assert "content-length" not in response.request.headers
    assert_scim_error(response, 413)


def test_a_lying_content_length_over_the_limit_is_413(small_body_client: ScimClient) -> None:
    response = raw(small_body_client, "POST", "/Users", b"{}", Content_Length="999999")
    assert_scim_error(response, 413)


def test_the_default_limit_is_one_mebibyte(scim: ScimClient) -> None:
    prefix = json.dumps(user_body(displayName=""))[:-2].encode() + b'"'
    body = prefix + b"x" * (1_048_576 + 1 - len(prefix) - 2) + b'"}'
    assert len(body) == 1_048_577
    assert_scim_error(raw(scim, "POST", "/Users", body), 413)


def test_json_nested_deeper_than_32_levels_is_400(scim: ScimClient) -> None:
    assert_scim_error(raw(scim, "POST", "/Users", json.dumps(nested(33))), 400, "invalidSyntax")
    assert_scim_error(raw(scim, "POST", "/Users", b"[" * 100_000 + b"]" * 100_000), 400, "invalidSyntax")


def test_json_nested_well_within_the_limit_is_not_refused_for_its_depth(scim: ScimClient) -> None:
    response = raw(scim, "POST", "/Users", json.dumps(nested(16)))
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_an_unsupported_content_type_is_415(scim: ScimClient, content_type: str) -> None:
    body = json.dumps(user_body()).encode()
    assert_scim_error(raw(scim, "POST", "/Users", body, Content_Type=content_type), 415)
    assert scim.find("userName pr") == []


@pytest.mark.parametrize("content_type", ["application/scim+json", "application/json",
                                          "application/scim+json; charset=utf-8", "Application/SCIM+JSON"])
def test_the_json_media_types_idps_send_are_accepted(scim: ScimClient, content_type: str) -> None:
    response = raw(scim, "POST", "/Users", json.dumps(user_body()).encode(), Content_Type=content_type)
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith(SCIM_JSON)


# -- query parameters and path spellings ---------------------------------------------------------


@pytest.mark.parametrize("params", [{"count": "abc"}, {"startIndex": "abc"}, {"count": "1.5"}])
def test_a_non_integer_paging_parameter_is_400(scim: ScimClient, params: dict[str, str]) -> None:
    assert_scim_error(scim.get("/Users", params=params), 400, "invalidValue")


def test_an_invalid_filter_is_400_invalid_filter(scim: ScimClient) -> None:
    assert_scim_error(scim.get("/Users", params={"filter": "userName eq"}), 400, "invalidFilter")


def test_trailing_and_doubled_slashes_and_lower_case_endpoints_work(scim: ScimClient) -> None:
    created = scim.post("/users/", user_body())
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]

    for path in ("/Users/", "/users", "/users/", "/USERS", "//Users", "//users//"):
        response = scim.get(path)
        assert response.status_code == 200, (path, response.text)
        assert [u["id"] for u in response.json()["Resources"]] == [user_id]
    for path in (f"/users/{user_id}", f"/Users/{user_id}/", f"/uSeRs/{user_id}/", f"//Users//{user_id}"):
        assert scim.get(path).json()["id"] == user_id, path
    for path in ("/serviceproviderconfig", "/ServiceProviderConfig/", "/schemas/", "/resourcetypes"):
        assert scim.get(path).status_code == 200, path
    patched = scim.patch(f"/users/{user_id}/", {"schemas": [PATCH_SCHEMA], "Operations": [
        {"op": "replace", "path": "displayName", "value": "Alice"}]})
    assert patched.status_code == 200 and patched.json()["displayName"] == "Alice"
    assert scim.delete(f"/users/{user_id}/").status_code == 204


def test_the_entra_aadoptscim062020_flag_and_other_unknown_parameters_are_ignored(scim: ScimClient) -> None:
    user = scim.create_user("alice@example.com")
    listed = scim.get("/Users?aadOptscim062020")
    assert listed.status_code == 200 and listed.json()["totalResults"] == 1
    assert scim.get(f"/Users/{user['id']}?aadOptscim062020&foo=bar").status_code == 200
    patched = scim.patch(f"/Users/{user['id']}?aadOptscim062020", {"schemas": [PATCH_SCHEMA], "Operations": [
        {"op": "replace", "path": "active", "value": False}]})
    assert patched.status_code == 200 and patched.json()["active"] is False
    assert scim.get("/ServiceProviderConfig?aadOptscim062020").status_code == 200


# -- every error has exactly the RFC 7644 §3.12 keys ---------------------------------------------


def test_every_error_body_has_exactly_the_rfc7644_error_keys(scim: ScimClient) -> None:
    user = scim.create_user("alice@example.com")
    dup = user_body()
    responses = [
        scim.http.get("/nowhere"),
        scim.http.get(scim.base + "/Users"),  # no token
        scim.request("DELETE", "/Users"),
        scim.get("/Users/unknown"),
        scim.get("/Users", params={"count": "abc"}),
        scim.get("/Users", params={"filter": "(((("}),
        raw(scim, "POST", "/Users", b"{"),
        raw(scim, "POST", "/Users", b"{}", Content_Type="text/plain"),
        raw(scim, "POST", "/Users", json.dumps(nested(40))),
        scim.post("/Users", dup),  # 409 uniqueness
        scim.post("/Users", {"schemas": [USER_SCHEMA]}),  # no userName
        scim.put(f"/Users/{user['id']}", user_body(), headers={"If-Match": 'W/"999"'}),  # 412
        scim.patch(f"/Users/{user['id']}", {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "frobnicate"}]}),
    ]
    statuses = []
    for response in responses:
        assert 400 <= response.status_code < 500, response.text
        assert_scim_error(response, response.status_code)
        statuses.append(response.status_code)
    assert {400, 401, 404, 405, 409, 412, 415} <= set(statuses)


# -- logs ----------------------------------------------------------------------------------------


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Everything logged (at DEBUG and above) so far, by a function returning the text."""
    with captured_logs(monkeypatch, "DEBUG") as buffer:
        yield buffer.getvalue


def test_logs_carry_neither_bearer_tokens_nor_filter_values(scim: ScimClient, json_logs: Any) -> None:
    bad_token = "idsync_" + "Z" * 43
    user = scim.create_user("alice.secret@example.com", displayName="Alice")
    scim.http.get(scim.base + "/Users", headers={"Authorization": f"Bearer {bad_token}"})
    scim.http.get(scim.base + "/Users", params={"filter": 'userName eq "alice.secret@example.com"'},
                  headers={"Authorization": f"Bearer {bad_token}"})
    assert scim.find('userName eq "alice.secret@example.com"')[0]["id"] == user["id"]
    assert scim.find('emails[value co "alice.secret@example.com"] or userName sw "alice.secret"') != []
    scim.get("/Users", params={"filter": 'userName eq "alice.secret@example.com"', "count": "abc"})
    scim.get(f"/Users/{user['id']}", headers={"Authorization": f"Basic {scim.token}"})
    scim.patch(f"/Users/{user['id']}", {"schemas": [PATCH_SCHEMA], "Operations": [
        {"op": "replace", "path": "displayName", "value": "Alice"}]})

    output = json_logs()

    events = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert {"event": "http.request", "status": 401} in [
        {"event": e.get("event"), "status": e.get("status")} for e in events]  # the capture works
    assert any(e.get("event") == "resource.created" for e in events)
    for secret in (bad_token, scim.token, bad_token[7:27], scim.token[7:27], "alice.secret", "example.com",
                   "aadOpt", "filter="):
        assert secret not in output, secret


@pytest.mark.parametrize("filter_text", ['userName eq "alice.secret@example.com', 'userName eqq "alice.secret"'])
def test_a_rejected_filter_does_not_leak_its_value_into_the_logs(scim: ScimClient, json_logs: Any,
                                                                 filter_text: str) -> None:
    response = scim.get("/Users", params={"filter": filter_text})
    assert_scim_error(response, 400, "invalidFilter")
    output = json_logs()
    assert "request.rejected" in output or "http.request" in output
    assert ".secret" not in output


def test_logs_carry_no_client_secret_nor_access_token(scim: ScimClient, json_logs: Any, settings: Settings) -> None:
    """The whole OAuth flow — token requests by Header, Body and Both, good and bad secrets, SCIM
    calls with the access token, bad and foreign tokens, CLI-side operations — logs no credential."""
    import base64

    from identity_sync.service.clients import ClientService

    clients = ClientService(scim.http.app.state.db, settings)
    issued = clients.create_client("acme")
    rotated = clients.rotate_secret("acme", issued.client_id)
    url = scim.base + "/oauth/token"
    basic = "Basic " + base64.b64encode(f"{issued.client_id}:{issued.client_secret}".encode()).decode()
    form = {"grant_type": "client_credentials", "client_id": issued.client_id, "client_secret": issued.client_secret}
    tokens = [scim.http.post(url, data={"grant_type": "client_credentials"}, headers={"Authorization": basic}),
              scim.http.post(url, data=form),
              scim.http.post(url, data=form, headers={"Authorization": basic})]
    access = [t.json()["access_token"] for t in tokens]
    scim.http.post(url, data={**form, "client_secret": rotated.client_secret + "x"})
    scim.http.post(url, data={**form, "client_secret": "idsyncs_guess"}, headers={"Authorization": basic})
    for token in access:
        ScimClient(scim.http, "acme", token).create_user(f"u{access.index(token)}@example.com")
    forged = access[0][:-4] + "AAAA"
    scim.http.get(scim.base + "/Users", headers={"Authorization": f"Bearer {forged}"})
    scim.http.get("/scim/v2/globex/Users", headers={"Authorization": f"Bearer {access[0]}"})
    clients.revoke("acme", issued.client_id, rotated.secret_id)

    output = json_logs()

    assert "oauth.token_issued" in output and "oauth.token_refused" in output  # the capture works
    for secret in (issued.client_secret, rotated.client_secret, issued.client_secret[8:28], *access,
                   *(a.split(".")[2][:20] for a in access), *(a.split(".")[1][:20] for a in access), forged,
                   base64.b64encode(f"{issued.client_id}:{issued.client_secret}".encode()).decode()[:30]):
        assert secret not in output, secret


# -- the database unavailable ----------------------------------------------------------------------


def test_database_unavailable_is_a_scim_503_with_the_retry_hint(scim: ScimClient, monkeypatch: Any,
                                                                json_logs: Any) -> None:
    """Storage's DatabaseUnavailable (database down, locked, out of connections) is answered 503
    with its Retry-After; the log names the driver's error class, not its text."""
    from identity_sync.storage.errors import DatabaseUnavailable

    created = scim.create_user("ada@example.com")
    handlers = scim.http.app.state.handlers  # type: ignore[attr-defined]

    def down(*_: Any) -> Any:
        try:
            raise ConnectionRefusedError("connection to server at 10.0.0.9 refused")
        except ConnectionRefusedError as cause:
            raise DatabaseUnavailable("connection refused", retry_after=7) from cause

    with monkeypatch.context() as patch:
        patch.setattr(handlers.resources, "get", down)
        response = scim.get(f"/Users/{created['id']}")
    body = assert_scim_error(response, 503)
    assert response.headers["Retry-After"] == "7"
    assert "10.0.0.9" not in body.get("detail", "")
    output = json_logs()
    assert "database.unavailable" in output and "ConnectionRefusedError" in output
    assert scim.get(f"/Users/{created['id']}").status_code == 200  # nothing else changed
