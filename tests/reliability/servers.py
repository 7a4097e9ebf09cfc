"""Real ``identity-sync serve`` processes on loopback, and a minimal HTTP client for them.

The reliability tests drive the service the way a load balancer would: several independent
server processes on one database, plain HTTP, and signals (SIGKILL) instead of polite shutdowns.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tests.pg import free_port

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


class Server:
    """One ``identity-sync serve`` subprocess (``workers`` uvicorn workers) on 127.0.0.1."""

    def __init__(self, db_url: str, data_dir: Path, *, workers: int = 1, port: int | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.db_url = db_url
        self.env = env or {}
        self.data_dir = data_dir
        self.workers = workers
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> Server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IDSYNC_")}
        # The per-tenant request limits (rate, concurrent requests, CPU budget) are off: these
        # tests fire bursts of up to 50 concurrent requests at one tenant on purpose.
        env.update(IDSYNC_DATABASE_URL=self.db_url, IDSYNC_DATA_DIR=str(self.data_dir), IDSYNC_LOG_LEVEL="WARNING",
                   IDSYNC_RATE_LIMIT_PER_SECOND="0", IDSYNC_TENANT_MAX_CONCURRENT_REQUESTS="0",
                   IDSYNC_TENANT_CPU_SECONDS_PER_SECOND="0", PYTHONUNBUFFERED="1")
        env.update(self.env)  # e.g. a small rate limit, for the tests of the limit itself
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = (self.data_dir / f"serve-{self.port}.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "identity_sync", "serve", "--port", str(self.port), "--workers", str(self.workers)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited with {self.process.returncode}: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"serve did not listen on {self.port} within {timeout} s: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return (self.data_dir / f"serve-{self.port}.log").read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the whole process group (the parent and every worker): no cleanup of any kind."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class Client:
    """SCIM over HTTP for one tenant; ``status`` 0 means the connection itself failed."""

    def __init__(self, base: str, tenant: str, token: str) -> None:
        self.url = f"{base}/scim/v2/{tenant}"
        self.token = token

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
             timeout: float = 30) -> Reply:
        data = orjson.dumps(body) if body is not None else None
        merged = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/scim+json"}
        merged.update(headers or {})
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=merged)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
                headers = {k.lower(): v for k, v in response.headers.items()}
                return Reply(response.status, headers, orjson.loads(raw) if raw else None)
        except urllib.error.HTTPError as error:
            with error:  # an unclosed error response is a ResourceWarning (an error in this suite)
                raw = error.read()
            try:
                parsed = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                parsed = raw.decode(errors="replace")
            return Reply(error.code, {k.lower(): v for k, v in error.headers.items()}, parsed)
        except (OSError, urllib.error.URLError, http.client.HTTPException) as error:
            # HTTPException: the server was killed mid-response (IncompleteRead, BadStatusLine).
            return Reply(0, {}, repr(error))

    def create_user(self, user_name: str, **attributes: Any) -> Reply:
        return self.call("POST", "/Users", {"schemas": [USER_SCHEMA], "userName": user_name, **attributes})

    def create_group(self, name: str) -> Reply:
        return self.call("POST", "/Groups", {"schemas": [GROUP_SCHEMA], "displayName": name})

    def add_member(self, group_id: str, member_id: str) -> Reply:
        return self.call("PATCH", f"/Groups/{group_id}", {"schemas": [PATCH_SCHEMA], "Operations": [
            {"op": "add", "path": "members", "value": [{"value": member_id}]}]})
