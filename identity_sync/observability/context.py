"""What is learnt about one HTTP request while it is served: its id, who authenticated, why a
credential was refused, which limit turned it away. The access-log middleware (web/app.py) puts a
:class:`RequestFacts` in a context variable; code deeper down fills it in; the middleware logs and
counts it once the response is sent.

A mutable holder rather than context variables per fact: authentication runs in a worker thread
(``anyio.to_thread``), which gets a *copy* of the context — a variable set there is lost on the
way back, but the holder it points at is the same object."""

from __future__ import annotations

import re
from contextvars import ContextVar, Token
from dataclasses import dataclass
from random import getrandbits as _random_bits  # reseeded in a forked child (random's at-fork hook)

#: An ``X-Request-Id`` a client or proxy sent is kept only if it is a short plain token: anything
#: else (spaces, quotes, newlines, 1 kB of text) would be written into every log line of the request.
_SANE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def request_id(incoming: str | None) -> str:
    """The incoming id if sane, else a new one: 128 random bits in hex, as a uuid4's hex. From
    the process's Mersenne Twister (seeded from the OS at start), not ``os.urandom``: an id that
    only has to be unique needs no system call, and every call that releases the interpreter
    lock on the event loop's thread may wait a whole switch interval to get it back."""
    if incoming is not None and _SANE_ID.fullmatch(incoming):
        return incoming
    return f"{_random_bits(128):032x}"


@dataclass(slots=True)
class RequestFacts:
    request_id: str
    #: The authenticated tenant's name and credential id (never the credential itself).
    tenant: str | None = None
    credential_id: str | None = None
    #: Why authentication or authorization failed (docs/observability.md lists the reasons).
    auth_failure: str | None = None
    #: Which limit refused the request (``rate``, ``concurrency``, ``cpu``, ``token_caller``, ``token_tenant``).
    limited_by: str | None = None


_current: ContextVar[RequestFacts | None] = ContextVar("identity_sync_request", default=None)


def current() -> RequestFacts | None:
    return _current.get()


def begin(facts: RequestFacts) -> Token[RequestFacts | None]:
    return _current.set(facts)


def end(token: Token[RequestFacts | None]) -> None:
    _current.reset(token)


def authenticated(tenant: str, credential_id: str | None) -> None:
    facts = _current.get()
    if facts is not None:
        facts.tenant, facts.credential_id = tenant, credential_id


def auth_failed(reason: str, credential_id: str | None = None) -> None:
    facts = _current.get()
    if facts is not None:
        facts.auth_failure = reason
        facts.credential_id = facts.credential_id or credential_id


def limited(limit: str) -> None:
    facts = _current.get()
    if facts is not None:
        facts.limited_by = limit
