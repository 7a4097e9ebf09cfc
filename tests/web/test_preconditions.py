"""ETag preconditions (RFC 7644 §3.14) on every write, and writes to a deleted resource: a stale
``If-Match`` is ``412`` and changes nothing, a current one lets the write through, ``*`` matches
any live version; PUT, PATCH and DELETE of a deleted resource are ``404`` and change nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ScimClient

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


def _make(scim: ScimClient, kind: str) -> dict[str, Any]:
    body = ({"schemas": [USER], "userName": "etag@x.com"} if kind == "Users"
            else {"schemas": [GROUP], "displayName": "Etag"})
    created = scim.post(f"/{kind}", body)
    assert created.status_code == 201, created.text
    return created.json()


def _writes(kind: str) -> dict[str, tuple[str, dict[str, Any] | None]]:
    replace = ({"schemas": [USER], "userName": "etag@x.com", "title": "new"} if kind == "Users"
               else {"schemas": [GROUP], "displayName": "Etag renamed"})
    patch = {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "displayName", "value": "changed"}]}
    return {"PUT": ("put", replace), "PATCH": ("patch", patch), "DELETE": ("delete", None)}


def _send(scim: ScimClient, method: str, path: str, body: dict[str, Any] | None, headers: dict[str, str]) -> Any:
    call = getattr(scim, method)
    return call(path, headers=headers) if body is None else call(path, body, headers=headers)


@pytest.mark.parametrize("kind", ["Users", "Groups"])
@pytest.mark.parametrize("write", ["PUT", "PATCH", "DELETE"])
def test_a_stale_if_match_is_412_and_changes_nothing(scim: ScimClient, kind: str, write: str) -> None:
    resource = _make(scim, kind)
    stale = resource["meta"]["version"]
    path = f"/{kind}/{resource['id']}"
    touched = scim.patch(path, {"schemas": [PATCH], "Operations": [
        {"op": "replace", "path": "displayName", "value": "touched"}]})
    assert touched.status_code in (200, 204)
    before = scim.get(path).json()
    assert before["meta"]["version"] != stale
    method, body = _writes(kind)[write]
    response = _send(scim, method, path, body, {"If-Match": stale})
    assert response.status_code == 412, response.text
    assert response.json()["status"] == "412"
    assert scim.get(path).json() == before


@pytest.mark.parametrize("kind", ["Users", "Groups"])
@pytest.mark.parametrize("write", ["PUT", "PATCH", "DELETE"])
def test_the_current_version_or_a_star_lets_the_write_through(scim: ScimClient, kind: str, write: str) -> None:
    for precondition in ("current", "*"):
        resource = _make(scim, kind)
        path = f"/{kind}/{resource['id']}"
        etag = resource["meta"]["version"] if precondition == "current" else "*"
        method, body = _writes(kind)[write]
        response = _send(scim, method, path, body, {"If-Match": etag})
        assert response.status_code in (200, 204), (precondition, response.text)
        if write == "DELETE":
            assert scim.get(path).status_code == 404
        else:
            scim.delete(path)  # the next round reuses the name


@pytest.mark.parametrize("kind", ["Users", "Groups"])
def test_writes_to_a_deleted_resource_are_404_and_change_nothing(scim: ScimClient, kind: str) -> None:
    resource = _make(scim, kind)
    path = f"/{kind}/{resource['id']}"
    assert scim.delete(path).status_code == 204
    listed = scim.get(f"/{kind}").json()
    for write, (method, body) in _writes(kind).items():
        response = _send(scim, method, path, body, {})
        assert response.status_code == 404, (write, response.text)
        assert response.json()["status"] == "404"
    assert scim.get(path).status_code == 404
    assert scim.get(f"/{kind}").json() == listed
