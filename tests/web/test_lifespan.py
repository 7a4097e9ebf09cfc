"""The app's lifespan: the thread pool the handlers run service calls on is shut down when the app
stops (its threads end instead of being left to the interpreter's exit), and made anew if the
same app starts again."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import ScimClient


def _pool_thread(app: Any) -> threading.Thread:
    """One of the pool's threads (the pool starts them as work arrives)."""
    return app.state.handlers.pool.submit(threading.current_thread).result(timeout=10)


def test_the_request_pool_is_shut_down_when_the_app_stops(app: Any, issued: Any) -> None:
    with TestClient(app, base_url="https://scim.example.test") as http:
        scim = ScimClient(http, issued.tenant, issued.token)
        assert scim.get("/Users").status_code == 200  # served through the pool
        pool = app.state.handlers.pool
        worker = _pool_thread(app)
        assert worker.name.startswith("idsync-request") and worker.is_alive()
    with pytest.raises(RuntimeError, match="shutdown"):
        pool.submit(lambda: None)
    worker.join(timeout=10)
    assert not worker.is_alive()


def test_an_app_started_again_gets_a_new_pool(app: Any, issued: Any) -> None:
    with TestClient(app, base_url="https://scim.example.test"):
        first = app.state.handlers.pool
    with TestClient(app, base_url="https://scim.example.test") as http:
        assert app.state.handlers.pool is not first
        assert ScimClient(http, issued.tenant, issued.token).get("/Users").status_code == 200
    with pytest.raises(RuntimeError):
        app.state.handlers.pool.submit(lambda: None)
