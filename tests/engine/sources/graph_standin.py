"""A local stand-in for Microsoft Graph and its login endpoint, for the Graph source's tests.

Graph cannot be reached from the test machines, so this small Starlette app answers the requests
the source sends, in the JSON shapes Microsoft documents (payloads in those shapes are under
``fixtures/graph/``, and ``test_graph_fixtures.py`` checks that these answers have their keys):

* ``POST /{tenant}/oauth2/v2.0/token`` — client credentials with a client secret or a certificate
  client assertion (verified: RS256 signature with the certificate's key, ``x5t`` thumbprint,
  ``aud``, ``iss``, ``sub``, ``exp``); errors are Entra's ``{"error", "error_description":
  "AADSTS…"}``.
* ``GET /v1.0/users/delta`` and ``/v1.0/groups/delta`` — delta rounds: ``$select`` checked against
  Graph's properties (an unknown one is a 400, as Graph's), pages of ``page_size`` entries linked by
  ``@odata.nextLink`` (``$skiptoken``), the last one carrying ``@odata.deltaLink`` (``$deltatoken``);
  a big group's ``members@delta`` spread over several entries of the same group. A delta link
  replays what changed since its round, computed against a copy of the directory taken then:
  changed objects with their selected properties (null for a cleared one), ``manager@delta`` and
  ``members@delta`` with ``@removed`` entries, ``@removed: {"reason": "changed"}`` for a user moved
  to deleted items and ``"deleted"`` for one deleted for good.
* ``GET /v1.0/directory/deletedItems/microsoft.graph.user``, ``/v1.0/users/{id}``,
  ``/v1.0/groups/{id}``, ``/v1.0/groups/{id}/members``, ``/v1.0/directory/deletedItems/{id}`` and
  ``/v1.0/servicePrincipals/{id}/appRoleAssignedTo``.

Tests change the directory with plain methods (:meth:`GraphStandIn.add_user`, ``update_user``,
``soft_delete_user``, ``hard_delete_user``, ``set_members``…), make the next requests answer
``429``/``503`` with ``Retry-After`` (:meth:`throttle`) and expire delta links
(:meth:`expire_delta_links`). It runs under uvicorn in a thread on 127.0.0.1.
"""

from __future__ import annotations

import copy
import hashlib
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from identity_sync.engine.sources.graph_client import ASSERTION_TYPE, GRAPH_SCOPE
from identity_sync.engine.sources.graph_source import GROUP_PROPERTIES, USER_PROPERTIES
from tests.pg import free_port
from tests.threaded_server import ThreadedServer

USER = "#microsoft.graph.user"
GROUP = "#microsoft.graph.group"
DEFAULT_ACCESS = "00000000-0000-0000-0000-000000000000"


@dataclass
class _State:
    """The directory at one moment (a delta link's round remembers one)."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: soft-deleted users: id → deletedDateTime (their properties stay in ``users``)
    deleted: dict[str, str] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[str, list[str]] = field(default_factory=dict)


class GraphStandIn:
    """The in-memory directory and the HTTP app serving it (see the module docstring)."""

    def __init__(self, tenant: str, client_id: str, *, client_secret: str | None = None,
                 certificate_pem: str | None = None, page_size: int = 3, member_chunk: int = 2,
                 service_principal_id: str = "sp-1", token_lifetime: int = 3599) -> None:
        self.tenant = tenant
        self.client_id = client_id
        self.client_secret = client_secret
        self.certificate = x509.load_pem_x509_certificate(certificate_pem.encode()) if certificate_pem else None
        self.page_size = page_size
        self.member_chunk = member_chunk
        self.service_principal_id = service_principal_id
        self.token_lifetime = token_lifetime
        self.state = _State()
        #: principalId → (principalType, appRoleId) of the app-role assignments of the service principal
        self.assignments: dict[str, tuple[str, str]] = {}
        #: The application's app roles: value → id (the default access role has the all-zero id, no value).
        self.app_roles: dict[str, str] = {"Admin": "4f6e0c5a-0000-4000-8000-00000000ad31",
                                          "Reader": "4f6e0c5a-0000-4000-8000-0000000000ee"}
        self.tokens: set[str] = set()
        self.tokens_issued = 0
        #: "GET /v1.0/users/delta" … for every request, in order (tests count pages and retries).
        self.requests: list[str] = []
        self._throttles: list[tuple[int, str] | None] = []
        self._rounds: dict[str, tuple[list[dict[str, Any]], str | None]] = {}
        self._delta_states: dict[str, tuple[str, list[str], _State]] = {}
        self._expired: set[str] = set()
        self._lock = threading.Lock()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.graph_url = f"{self.url}/v1.0"
        self._server: ThreadedServer | None = None

    # -- the directory, as tests change it ------------------------------------------------------

    def add_user(self, anchor: str, manager: str | None = None, **properties: Any) -> None:
        with self._lock:
            self.state.users[anchor] = {"id": anchor, "accountEnabled": True, **properties, "manager": manager}

    def update_user(self, anchor: str, **properties: Any) -> None:
        """Change properties (``None`` clears one); ``manager=`` changes the manager."""
        with self._lock:
            self.state.users[anchor].update(properties)

    def soft_delete_user(self, anchor: str, when: str = "2026-12-01T10:00:00Z") -> None:
        with self._lock:
            self.state.deleted[anchor] = when

    def restore_user(self, anchor: str) -> None:
        with self._lock:
            del self.state.deleted[anchor]

    def hard_delete_user(self, anchor: str) -> None:
        """Gone for good: out of deleted items, its groups and as anybody's manager."""
        with self._lock:
            self.state.users.pop(anchor)
            self.state.deleted.pop(anchor, None)
            for members in self.state.members.values():
                if anchor in members:
                    members.remove(anchor)
            for other in self.state.users.values():
                if other.get("manager") == anchor:
                    other["manager"] = None

    def add_group(self, anchor: str, members: list[str] = (), **properties: Any) -> None:  # type: ignore[assignment]
        with self._lock:
            self.state.groups[anchor] = {"id": anchor, **properties}
            self.state.members[anchor] = list(members)

    def set_members(self, anchor: str, members: list[str]) -> None:
        with self._lock:
            self.state.members[anchor] = list(members)

    def delete_group(self, anchor: str) -> None:
        with self._lock:
            del self.state.groups[anchor]
            del self.state.members[anchor]
            for members in self.state.members.values():
                if anchor in members:
                    members.remove(anchor)

    def assign(self, anchor: str, role: str | None = None) -> None:
        """Assign a user or group to the application, with the app role named ``role`` or the
        default access role."""
        with self._lock:
            kind = "Group" if anchor in self.state.groups else "User"
            self.assignments[anchor] = (kind, self.app_roles[role] if role else DEFAULT_ACCESS)

    def unassign(self, anchor: str) -> None:
        with self._lock:
            del self.assignments[anchor]

    def throttle(self, times: int, status: int = 429, retry_after: str = "0", *, after: int = 0) -> None:
        """After ``after`` more Graph requests, the next ``times`` answer ``status`` with
        ``Retry-After: retry_after`` (``after``: to fail in the middle of a round)."""
        with self._lock:
            self._throttles = [None] * after + [(status, retry_after)] * times

    def expire_delta_links(self) -> None:
        """Every delta link issued so far answers 410 Gone (``syncStateNotFound``), as after 7 days."""
        with self._lock:
            self._expired.update(self._delta_states)

    # -- running --------------------------------------------------------------------------------

    def start(self) -> GraphStandIn:
        self._server = ThreadedServer(self.app(), self.port, "graph-standin").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/{tenant}/oauth2/v2.0/token", self._token, methods=["POST"]),
            Route("/v1.0/users/delta", self._delta, methods=["GET"]),
            Route("/v1.0/groups/delta", self._delta, methods=["GET"]),
            Route("/v1.0/directory/deletedItems/microsoft.graph.user", self._deleted_users, methods=["GET"]),
            Route("/v1.0/directory/deletedItems/{id}", self._deleted_item, methods=["GET"]),
            Route("/v1.0/servicePrincipals/{id}/appRoleAssignedTo", self._assigned, methods=["GET"]),
            Route("/v1.0/servicePrincipals/{id}", self._service_principal, methods=["GET"]),
            Route("/v1.0/users/{id}/memberOf/microsoft.graph.group", self._member_of, methods=["GET"]),
            Route("/v1.0/users/{id}", self._user, methods=["GET"]),
            Route("/v1.0/groups/{id}/members", self._group_members, methods=["GET"]),
            Route("/v1.0/groups/{id}", self._group, methods=["GET"]),
        ])

    # -- login ------------------------------------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        form = {key: values[0] for key, values in parse_qs((await request.body()).decode()).items()}
        with self._lock:
            self.requests.append(f"POST {request.url.path}")
        token_url = f"{self.url}/{request.path_params['tenant']}/oauth2/v2.0/token"
        if request.path_params["tenant"] != self.tenant:
            return _login_error(400, "invalid_request", 90002, f"Tenant '{request.path_params['tenant']}' not found.")
        if form.get("grant_type") != "client_credentials":
            return _login_error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        if form.get("client_id") != self.client_id:
            return _login_error(400, "unauthorized_client", 700016,
                                f"Application with identifier '{form.get('client_id')}' was not found in the "
                                f"directory '{self.tenant}'.")
        if form.get("scope") != GRAPH_SCOPE:
            return _login_error(400, "invalid_scope", 1002012, "The provided value for scope is not valid.")
        if "client_assertion" in form:
            if self.certificate is None or form.get("client_assertion_type") != ASSERTION_TYPE:
                return _login_error(401, "invalid_client", 700027, "Client assertion failed signature validation.")
            problem = self._check_assertion(form["client_assertion"], token_url)
            if problem:
                return _login_error(401, "invalid_client", 700027, f"Client assertion {problem}.")
        elif self.client_secret is None or form.get("client_secret") != self.client_secret:
            return _login_error(401, "invalid_client", 7000215,
                                "Invalid client secret provided. Ensure the secret being sent in the request is the "
                                f"client secret value, not the client secret ID, for a secret added to app "
                                f"'{self.client_id}'.")
        token = secrets.token_urlsafe(24)
        with self._lock:
            self.tokens.add(token)
            self.tokens_issued += 1
        return JSONResponse({"token_type": "Bearer", "expires_in": self.token_lifetime,
                             "ext_expires_in": self.token_lifetime, "access_token": token})

    def _check_assertion(self, assertion: str, audience: str) -> str | None:
        assert self.certificate is not None
        header = jwt.get_unverified_header(assertion)
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        thumbprint = jwt.utils.base64url_encode(hashlib.sha1(der).digest()).decode()
        if header.get("x5t") != thumbprint:
            return "names another certificate (x5t)"
        try:
            claims = jwt.decode(assertion, self.certificate.public_key(), algorithms=["RS256"], audience=audience,
                                issuer=self.client_id, options={"require": ["exp", "nbf", "jti", "sub"]})
        except jwt.PyJWTError as exc:
            return f"failed validation ({type(exc).__name__})"
        return None if claims["sub"] == self.client_id else "has the wrong subject"

    # -- Graph ----------------------------------------------------------------------------------

    def _gate(self, request: Request) -> Response | None:
        """Authentication and throttling, before any Graph answer."""
        self.requests.append(f"GET {request.url.path}")
        throttled = self._throttles.pop(0) if self._throttles else None
        if throttled is not None:
            status, retry_after = throttled
            code = "TooManyRequests" if status == 429 else "ServiceUnavailable"
            return JSONResponse(_graph_error(code, "Too many requests, retry later." if status == 429
                                             else "The service is temporarily unavailable."),
                                status_code=status, headers={"Retry-After": retry_after})
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.tokens:
            return JSONResponse(_graph_error("InvalidAuthenticationToken", "Access token validation failure."),
                                status_code=401)
        return None

    async def _delta(self, request: Request) -> Response:
        kind = "users" if request.url.path.endswith("/users/delta") else "groups"
        with self._lock:
            refused = self._gate(request)
            if refused is not None:
                return refused
            params = request.query_params
            if "$skiptoken" in params:
                return self._page(request, params["$skiptoken"])
            if "$deltatoken" in params:
                token = params["$deltatoken"]
                if token in self._expired or token not in self._delta_states:
                    return JSONResponse(_graph_error("syncStateNotFound", "The sync state could not be found or "
                                                     "has expired; start a new round of change tracking."),
                                        status_code=410, headers={"Location": f"{self.graph_url}/{kind}/delta"})
                token_kind, select, old = self._delta_states[token]
                assert token_kind == kind
                entries = self._changes(kind, select, old)
            else:
                select = [name for name in params.get("$select", "").split(",") if name]
                known = USER_PROPERTIES if kind == "users" else GROUP_PROPERTIES
                for name in select:
                    if name not in known:
                        type_name = "User" if kind == "users" else "Group"
                        message = f"Could not find a property named '{name}' on type " \
                                  f"'Microsoft.DirectoryServices.{type_name}'."
                        return JSONResponse(_graph_error("Request_BadRequest", message), status_code=400)
                select = select or list(known)
                entries = self._changes(kind, select, _State())
            final = secrets.token_urlsafe(16)
            self._delta_states[final] = (kind, select, copy.deepcopy(self.state))
            return self._start_round(request, entries, f"{self.graph_url}/{kind}/delta?$deltatoken={final}",
                                     context=f"{kind}({','.join(select)})" if select else kind)

    def _changes(self, kind: str, select: list[str], old: _State) -> list[dict[str, Any]]:
        """What changed from ``old`` to now, as delta entries (from nothing: the initial round)."""
        new = self.state
        entries: list[dict[str, Any]] = []
        if kind == "users":
            for anchor, user in new.users.items():
                live, was_live = anchor not in new.deleted, anchor in old.users and anchor not in old.deleted
                if not live:
                    if was_live:
                        entries.append({"id": anchor, "@removed": {"reason": "changed"}})
                    continue
                before = old.users.get(anchor) if was_live else None
                if before is not None and before == user:
                    continue
                entry = _selected(user, select, before)
                if "manager" in select and (before or {}).get("manager") != user.get("manager"):
                    changes = []
                    if before is not None and before.get("manager"):
                        changes.append({"@odata.type": USER, "id": before["manager"],
                                        "@removed": {"reason": "deleted"}})
                    if user.get("manager"):
                        changes.append({"@odata.type": USER, "id": user["manager"]})
                    entry["manager@delta"] = changes
                entries.append(entry)
            for anchor in old.users:
                if anchor not in new.users:
                    entries.append({"id": anchor, "@removed": {"reason": "deleted"}})
            return entries
        for anchor, group in new.groups.items():
            before = old.groups.get(anchor)
            members, old_members = new.members[anchor], old.members.get(anchor, [])
            if before == group and members == old_members:
                continue
            changes = [{"@odata.type": self._type(m), "id": m, "@removed": {"reason": "deleted"}}
                       for m in old_members if m not in members]
            changes += [{"@odata.type": self._type(m), "id": m} for m in members if m not in old_members]
            entry = _selected(group, select, before)
            if "members" not in select or not changes:
                entries.append(entry)
                continue
            # A long member list comes in several entries of the same group (Graph's paging of
            # members@delta), each with the group's properties again.
            for start in range(0, len(changes), self.member_chunk):
                entries.append({**entry, "members@delta": changes[start:start + self.member_chunk]})
        for anchor in old.groups:
            if anchor not in new.groups:
                entries.append({"id": anchor, "@removed": {"reason": "deleted"}})
        return entries

    def _type(self, anchor: str) -> str:
        return GROUP if anchor in self.state.groups or anchor not in self.state.users else USER

    def _start_round(self, request: Request, entries: list[dict[str, Any]], final_link: str | None,
                     context: str) -> Response:
        round_id = secrets.token_urlsafe(8)
        self._rounds[round_id] = ([{"@odata.context": f"{self.graph_url}/$metadata#{context}"}, *entries], final_link)
        return self._page(request, f"{round_id}.0")

    def _page(self, request: Request, skiptoken: str) -> Response:
        round_id, _, offset_text = skiptoken.partition(".")
        if round_id not in self._rounds:
            return JSONResponse(_graph_error("Request_BadRequest", "Invalid skip token."), status_code=400)
        header, *entries = self._rounds[round_id][0]
        final_link = self._rounds[round_id][1]
        offset = int(offset_text)
        page = entries[offset:offset + self.page_size]
        body: dict[str, Any] = {"@odata.context": header["@odata.context"]}
        if offset + self.page_size < len(entries):
            body["@odata.nextLink"] = f"{self.graph_url}{request.url.path.removeprefix('/v1.0')}" \
                                      f"?$skiptoken={round_id}.{offset + self.page_size}"
        elif final_link is not None:
            body["@odata.deltaLink"] = final_link
        body["value"] = page
        return JSONResponse(body)

    async def _deleted_users(self, request: Request) -> Response:
        with self._lock:
            refused = self._gate(request)
            if refused is not None:
                return refused
            if "$skiptoken" in request.query_params:
                return self._page(request, request.query_params["$skiptoken"])
            select = [name for name in request.query_params.get("$select", "").split(",") if name]
            entries = [{"@odata.type": USER, **_selected(self.state.users[anchor], select, None),
                        "deletedDateTime": when} for anchor, when in self.state.deleted.items()]
            return self._start_round(request, entries, None, "directory/deletedItems/microsoft.graph.user")

    async def _assigned(self, request: Request) -> Response:
        with self._lock:
            refused = self._gate(request)
            if refused is not None:
                return refused
            if request.path_params["id"] != self.service_principal_id:
                return _not_found(request.path_params["id"])
            if "$skiptoken" in request.query_params:
                return self._page(request, request.query_params["$skiptoken"])
            entries = [{"id": secrets.token_urlsafe(16), "deletedDateTime": None, "appRoleId": role,
                        "createdDateTime": "2026-01-02T04:22:45Z", "principalDisplayName": self._name(anchor),
                        "principalId": anchor, "principalType": kind, "resourceDisplayName": "identity-sync target",
                        "resourceId": self.service_principal_id}
                       for anchor, (kind, role) in self.assignments.items()]
            select = request.query_params.get("$select")
            if select:
                entries = [{k: v for k, v in e.items() if k in select.split(",") or k == "id"} for e in entries]
            return self._start_round(request, entries, None,
                                     f"servicePrincipals('{self.service_principal_id}')/appRoleAssignedTo")

    async def _service_principal(self, request: Request) -> Response:
        with self._lock:
            refused = self._gate(request)
            if refused is not None:
                return refused
            if request.path_params["id"] != self.service_principal_id:
                return _not_found(request.path_params["id"])
            roles = [{"allowedMemberTypes": ["User"], "description": value, "displayName": value, "id": role_id,
                      "isEnabled": True, "origin": "Application", "value": value}
                     for value, role_id in self.app_roles.items()]
            return JSONResponse({"@odata.context": f"{self.graph_url}/$metadata#servicePrincipals(id,appRoles)/$entity",
                                 "id": self.service_principal_id, "appRoles": roles})

    def _name(self, anchor: str) -> str:
        found = self.state.users.get(anchor) or self.state.groups.get(anchor) or {}
        return str(found.get("displayName") or anchor)

    async def _user(self, request: Request) -> Response:
        with self._lock:
            refused = self._gate(request)
            if refused is not None:
                return refused
            anchor = request.path_params["id"]
            user = self.state.users.get(anchor)
            if user is None or anchor in self.state.deleted:
                return _not_found(anchor)
            select = [name for name in request.query_params.get("$select", "").split(",") if name]
            body = {"@odata.context": f"{self.graph_url}/$metadata#users/$entity", **_selected(user, select, None)}
            if "manager" in request.query_params.get("$expand", "") and user.get("manager"):
                body["manager"] = {"@odata.type": USER, "id": user["manager"]}
            return JSONResponse(body)

    async def _member_of(self, request: Request) -> Response:
        with self._lock:
            refused = self._gate(request)
            if refused is not None:
                return refused
            if "$skiptoken" in request.query_params:
                return self._page(request, request.query_params["$skiptoken"])
            anchor = request.path_params["id"]
            if anchor not in self.state.users:
                return _not_found(anchor)
            entries = [{"@odata.type": GROUP, "id": group} for group, members in self.state.members.items()
                       if anchor in members]
            return self._start_round(request, entries, None, "groups(id)")

    async def _group(self, request: Request) -> Response:
        with self._lock:
            refused = self._gate(request)
            if refused is not None:
                return refused
            group = self.state.groups.get(request.path_params["id"])
            if group is None:
                return _not_found(request.path_params["id"])
            select = [name for name in request.query_params.get("$select", "").split(",") if name]
            return JSONResponse({"@odata.context": f"{self.graph_url}/$metadata#groups/$entity",
                                 **_selected(group, select, None)})

    async def _group_members(self, request: Request) -> Response:
        with self._lock:
            refused = self._gate(request)
            if refused is not None:
                return refused
            if "$skiptoken" in request.query_params:
                return self._page(request, request.query_params["$skiptoken"])
            anchor = request.path_params["id"]
            if anchor not in self.state.groups:
                return _not_found(anchor)
            entries = [{"@odata.type": self._type(m), "id": m} for m in self.state.members[anchor]]
            return self._start_round(request, entries, None, "directoryObjects(id)")

    async def _deleted_item(self, request: Request) -> Response:
        with self._lock:
            refused = self._gate(request)
            if refused is not None:
                return refused
            anchor = request.path_params["id"]
            if anchor not in self.state.deleted:
                return _not_found(anchor)
            select = [name for name in request.query_params.get("$select", "").split(",") if name]
            return JSONResponse({"@odata.context": f"{self.graph_url}/$metadata#directoryObjects/$entity",
                                 "@odata.type": USER, **_selected(self.state.users[anchor], select, None),
                                 "deletedDateTime": self.state.deleted[anchor]})


def _selected(obj: dict[str, Any], select: list[str], before: dict[str, Any] | None) -> dict[str, Any]:
    """The selected properties of ``obj`` as Graph returns them: those that have a value, and
    ``null`` for those that had one in ``before`` (cleared); ``id`` always; relationships never."""
    entry: dict[str, Any] = {}
    for name in select or list(obj):
        if name in ("id", "manager", "members"):
            continue
        value = obj.get(name)
        if value is not None:
            entry[name] = value
        elif before is not None and before.get(name) is not None:
            entry[name] = None
    entry["id"] = obj["id"]
    return entry


def _graph_error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message,
                      "innerError": {"date": "2026-12-05T20:00:00", "request-id": secrets.token_hex(16),
                                     "client-request-id": secrets.token_hex(16)}}}


def _not_found(anchor: str) -> Response:
    return JSONResponse(_graph_error("Request_ResourceNotFound", f"Resource '{anchor}' does not exist or one of its "
                                     "queried reference-property objects are not present."), status_code=404)


def _login_error(status: int, error: str, code: int, text: str) -> Response:
    trace = secrets.token_hex(16)
    return JSONResponse({"error": error, "error_description": f"AADSTS{code}: {text} Trace ID: {trace} "
                         f"Correlation ID: {secrets.token_hex(16)} Timestamp: 2026-12-05 20:00:00Z",
                         "error_codes": [code], "timestamp": "2026-12-05 20:00:00Z", "trace_id": trace,
                         "correlation_id": secrets.token_hex(16)}, status_code=status)



def make_certificate(common_name: str = "identity-sync test app") -> str:
    """A self-signed RSA certificate and its private key in one PEM, as an app registration's
    certificate credential is kept (``openssl req -x509 -newkey rsa:2048 …``)."""
    import datetime

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem.decode() + certificate.public_bytes(serialization.Encoding.PEM).decode()
