"""Attempts that must not wait: a light read tried on the event loop itself, and given up — to
run again in a worker thread — at the first thing that would make it wait.

Why (issue 11, item 6; benchmarks/README.md): a service call in a worker thread costs more than
the thread hop's own work. Every SQLite call releases the interpreter lock, and with 8 requests
in flight the event loop and the workers hand it back and forth: 30 context switches per
``userName`` lookup, about a third of its CPU time. The same lookup run on the event loop
switches no thread at all.

The event loop is shared by every request of the process, so nothing may wait there. Inside
:func:`attempt`, whatever would wait calls :func:`refuse` first and raises :class:`WouldBlock`:
a write, a pooled connection, a lane of the tenant's, the network, a pacing pause — and the
attempt's own deadline, checked at each yield point (``pacing.py``) and by SQLite between
virtual-machine steps (``storage/db.py``). Only reads are attempted, so running the call again
from the start repeats nothing that counts: whoever admits the request (authentication, the rate
limit) keeps the outcome of the first run.

No dependency on any other layer: ``storage/``, ``auth/`` and ``web/`` all call it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

#: When the current attempt must give up (``time.perf_counter()``), ``None`` outside any attempt.
_DEADLINE: ContextVar[float | None] = ContextVar("identity_sync_nonblocking_deadline", default=None)


class WouldBlock(Exception):
    """Raised inside an :func:`attempt` instead of waiting; the caller runs the work elsewhere."""


@contextmanager
def attempt(seconds: float) -> Iterator[None]:
    """Run the block as a non-blocking attempt that gives up after ``seconds``."""
    token = _DEADLINE.set(time.perf_counter() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def active() -> bool:
    """Whether the caller runs inside an attempt (and so must not wait)."""
    return _DEADLINE.get() is not None


def refuse(what: str) -> None:
    """Before something that may wait: inside an attempt, give up instead."""
    if _DEADLINE.get() is not None:
        raise WouldBlock(what)


def expired() -> bool:
    """Whether the current attempt is past its deadline (never outside an attempt)."""
    deadline = _DEADLINE.get()
    return deadline is not None and time.perf_counter() > deadline


def checkpoint() -> None:
    """A point where an attempt past its deadline gives up."""
    if expired():
        raise WouldBlock("deadline")
