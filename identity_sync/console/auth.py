"""Who is looking at the console: sessions in signed cookies, CSRF tokens, the login rate limit.

**Sessions** live in the cookie itself, signed with HMAC-SHA256 (itsdangerous) under a key of
the console's own, so that every worker process (and every node given the same key file) accepts
any other's cookies without a session table. The payload names the operator, carries the CSRF
token, when the session began, when it was last used, and a fingerprint of the operator's
password hash. Each request checks them all against the clock and the ``operators`` row: a
session is over after ``console_session_idle_minutes`` without a page view, after
:data:`MAX_SESSION_HOURS` whatever happens, as soon as its operator is disabled, or once the
password changes. Logging out deletes the cookie; a copy of it taken before stays good until
one of those (there is no server-side list of sessions to strike it from).

**The key** is 32 random bytes in ``<data_dir>/console.key`` (0600), made on first use. Not the
signing-key passphrase: that one is optional, and a session key derived from it would change
when it is rotated; a key file of its own can be deleted to end every session at once. Several
nodes behind one address need the same file (like ``credentials.key``).

**CSRF**: every form carries the session's token in a hidden field ``csrf_token``; a POST
without the right one is refused (403). The login form has one too, from a short anonymous
session cookie set by the login page, so that another site cannot log a browser in as someone
else either. The cookies are ``SameSite=Lax`` on top: Strict would drop the cookie on the first
page after following a link from elsewhere (a ticket, a mail) and show the login page for
nothing; Lax still keeps it off every cross-site POST.

**Login rate limit**: 5 failures for one name from one client address within 15 minutes
refuse that pair for 15 minutes, right password or not. It is kept in memory, per process: a
service run with N workers allows up to N times as many guesses (argon2 keeps each one slow).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from identity_sync.service.operators import Operator

KEY_FILE = "console.key"
#: A session ends this long after the login, however active.
MAX_SESSION_HOURS = 12
#: How long the anonymous cookie of the login form lives (its CSRF token).
LOGIN_COOKIE_SECONDS = 3_600
FAILURES_ALLOWED = 5
FAILURE_WINDOW_SECONDS = 15 * 60
LOCKOUT_SECONDS = 15 * 60
CSRF_FIELD = "csrf_token"


def console_key(data_dir: Path) -> bytes:
    """The console's signing key, created (0600, with O_EXCL so that two processes starting at
    once keep one key) on first use."""
    from identity_sync.storage import files

    path = data_dir / KEY_FILE
    for _ in range(50):
        try:
            key = path.read_bytes()
        except FileNotFoundError:
            files.private_directory(data_dir)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue  # another process made it: read theirs
            key = os.urandom(32)
            with os.fdopen(fd, "wb") as handle:
                handle.write(key)
            return key
        if len(key) == 32:
            return key
        time.sleep(0.01)  # being written by the process that created it
    raise RuntimeError(f"{path} is not a console key (32 bytes): delete it to make a new one")


def password_fingerprint(operator: Operator) -> str:
    """Binds a session to the password it was opened with, without putting the hash in a cookie."""
    return hashlib.sha256(operator.password_hash.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Session:
    operator_id: str | None  # None: the anonymous session of the login form
    csrf: str
    began: float
    seen: float
    fingerprint: str = ""

    def as_payload(self) -> dict[str, Any]:
        return {"op": self.operator_id, "csrf": self.csrf, "began": self.began, "seen": self.seen,
                "pw": self.fingerprint}


class Sessions:
    def __init__(self, key: bytes, idle_seconds: float, secure: bool,
                 clock: Callable[[], float] = time.time) -> None:
        self.serializer = URLSafeSerializer(key, salt="identity-sync console session")
        self.idle_seconds = idle_seconds
        self.secure = secure
        self.clock = clock
        # __Host-: the browser accepts it only Secure, for Path=/ and from this very host (no
        # sibling domain can set or shadow it). Over plain HTTP the prefix would be refused.
        self.cookie = "__Host-idsync-console" if secure else "idsync-console"

    def new(self, operator: Operator | None) -> Session:
        now = self.clock()
        return Session(operator.id if operator else None, secrets.token_urlsafe(32), now, now,
                       password_fingerprint(operator) if operator else "")

    def touched(self, session: Session) -> Session:
        return Session(session.operator_id, session.csrf, session.began, self.clock(), session.fingerprint)

    def read(self, cookies: dict[str, str]) -> Session | None:
        """The session of a request's cookie, if the signature holds and it has not expired."""
        raw = cookies.get(self.cookie)
        if not raw:
            return None
        try:
            data = self.serializer.loads(raw)
            session = Session(data["op"], str(data["csrf"]), float(data["began"]), float(data["seen"]),
                              str(data.get("pw", "")))
        except (BadSignature, KeyError, TypeError, ValueError):
            return None
        now = self.clock()
        if session.operator_id is None:
            return session if now - session.began <= LOGIN_COOKIE_SECONDS else None
        if now - session.seen > self.idle_seconds or now - session.began > MAX_SESSION_HOURS * 3_600:
            return None
        return session

    def valid_for(self, session: Session, operator: Operator | None) -> bool:
        return (operator is not None and not operator.disabled and operator.id == session.operator_id
                and hmac.compare_digest(session.fingerprint, password_fingerprint(operator)))

    def cookie_options(self, session: Session) -> dict[str, Any]:
        """What ``Response.set_cookie`` takes for this session."""
        max_age = LOGIN_COOKIE_SECONDS if session.operator_id is None else MAX_SESSION_HOURS * 3_600
        return {"key": self.cookie, "value": self.serializer.dumps(session.as_payload()), "max_age": max_age,
                "path": "/", "secure": self.secure, "httponly": True, "samesite": "lax"}

    def delete_options(self) -> dict[str, Any]:
        return {"key": self.cookie, "path": "/", "secure": self.secure, "httponly": True, "samesite": "lax"}


def csrf_ok(session: Session | None, submitted: object) -> bool:
    return (session is not None and isinstance(submitted, str) and bool(submitted)
            and hmac.compare_digest(session.csrf.encode(), submitted.encode()))


class LoginLimiter:
    """Failed logins per (name, client address), in memory (see the module's docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._locked: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(name: str, client: str) -> tuple[str, str]:
        # A digest, not the name: what someone typed as a name may be a password.
        return hashlib.sha256(name.casefold().encode()).hexdigest(), client

    def retry_after(self, name: str, client: str) -> int:
        """Seconds until ``name`` may try again from ``client`` (0: now)."""
        key = self._key(name, client)
        with self._lock:
            until = self._locked.get(key)
            if until is None:
                return 0
            left = until - self.clock()
            if left <= 0:
                del self._locked[key]
                return 0
            return int(left) + 1

    def failed(self, name: str, client: str) -> None:
        key = self._key(name, client)
        now = self.clock()
        with self._lock:
            window = self._failures.setdefault(key, deque())
            window.append(now)
            while window and now - window[0] > FAILURE_WINDOW_SECONDS:
                window.popleft()
            if len(window) >= FAILURES_ALLOWED:
                self._locked[key] = now + LOCKOUT_SECONDS
                window.clear()
            self._forget_old(now)

    def succeeded(self, name: str, client: str) -> None:
        with self._lock:
            self._failures.pop(self._key(name, client), None)

    def _forget_old(self, now: float) -> None:
        # Bounded memory under a spray of names: windows with nothing recent go.
        if len(self._failures) > 10_000:
            for key in [k for k, w in self._failures.items() if not w or now - w[-1] > FAILURE_WINDOW_SECONDS]:
                del self._failures[key]
        if len(self._locked) > 10_000:
            for key in [k for k, until in self._locked.items() if until <= now]:
                del self._locked[key]
