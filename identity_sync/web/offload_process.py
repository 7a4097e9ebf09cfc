"""The child process that serves the costly requests (web/offload.py says why), and its life.

The serving process starts it with its app (create_app's lifespan), restarts it when it exits
(after 1 s, doubling up to 30 s while it keeps failing) and stops it with the app. The child is a
fresh interpreter (``spawn``: nothing of the parent's threads, locks or connections is inherited)
running the same app on the same settings under uvicorn, listening on a Unix socket in a private
temporary directory; it ends by itself if its parent is gone. Both processes share the database:
PostgreSQL, or a SQLite file whose writers of every process queue on one file lock
(storage/write_turn.py).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import multiprocessing
import os
import shutil
import tempfile
import threading
import time
from typing import Any

import httptools
import structlog

from identity_sync.config import Settings
from identity_sync.web.offload import Answer, ChildUnreachable

log = structlog.get_logger("identity_sync.web")

#: How long the child may take to answer its socket after it was started (imports, migrations
#: already done by the parent: about 1–2 s).
READY_WITHIN_SECONDS = 60.0
#: Requests forwarded at once at most; more wait for a connection. The child refuses a tenant's
#: requests past its concurrency cap at once anyway.
MAX_CONNECTIONS = 64
#: Read from the child at most this at once: a page of 1,000 users (400 KB) in few reads, each a
#: turn of the event loop and a chunk sent on.
READ_BYTES = 1024 * 1024
#: An idle connection to the child older than this is closed rather than reused.
IDLE_SECONDS = 60.0
#: The child's niceness: when both processes want a core, the kernel gives it to the one serving the
#: cheap requests first. Needed also because the two are usually one scheduling group (one
#: session's autogroup, one systemd service's cgroup), which the kernel shares fairly with others
#: but, within it, by niceness.
NICENESS = 10
#: At its yield points (pacing.pause: each PATCH or bulk operation, each rendered row) the child
#: gives up its core (``sched_yield``) if it has run this long since it last did. Niceness alone is
#: not enough: the kernel lets a running thread finish its time slice before a thread it woke runs
#: (Linux's EEVDF scheduler, "run to parity"), so a lookup arriving at the serving process waited
#: up to a scheduler tick (4 ms) behind the child even with the other core idle (``perf sched
#: timehist``). Yielding: another tenant's p99 under attack went from 3.6–3.8× idle to 1.03–1.05×
#: (benchmarks/README.md, "Fairness"); the attacker's own requests done fell by about a tenth.
YIELD_CORE_SECONDS = 0.0005


class CostlyProcess:
    """The child serving the costly requests, and the HTTP client that reaches it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings.model_copy(update={"costly_requests_process": False})
        self._directory = ""
        self.socket = ""
        self._process: Any = None
        self._connections = _Connections("")
        self._ready = False
        self._watcher: asyncio.Task[None] | None = None
        #: How many times a child was started (tests, logs).
        self.starts = 0

    @property
    def available(self) -> bool:
        return self._ready

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        self._directory = tempfile.mkdtemp(prefix="idsync-costly-")  # 0700: only this user connects
        self.socket = os.path.join(self._directory, "costly.sock")
        self._connections = _Connections(self.socket)
        self._watcher = asyncio.create_task(self._watch(), name="idsync-costly-watcher")

    async def stop(self) -> None:
        self._ready = False
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        process, self._process = self._process, None
        if process is not None and process.is_alive():
            process.terminate()  # uvicorn's graceful shutdown: the requests in progress end first
            await asyncio.to_thread(process.join, 30)
            if process.is_alive():
                process.kill()
                await asyncio.to_thread(process.join, 5)
        self._connections.close_idle()
        shutil.rmtree(self._directory, ignore_errors=True)

    async def send(self, method: str, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> Answer:
        return await self._connections.exchange(method, target, headers, body)

    async def _watch(self) -> None:
        backoff = 1.0
        while True:
            process = self._spawn()
            started = time.monotonic()
            if await self._answering(process):
                self._ready = True
                log.info("offload.ready", pid=process.pid, seconds=round(time.monotonic() - started, 2))
            while process.is_alive():
                await asyncio.sleep(0.5)
            self._ready = False
            self._connections.close_idle()  # the old child's: a new one listens anew
            if time.monotonic() - started > 60:
                backoff = 1.0  # it ran a while: a crash, not a child that cannot start
            log.error("offload.child_exited", pid=process.pid, exitcode=process.exitcode, restart_in=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    def _spawn(self) -> Any:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket)
        process = multiprocessing.get_context("spawn").Process(
            target=serve_costly, args=(self.settings, self.socket, os.getpid()), name="idsync-costly", daemon=True)
        process.start()
        self._process = process
        self.starts += 1
        return process

    async def _answering(self, process: Any) -> bool:
        deadline = time.monotonic() + READY_WITHIN_SECONDS
        while time.monotonic() < deadline and process.is_alive():
            try:
                _, writer = await asyncio.open_unix_connection(self.socket)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.close()
            return True
        if process.is_alive():
            log.error("offload.child_silent", pid=process.pid, seconds=READY_WITHIN_SECONDS)
            process.kill()
        return False


def serve_costly(settings: Settings, socket: str, parent: int) -> None:
    """The child's main: the app, for the parent only, on ``socket``."""
    import uvicorn

    from identity_sync import logs, pacing
    from identity_sync.web.app import create_app

    logs.configure(settings.log_level)
    pacing.yield_core_every(YIELD_CORE_SECONDS)
    with contextlib.suppress(OSError):  # a container may refuse; the child then only loses its yielding
        os.nice(NICENESS)
    threading.Thread(target=_end_with_parent, args=(parent,), name="idsync-parent-watch", daemon=True).start()
    # The parent closes the connections it keeps idle (IDLE_SECONDS); the child never does, so that
    # a request is never sent on a connection the child is closing at that moment.
    uvicorn.run(create_app(settings, served_for_parent=True), uds=socket, access_log=False, log_level="warning",
                log_config=None, lifespan="on", timeout_graceful_shutdown=30, timeout_keep_alive=24 * 3600)


def _end_with_parent(parent: int) -> None:
    """A parent killed without stopping its child (SIGKILL, OOM) leaves it to init: end then."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


class _Connections:
    """HTTP/1.1 to the child over its socket, connections kept alive and reused.

    By hand rather than with a general client (httpx): forwarding a 400 KB page through httpx cost
    the event loop 2–5 ms (its request and response objects, h11's parsing in Python, a cancel
    scope per read), and that loop serves every other tenant's requests; here it is one write and
    a few reads parsed by httptools (C, uvicorn's own parser). One peer, one socket, our own
    requests: no redirects, proxies, cookies, compression or TLS to handle."""

    def __init__(self, socket: str) -> None:
        self.socket = socket
        self._idle: list[tuple[float, asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def exchange(self, method: str, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> Answer:
        await self._slots.acquire()
        writer: asyncio.StreamWriter | None = None
        try:
            reader, writer = await self._connection()
            head = [method.encode(), b" ", target, b" HTTP/1.1\r\n"]
            for name, value in headers:
                head += [name, b": ", value, b"\r\n"]
            head.append(b"content-length: %d\r\n\r\n" % len(body))
            writer.write(b"".join(head))
            writer.write(body)
            answer = _Answer()
            parser = httptools.HttpResponseParser(answer)
            while not answer.headers_done:
                data = await reader.read(READ_BYTES)
                if not data:
                    raise ConnectionResetError("the child closed the connection without an answer")
                parser.feed_data(data)
        except BaseException:
            if writer is not None:
                writer.close()  # half an exchange on it: never reused
            self._slots.release()
            raise
        answer.status = parser.get_status_code()

        async def chunks() -> Any:
            while True:
                while answer.chunks:
                    yield answer.chunks.popleft()
                if answer.complete:
                    return
                data = await reader.read(READ_BYTES)
                if not data:
                    raise ConnectionResetError("the child closed the connection in the middle of an answer")
                parser.feed_data(data)

        released = False

        async def close() -> None:
            nonlocal released
            if released:
                return
            released = True
            # HTTP/1.1 keeps the connection unless the answer says otherwise (httptools' own
            # should_keep_alive() is reset once the message is complete).
            if answer.complete and not answer.chunks and (b"connection", b"close") not in answer.headers:
                self._idle.append((time.monotonic(), reader, writer))
            else:
                writer.close()
            self._slots.release()

        return Answer(answer.status, answer.headers, chunks, close)

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        now = time.monotonic()
        while self._idle:
            since, reader, writer = self._idle.pop()
            if now - since < IDLE_SECONDS and not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        try:
            return await asyncio.open_unix_connection(self.socket, limit=READ_BYTES)
        except OSError as exc:
            raise ChildUnreachable(str(exc)) from exc

    def close_idle(self) -> None:
        idle, self._idle = self._idle, []
        for _, _, writer in idle:
            writer.close()


class _Answer:
    """httptools' callbacks for one response."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: collections.deque[bytes] = collections.deque()
        self.headers_done = False
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(bytes(body))

    def on_message_complete(self) -> None:
        self.complete = True
