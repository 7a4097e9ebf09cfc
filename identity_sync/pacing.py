"""Yield points in the longest pure-Python loops of one request (PATCH operations, bulk
operations), so that a costly request gives the interpreter lock to other tenants' requests
while they run instead of only when the interpreter takes it from it (every
``thread_switch_interval_seconds``).

This module only carries the hook: who decides whether to pause, and for how long, is the HTTP
layer's :class:`identity_sync.web.limits.Lanes`, which installs a hook around each service call
it runs. Outside a request (the CLI, the engine, tests calling services directly) :func:`pause`
does nothing. No dependency on any other layer but ``nonblocking.py``: ``scim/`` and ``service/`` may call it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextvars import ContextVar, Token

from identity_sync import nonblocking

_HOOK: ContextVar[Callable[[], None] | None] = ContextVar("identity_sync_pause_hook", default=None)
#: Process-wide (yield_core_every): give up the core at a pause when this long has passed since the
#: last time; 0: never. Module state rather than a hook: it holds for every thread of the process.
_yield_every = 0.0
_yielded_at = 0.0


def pause() -> None:
    """A point where the current request may let other tenants' requests run first (and where
    one tried on the event loop gives up past its deadline: ``nonblocking.py``)."""
    global _yielded_at
    nonblocking.checkpoint()
    if _yield_every:
        now = time.perf_counter()
        if now - _yielded_at >= _yield_every:  # threads race on it harmlessly: a yield more or less
            _yielded_at = now
            os.sched_yield()
    hook = _HOOK.get()
    if hook is not None:
        hook()


def yield_core_every(seconds: float) -> None:
    """From now on, every thread of this process gives up its core (``sched_yield``) at a pause
    at most every ``seconds`` (0: never): for a process whose every request is costly, so that
    the processes serving the cheap ones get a core as soon as they want one (web/offload_process.py)."""
    global _yield_every
    _yield_every = seconds


def install(hook: Callable[[], None]) -> Token[Callable[[], None] | None]:
    """Call ``hook`` at each :func:`pause` in this context until :func:`uninstall`."""
    return _HOOK.set(hook)


def uninstall(token: Token[Callable[[], None] | None]) -> None:
    _HOOK.reset(token)
