"""Costly requests served by a process of their own (issue 11, item 1: fairness between tenants).

**Why.** A Python process runs one thread at a time (the interpreter lock). A tenant's costly
request — a 1,000-operation PATCH, a bulk, a 1,000-row page — runs pure Python for tens of
milliseconds, and every other tenant's request in the process waits for the lock at each step
where it let go of it: the socket, each SQLite statement, about a dozen per request. Pacing inside
the process (web/limits.py ``Lanes``) brought another tenant's p99 under such an attack down to
about 5× its idle p99 and no further. The kernel shares the cores between processes, and each
process has a lock of its own: with the costly requests served by a second process, that p99 was
1.3–1.4× idle (benchmarks/README.md, "Fairness").

**What.** A request known to be costly before it runs (:func:`known_costly`: a bulk, a large body,
a large page, a long ``attributes`` list or filter, a ``.search``) is forwarded over a Unix socket
to a child process serving the same app with the same settings (:mod:`offload_process`). The
child authenticates, limits and answers it exactly as this process would, and its answer goes back
as it came. A request that turns out costly only while it runs (a group with many members, a
filter matching many rows) stays here, paced by the lanes. While the child is not up (starting,
restarted after a crash), requests are served here.

**Trust.** The child listens only on a socket in a private (0700) directory: whatever can connect
to it can read the database too. It believes the client address, scheme and request id the parent
sends in ``x-idsync-*`` headers (:class:`ServedForParent`), which the parent strips from every
incoming request first, and it reports what it learned about the request (tenant, credential id,
refusals, route) in a response header the parent removes. So each request still has one
access-log line and one metrics sample, the parent's.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, unquote_to_bytes

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from identity_sync.errors import ScimError
from identity_sync.observability import context
from identity_sync.web.responses import error_response

log = structlog.get_logger("identity_sync.web")

#: A body above this is costly: Entra's and Okta's creates and PATCHes are one to a few KiB; a
#: 1,000-operation PATCH is about 70 KiB and takes about 1 ms per operation.
COSTLY_BODY_BYTES = 16 * 1024
#: A page above this many resources is costly (Okta imports pages of 100; 1,000 rows: ~20 ms).
COSTLY_PAGE_SIZE = 200
#: More names than this in ``attributes`` or ``excludedAttributes`` are costly (each is applied to
#: every resource of the page).
COSTLY_ATTRIBUTE_NAMES = 20
#: A filter longer than this is costly (Entra's and Okta's are one term: ``userName eq "…"``).
COSTLY_FILTER_CHARACTERS = 1024

#: The headers the parent sets for the child, stripped from every incoming request.
CLIENT_HEADER = b"x-idsync-client"
SCHEME_HEADER = b"x-idsync-scheme"
#: The child's report of the request (:func:`facts_header`), removed before the answer leaves.
FACTS_HEADER = b"x-idsync-facts"
_OURS = (CLIENT_HEADER, SCHEME_HEADER, FACTS_HEADER)
#: Not forwarded either way: they describe one connection, not the request (RFC 9110, 7.6.1), or
#: the server that adds its own (uvicorn: date, server; NormalizePath: x-request-id).
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"te", b"upgrade",
                         b"proxy-connection", b"proxy-authorization", b"trailer"})
_ANSWER_DROPPED = _HOP_BY_HOP | {b"date", b"server", b"x-request-id", FACTS_HEADER}
#: Set anew for the child (length, request id), or answered here already: ``Expect: 100-continue``
#: got its ``100`` from this process's server, and the child's would arrive as the answer.
_REQUEST_DROPPED = _HOP_BY_HOP | {b"content-length", b"x-request-id", b"expect"}


def known_costly(method: str, path: str, query_string: bytes, headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether a request (its normalized path, NormalizePath) is costly before it runs."""
    parts = path.split("/")
    # /scim/v2/{tenant}/{endpoint}[/...]: only the SCIM routes of a tenant.
    if len(parts) < 5 or parts[1] != "scim" or parts[2] != "v2":
        return False
    endpoint = parts[4]
    if endpoint in ("Bulk", ".search") or (len(parts) > 5 and parts[-1] == ".search"):
        return method == "POST"
    if method in ("POST", "PUT", "PATCH"):
        length = next((value for name, value in headers if name == b"content-length"), None)
        # No length (chunked): as large as the service takes.
        return length is None or not length.isdigit() or int(length) > COSTLY_BODY_BYTES
    if method != "GET" or not query_string:
        return False
    if len(query_string) <= COSTLY_FILTER_CHARACTERS:
        # Entra's and Okta's lookups (``filter=userName eq "…"``) end here, unparsed: this runs for
        # every request, and parsing a query string costs three times these two searches. Searched
        # percent-decoded: ``%63ount=1000`` is a ``count`` to the handler too.
        lowered = unquote_to_bytes(query_string).lower()
        if b"count" not in lowered and b"attributes" not in lowered:
            return False
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        name = name.lower()
        if name == "count" and value.strip().isdigit() and int(value) > COSTLY_PAGE_SIZE:
            return True
        if name in ("attributes", "excludedattributes") and value.count(",") >= COSTLY_ATTRIBUTE_NAMES:
            return True
        if name == "filter" and len(value) > COSTLY_FILTER_CHARACTERS:
            return True
    return False


@dataclass
class Answer:
    """The child's answer: status, headers (the facts header included) and the body's chunks."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: Callable[[], Any]  # an async iterator of bytes
    close: Callable[[], Awaitable[None]]


class ChildUnreachable(Exception):
    """The request never reached the child (no connection): serving it here repeats nothing."""


class Child(Protocol):
    """What the middleware needs of the child process (offload_process.CostlyProcess)."""

    @property
    def available(self) -> bool: ...

    async def send(self, method: str, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> Answer: ...


class OffloadCostly:
    """Parent side: forward the costly requests to the child; the others, and all of them while the
    child is not up, to ``app``. Inside NormalizePath: the path is normalized and the request has
    its id and facts."""

    def __init__(self, app: ASGIApp, child: Child, max_body_bytes: int) -> None:
        self.app = app
        self.child = child
        self.max_body_bytes = max_body_bytes
        #: Requests the child answered (observed by tests).
        self.forwarded = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.child.available:
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        if any(name.startswith(b"x-idsync-") for name, _ in headers):
            headers = [(name, value) for name, value in headers if name not in _OURS]
            scope["headers"] = headers  # never believed from a client, here or in the child
        if not known_costly(scope["method"], scope["path"], scope["query_string"], headers):
            await self.app(scope, receive, send)
            return
        body, complete = await _read(receive, self.max_body_bytes)
        if not complete:  # larger than the service takes: refused here (413), nothing forwarded
            await self.app(scope, _replay(body, receive), send)
            return
        facts = context.current()
        client = scope.get("client")
        forwarded = [(name, value) for name, value in headers if name not in _REQUEST_DROPPED]
        forwarded += [(SCHEME_HEADER, scope.get("scheme", "http").encode())]
        if client:
            forwarded.append((CLIENT_HEADER, f"{client[0]}:{client[1]}".encode()))
        if facts is not None:
            forwarded.append((b"x-request-id", facts.request_id.encode()))
        # As the client sent it, still percent-encoded (``path`` is decoded: a space or an ``é`` in
        # an id cannot go on a request line); the child normalizes it as this process did.
        target = scope.get("raw_path") or quote(scope["path"]).encode()
        if scope["query_string"]:
            target += b"?" + scope["query_string"]
        try:
            answer = await self.child.send(scope["method"], target, forwarded, body)
        except ChildUnreachable:
            await self.app(scope, _replay(body, receive), send)
            return
        except Exception as exc:  # reached the child, no answer: it may have acted; not repeated
            log.error("offload.failed", error=type(exc).__name__, detail=str(exc)[:200])
            refusal = ScimError("The service is restarting a worker; retry the request.", status=503,
                                headers={"Retry-After": "1"})
            await error_response(refusal)(scope, receive, send)
            return
        self.forwarded += 1
        try:
            reported = next((value for name, value in answer.headers if name == FACTS_HEADER), None)
            if reported is not None:
                _adopt(scope, facts, reported)
            await send({"type": "http.response.start", "status": answer.status,
                        "headers": [(n, v) for n, v in answer.headers if n not in _ANSWER_DROPPED]})
            async for chunk in answer.body():
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await answer.close()


@dataclass(frozen=True)
class _ReportedRoute:
    """The route the child's router matched, where NormalizePath's metrics look for it."""

    path: str


def facts_header(facts: context.RequestFacts | None, scope: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """Child side: what it learned of the request, for the parent's log line and metrics."""
    route = getattr(scope.get("route"), "path", None)
    report = {"route": route if isinstance(route, str) else None}
    if facts is not None:
        report |= {"tenant": facts.tenant, "credential_id": facts.credential_id,
                   "auth_failure": facts.auth_failure, "limited_by": facts.limited_by}
    return FACTS_HEADER, json.dumps(report, separators=(",", ":")).encode()


def _adopt(scope: Scope, facts: context.RequestFacts | None, reported: bytes) -> None:
    try:
        report = json.loads(reported)
    except ValueError:
        return
    if isinstance(report.get("route"), str):
        scope["route"] = _ReportedRoute(report["route"])
    if facts is not None:
        for name in ("tenant", "credential_id", "auth_failure", "limited_by"):
            if isinstance(report.get(name), str):
                setattr(facts, name, report[name])


class ServedForParent:
    """Child side, outermost: the client's address and scheme as the parent saw them (the child's
    own peer is the parent, on a Unix socket)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == CLIENT_HEADER:
                    host, _, port = value.decode("latin-1").rpartition(":")
                    scope["client"] = (host, int(port) if port.isdigit() else 0)
                elif name == SCHEME_HEADER and value in (b"http", b"https"):
                    scope["scheme"] = value.decode()
        await self.app(scope, receive, send)


async def _read(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The request's body, or its first ``limit + 1`` bytes and False when it is longer."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks), True
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks), False
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the body already read once, then the server's own (its disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
