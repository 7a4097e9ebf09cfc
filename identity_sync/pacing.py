"""Yield points in the longest pure-Python loops of one request (PATCH operations, bulk
operations), so that a costly request gives the interpreter lock to other tenants' requests
while they run instead of only when the interpreter takes it from it (every
``thread_switch_interval_seconds``).

This module only carries the hook: who decides whether to pause, and for how long, is the HTTP
layer's :class:`identity_sync.web.limits.Lanes`, which installs a hook around each service call
it runs. Outside a request (the CLI, the engine, tests calling services directly) :func:`pause`
does nothing. No dependency on any other layer but ``nonblocking.py``: ``scim/`` and ``service/`` may call it."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token

from identity_sync import nonblocking

_HOOK: ContextVar[Callable[[], None] | None] = ContextVar("identity_sync_pause_hook", default=None)


def pause() -> None:
    """A point where the current request may let other tenants' requests run first (and where
    one tried on the event loop gives up past its deadline: ``nonblocking.py``)."""
    nonblocking.checkpoint()
    hook = _HOOK.get()
    if hook is not None:
        hook()


def install(hook: Callable[[], None]) -> Token[Callable[[], None] | None]:
    """Call ``hook`` at each :func:`pause` in this context until :func:`uninstall`."""
    return _HOOK.set(hook)


def uninstall(token: Token[Callable[[], None] | None]) -> None:
    _HOOK.reset(token)
