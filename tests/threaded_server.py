"""An ASGI app under uvicorn in a daemon thread on loopback, for the stand-ins the tests need
(the Graph-shaped server, a flaky proxy in front of a real target)."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn


class ThreadedServer:
    def __init__(self, app: Any, port: int, name: str) -> None:
        # log_config=None: uvicorn would otherwise reconfigure the process's logging (its loggers
        # stop reaching the root handler), and tests that run later in this process would see it.
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                    lifespan="off", log_config=None))
        self.thread = threading.Thread(target=self.server.run, name=name, daemon=True)
        self.name = name

    def start(self, timeout: float = 15) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"{self.name} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
