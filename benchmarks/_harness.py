"""Shared set-up for the benchmarks: a throw-away SQLite DB, a tenant, and an
``identity-sync serve`` subprocess on a free loopback port that is always stopped.

Used by ``load_users.py`` (scimload) and ``wrk_users.sh`` (via ``python _harness.py``).
Loopback only; nothing outside the temporary directory is written unless asked.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CLI = REPO / ".venv" / "bin" / "identity-sync"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (peak) in KiB of one process, {} if it is gone."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0])
    return out


class ManagedProcess:
    """A server subprocess in its own process group: memory sampling, stopping, log tail.
    Subclasses set ``proc``, ``peak`` and ``log_path``."""

    proc: subprocess.Popen[bytes] | None
    peak: dict[str, int]
    log_path: Path

    def sample_memory(self) -> dict[str, int]:
        if self.proc is not None and self.proc.poll() is None:
            st = proc_status(self.proc.pid)
            if st:
                self.peak = st
        return self.peak

    def stop(self) -> None:
        """Stop the server (SIGINT, then SIGTERM, then SIGKILL to its own process group)."""
        p = self.proc
        if p is not None and p.poll() is None:
            self.sample_memory()
            for sig, wait in ((signal.SIGINT, 10), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, sig)  # the group we created with start_new_session
                try:
                    p.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue

    def stderr_tail(self, n: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""


class Server(ManagedProcess):
    """Context manager: temp data dir + DB, tenant, ``identity-sync serve`` subprocess."""

    def __init__(self, cli: str | os.PathLike[str] = DEFAULT_CLI, database_url: str | None = None,
                 keep: bool = False, tenant: str | None = None, start_timeout: float = 60.0,
                 log_level: str = "INFO", prepare: Callable[[Server], None] | None = None,
                 serve_args: tuple[str, ...] = ()) -> None:
        self.cli = str(cli)
        #: Extra arguments of ``identity-sync serve`` (e.g. ``("--workers", "2")``).
        self.serve_args = serve_args
        #: Called after the tenant exists and before the server starts (e.g. a bulk load into the DB).
        self.prepare = prepare
        self.keep = keep
        self.start_timeout = start_timeout
        self.dir = Path(tempfile.mkdtemp(prefix="idsync-bench-"))
        self.database_url = database_url or f"sqlite:///{self.dir / 'bench.db'}"
        self.tenant_name = tenant or f"bench{uuid.uuid4().hex[:8]}"
        self.env = {**os.environ, "IDSYNC_DATABASE_URL": self.database_url,
                    "IDSYNC_DATA_DIR": str(self.dir), "IDSYNC_LOG_LEVEL": log_level}
        self.env.pop("IDSYNC_PUBLIC_URL", None)
        # Benchmarks measure the server, not the per-tenant request limiter (100 req/s by default,
        # 429 beyond): off unless the caller's environment sets it. Older trees ignore the variable.
        self.env.setdefault("IDSYNC_RATE_LIMIT_PER_SECOND", "0")
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log_path = self.dir / "server.stderr.log"
        self.out_path = self.dir / "server.stdout.log"
        self.token = ""
        self.base_url = ""
        self.peak: dict[str, int] = {}

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> Server:
        try:
            self._create_tenant()
            if self.prepare is not None:
                self.prepare(self)
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _create_tenant(self) -> None:
        # Only `migrate` and `serve` create a database; on PostgreSQL a Tenant URL needs a public
        # URL (printed, not used here). Both work on older trees too.
        r = subprocess.run([self.cli, "migrate"], env=self.env, capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise RuntimeError(f"migrate failed ({r.returncode}): {r.stderr.strip()[-500:]}")
        r = subprocess.run([self.cli, "tenant", "create", self.tenant_name, "--json"],
                           env={**self.env, "IDSYNC_PUBLIC_URL": "http://127.0.0.1"}, capture_output=True, text=True,
                           timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"tenant create failed ({r.returncode}): {r.stderr.strip()[-500:]}")
        info = json.loads(r.stdout.strip().splitlines()[-1])
        self.token = info["token"]

    def _start(self) -> None:
        self.port = free_port()
        self._out = open(self.out_path, "wb")
        self._err = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [self.cli, "serve", "--host", "127.0.0.1", "--port", str(self.port), *self.serve_args],
            env=self.env, stdout=self._out, stderr=self._err, stdin=subprocess.DEVNULL,
            start_new_session=True)  # own process group: Ctrl-C goes to us, we stop it
        self.base_url = f"http://127.0.0.1:{self.port}/scim/v2/{self.tenant_name}"
        deadline = time.monotonic() + self.start_timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode} before answering; stderr tail:\n"
                                   + self.stderr_tail())
            try:
                req = urllib.request.Request(self.base_url + "/Users?count=1",
                                             headers={"Authorization": f"Bearer {self.token}"})
                with urllib.request.urlopen(req, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}"
            except OSError as e:
                last = type(e).__name__
            time.sleep(0.2)
        raise RuntimeError(f"server did not answer within {self.start_timeout}s (last: {last}); stderr tail:\n"
                           + self.stderr_tail())

    def close(self) -> None:
        self.stop()
        for f in (getattr(self, "_out", None), getattr(self, "_err", None)):
            if f is not None:
                f.close()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_summary(self, samples: int = 20) -> dict[str, object]:
        """Status codes of the server's access log and its non-request lines (warnings,
        errors, tracebacks), so 5xx and failures are visible without keeping the whole log."""
        codes: Counter[str] = Counter()
        events: Counter[str] = Counter()
        slow: list[dict[str, object]] = []
        other: list[str] = []
        with contextlib.suppress(OSError), open(self.log_path, errors="replace") as f:
            for line in f:
                line = line.rstrip("\n")
                try:
                    ev = json.loads(line)
                except ValueError:
                    if line.strip():
                        other.append(line[:400])
                    continue
                if not isinstance(ev, dict):
                    other.append(line[:400])
                    continue
                if ev.get("event") == "http.request":
                    codes[str(ev.get("status"))] += 1
                    if isinstance(ev.get("ms"), (int, float)) and ev["ms"] >= 1000:
                        slow.append({k: ev.get(k) for k in ("method", "path", "status", "ms", "timestamp")})
                    if isinstance(ev.get("status"), int) and ev["status"] >= 500:
                        other.append(line[:400])
                else:
                    events[f"{ev.get('level')}:{ev.get('event')}"] += 1
                    if ev.get("level") not in ("info", "debug"):
                        other.append(line[:1500])
        return {"access_log_status_codes": dict(codes), "log_events": dict(events),
                "requests_over_1s": len(slow), "slowest": sorted(slow, key=lambda d: -d["ms"])[:5],
                "error_lines_sample": other[:samples], "error_lines_total": len(other),
                "exit_code": None if self.proc is None else self.proc.returncode}


def _shell_main() -> None:
    """For wrk_users.sh: start the server, print ``BASE_URL TOKEN PID`` on one line, and
    stop it when stdin closes (or on SIGINT/SIGTERM); then print the log summary JSON to fd 3
    if given via $HARNESS_SUMMARY."""
    import threading

    srv = Server(keep="--keep" in sys.argv)
    stop = threading.Event()
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, lambda *_: stop.set())
    with srv:
        print(srv.base_url, srv.token, srv.proc.pid if srv.proc else 0, flush=True)

        def wait_stdin() -> None:
            sys.stdin.read()
            stop.set()
        threading.Thread(target=wait_stdin, daemon=True).start()
        while not stop.wait(0.5):
            srv.sample_memory()
        mem = srv.sample_memory()
        summary_path = os.environ.get("HARNESS_SUMMARY")
        srv.stop()
        if summary_path:
            Path(summary_path).write_text(json.dumps({"rss_kib_end": mem.get("VmRSS"), "rss_peak_kib": mem.get("VmHWM"),
                                                      **srv.log_summary()}, indent=1))


if __name__ == "__main__":
    _shell_main()
