"""A throw-away PostgreSQL server for the tests: ``initdb`` into a temporary directory, start it on
a free loopback port, stop it and delete everything at the end.

Nothing is expected to be running or configured beforehand: the binaries are found on disk
(Debian's ``/usr/lib/postgresql/<major>/bin``, ``pg_config --bindir`` or ``PATH``). PostgreSQL
refuses to run as root, so as root the server runs as the ``postgres`` user (which the Debian
package creates) through ``runuser``. With no binaries, :func:`find_bindir` returns ``None`` and
the PostgreSQL half of the suite skips — unless ``IDSYNC_REQUIRE_POSTGRES`` is set (``.ci/run``
sets it), where a missing server must fail the run instead of silently testing less.
"""

from __future__ import annotations

import itertools
import os
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg

SKIP_REASON = ("PostgreSQL server binaries (initdb, pg_ctl) not found: the PostgreSQL half of the suite is skipped "
               "(apt-get install postgresql-15, or run .ci/run, to test it)")


def find_bindir() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name)
                        if p.parent.name.isdigit() else 0, reverse=True)
    if shutil.which("pg_config"):
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        if found.returncode == 0:
            candidates.append(Path(found.stdout.strip()))
    if shutil.which("pg_ctl"):
        candidates.append(Path(shutil.which("pg_ctl") or "").parent)
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One cluster on 127.0.0.1:``port``, superuser ``postgres``, trust authentication (loopback
    only, throw-away data)."""

    def __init__(self, bindir: Path, *, synchronous_commit: bool = False) -> None:
        self.bindir = bindir
        self.synchronous_commit = synchronous_commit
        self.root = Path(tempfile.mkdtemp(prefix="idsync-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            # The data directory must belong to the user the server runs as.
            self._as_user = ["runuser", "-u", "postgres", "--"]
            self.root.chmod(0o755)
            shutil.chown(self.root, "postgres", "postgres")

    def _run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self._as_user, *args], capture_output=True, text=True, check=check,
                              timeout=timeout, cwd=self.root)

    def init(self) -> None:
        # C collation: byte order, the order SQLite sorts text in, so keyset pagination and
        # `ORDER BY created_at, id` agree across both databases (and initdb needs no locale).
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--locale=C", "--no-sync")

    def start(self, *, durable: bool = False, shared_buffers: str = "128MB") -> None:
        # fsync off unless `durable`: a test cluster need not survive an OS crash. It survives a
        # server crash or restart either way, which is all the fault tests do to it.
        # synchronous_commit off too, unless asked for: a commit then returns before its WAL is
        # written, and a server crash could lose the last ones acknowledged — which a cluster
        # that a test restarts must not (tests/reliability/test_faults.py asks for it).
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c max_connections=400 "
                   f"-c shared_buffers={shared_buffers}")
        if not durable:
            options += " -c fsync=off -c full_page_writes=off"
        if not durable and not self.synchronous_commit:
            options += " -c synchronous_commit=off"
        result = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                           "-t", "60", "-o", options, "start", check=False)
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {result.stdout}{result.stderr}\n{self.log_tail()}")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w", "-m", mode, "stop", check=False)

    def log_tail(self) -> str:
        try:
            return self.log.read_text()[-2000:]
        except OSError:
            return ""

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        """Run one statement outside a transaction (CREATE/DROP DATABASE need that)."""
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]  # our own fixed statements


    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.admin("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class DatabaseFactory:
    """Fresh databases cloned from ``template``, made one ahead in a background thread and
    dropped in it too: a clone costs ~30 ms and a drop ~10 ms, which the test running meanwhile
    hides. The template must not be connected to while it is being cloned."""

    def __init__(self, server: PostgresServer, template: str, prefix: str) -> None:
        self.server = server
        self.template = template
        self.prefix = prefix
        self._names = itertools.count()
        self._ready: queue.Queue[str | BaseException] = queue.Queue(maxsize=2)
        self._doomed: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="pg-database-factory", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        conn = psycopg.connect(f"host=127.0.0.1 port={self.server.port} user=postgres dbname=postgres",
                               autocommit=True)
        try:
            while True:
                # Drops first: they free what the next clone would otherwise compete with.
                while True:
                    try:
                        doomed = self._doomed.get_nowait()
                    except queue.Empty:
                        break
                    if doomed is None:
                        return
                    conn.execute(f"DROP DATABASE IF EXISTS {doomed} WITH (FORCE)")  # type: ignore[arg-type]
                name = f"{self.prefix}_{next(self._names)}"
                try:
                    conn.execute(f"CREATE DATABASE {name} TEMPLATE {self.template}")  # type: ignore[arg-type]
                    item: str | BaseException = name
                except psycopg.Error as exc:
                    item = exc
                while True:
                    try:
                        self._ready.put(item, timeout=0.05)
                        break
                    except queue.Full:
                        try:
                            doomed = self._doomed.get_nowait()
                        except queue.Empty:
                            continue
                        if doomed is None:
                            return
                        conn.execute(f"DROP DATABASE IF EXISTS {doomed} WITH (FORCE)")  # type: ignore[arg-type]
        finally:
            conn.close()

    def take(self) -> str:
        item = self._ready.get(timeout=60)
        if isinstance(item, BaseException):
            raise item
        return item

    def give_back(self, name: str) -> None:
        self._doomed.put(name)

    def close(self) -> None:
        self._doomed.put(None)
        self._thread.join(timeout=30)


def start_server(*, synchronous_commit: bool = False) -> PostgresServer | None:
    """A started server, or ``None`` when the machine has no PostgreSQL binaries."""
    bindir = find_bindir()
    return None if bindir is None else start_server_with(bindir=bindir, synchronous_commit=synchronous_commit)


def start_server_with(*, bindir: Path | None = None, durable: bool = False, synchronous_commit: bool = False,
                      shared_buffers: str = "128MB") -> PostgresServer:
    bindir = bindir or find_bindir()
    if bindir is None:
        raise RuntimeError(SKIP_REASON)
    server = PostgresServer(bindir, synchronous_commit=synchronous_commit)
    try:
        server.init()
        server.start(durable=durable, shared_buffers=shared_buffers)
        server.wait_ready()
    except BaseException:
        server.destroy()
        raise
    return server
