"""Yield points in the longest pure-Python loops of one request (PATCH operations, bulk
operations), so that a costly request gives the interpreter lock to other tenants' requests
while they run instead of only when the interpreter takes it from it (every
``thread_switch_interval_seconds``).

This module only carries the hook: who decides whether to pause, and for how long, is the HTTP
layer's :class:`identity_sync.web.limits.Lanes`, which installs a hook around each service call
it runs. Outside a request (the CLI, the engine, tests calling services directly) :func:`pause`
does nothing. No dependency on any other layer: ``scim/`` and ``service/`` may call it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_HOOK: ContextVar[Callable[[], None] | None] = ContextVar("identity_sync_pause_hook", default=None)


def pause() -> None:
    """A point where the current request may let other tenants' requests run first."""
    hook = _HOOK.get()
    if hook is not None:
        hook()


@contextmanager
def paced(hook: Callable[[], None]) -> Iterator[None]:
    """Run the block with ``hook`` called at each :func:`pause` (in this thread's context)."""
    token = _HOOK.set(hook)
    try:
        yield
    finally:
        _HOOK.reset(token)
