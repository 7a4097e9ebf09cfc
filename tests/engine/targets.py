"""Real SCIM targets on loopback for the engine's tests.

* :func:`start_our_target` — this project's service as a real ``python -m identity_sync serve``
  process, with a tenant, its bearer token and an OAuth client made by the CLI, exactly as an
  operator would (``identity-sync tenant create NAME --json``, ``client create --tenant NAME --json``).
* :func:`start_scim2_target` — ``scim2-server`` (python-scim, pinned in the dev dependencies), an
  in-memory SCIM server no one here wrote, with the GlobalRelay extension registered
  (``tests/engine/fixtures/``, the files docs/peers.md measured with).

Both bind 127.0.0.1 only and are always stopped by :meth:`Target.stop`.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.pg import free_port
from tests.reliability.servers import Server

FIXTURES = Path(__file__).parent / "fixtures"
SCIM2_SCHEMAS = FIXTURES / "scim2-server-schemas-globalrelay.json"
SCIM2_RESOURCE_TYPES = FIXTURES / "scim2-server-resource-types-globalrelay.json"
_START_SECONDS = 30.0


@dataclass
class Target:
    """A running SCIM target: its Tenant URL and credentials, and how to stop it."""

    name: str
    base_url: str
    token: str
    _stop: Callable[[], None] = field(repr=False)
    #: OAuth 2.0 client credentials (our service only; ``None`` for scim2-server).
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    token_endpoint: str | None = None
    #: The ``identity-sync serve`` process (our service only), for :func:`add_tenant`.
    server: Server | None = field(default=None, repr=False)

    def stop(self) -> None:
        self._stop()


def start_our_target(db_url: str, data_dir: Path, tenant: str = "engine") -> Target:
    """``identity-sync serve`` on a free port of 127.0.0.1 and the database ``db_url``, with
    tenant ``tenant`` made by the CLI."""
    server = Server(db_url, data_dir)
    # The CLI prints Tenant URLs under IDSYNC_PUBLIC_URL: this server's own address.
    server.env = {"IDSYNC_PUBLIC_URL": server.base}
    server.start(timeout=_START_SECONDS)
    try:
        made = _cli(server, "tenant", "create", tenant, "--json")
        oauth = _cli(server, "client", "create", "--tenant", tenant, "--json")
    except BaseException:
        server.stop()
        raise
    return Target("ours", made["tenant_url"], made["token"], server.stop, client_id=oauth["client_id"],
                  client_secret=oauth["client_secret"], token_endpoint=oauth["token_endpoint"], server=server)


def add_tenant(target: Target, tenant: str) -> Target:
    """One more tenant, with its token, on the service ``target`` runs (made by the CLI, like the
    first); stopping it is a no-op: the service stops with ``target``."""
    if target.server is None:
        raise ValueError(f"{target.name}: only our service has tenants")
    made = _cli(target.server, "tenant", "create", tenant, "--json")
    return Target("ours", made["tenant_url"], made["token"], lambda: None, server=target.server)


def _cli(server: Server, *args: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDSYNC_")}
    env.update(IDSYNC_DATABASE_URL=server.db_url, IDSYNC_DATA_DIR=str(server.data_dir), IDSYNC_LOG_LEVEL="WARNING",
               **server.env)
    done = subprocess.run([sys.executable, "-m", "identity_sync", *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"identity-sync {args[0]} {args[1]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def start_scim2_target(log_dir: Path) -> Target:
    """``scim2-server`` with the GlobalRelay extension on a free port of 127.0.0.1."""
    token = secrets.token_urlsafe(24)
    port = free_port()
    executable = Path(sys.executable).with_name("scim2-server")
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"scim2-server-{port}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            # ``--bearer-token=…`` in one word: a random token may begin with "-", which argparse
            # would otherwise take for an option (1 start in 64 failed that way).
            [str(executable), "--hostname", "127.0.0.1", "--port", str(port), f"--bearer-token={token}",
             "--schema", str(SCIM2_SCHEMAS), "--resource-type", str(SCIM2_RESOURCE_TYPES)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop() -> None:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    deadline = time.monotonic() + _START_SECONDS
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"scim2-server exited with {process.returncode}: {log_path.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if time.monotonic() > deadline:
                stop()
                raise RuntimeError(f"scim2-server did not listen on {port} within {_START_SECONDS} s") from None
            time.sleep(0.05)
    return Target("scim2-server", f"http://127.0.0.1:{port}/", token, stop)
