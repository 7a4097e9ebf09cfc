"""A reverse proxy in front of a real SCIM target that answers ``503 Service Unavailable`` while the
test says the target is down (an outage, a deployment) and forwards everything otherwise: the
target itself stays real; only its availability is scripted. Runs under uvicorn in a thread."""

from __future__ import annotations

import threading

import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.pg import free_port
from tests.threaded_server import ThreadedServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}


class FlakyProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = free_port()
        self.down_for = 0  # requests still to answer 503
        self.refused = 0
        self._lock = threading.Lock()
        self._server: ThreadedServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def outage(self, requests: int) -> None:
        """The next ``requests`` requests get 503 (with ``Retry-After: 0``)."""
        with self._lock:
            self.down_for = requests

    async def _forward(self, request: Request) -> Response:
        with self._lock:
            if self.down_for > 0:
                self.down_for -= 1
                self.refused += 1
                return Response("down for maintenance", 503, headers={"Retry-After": "0"})
        async with httpx2.AsyncClient() as client:
            answer = await client.request(request.method, f"{self.upstream}{request.url.path}",
                                          params=request.query_params, content=await request.body(),
                                          headers={k: v for k, v in request.headers.items()
                                                   if k.lower() not in HOP_BY_HOP})
        return Response(answer.content, answer.status_code,
                        headers={k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP})

    def start(self) -> FlakyProxy:
        app = Starlette(routes=[Route("/{path:path}", self._forward,
                                      methods=["GET", "POST", "PUT", "PATCH", "DELETE"])])
        self._server = ThreadedServer(app, self.port, "flaky-proxy").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
