"""Who is looking at the console: server-side sessions, CSRF tokens, the shared login rate limit.

**Sessions** are rows of ``console_sessions``. The cookie carries a random session id (256 bits)
and the session's CSRF token, signed with HMAC-SHA256 (itsdangerous) under a key of the console's
own; the row, keyed by the SHA-256 of the id (a copy of the table opens no session), names the
operator and holds the CSRF token's digest, when the session began, when it was last used, the
client's address and user agent, and a fingerprint of the operator's password hash. Each request
checks them all against the clock and the ``operators`` row: a session is over after
``console_session_idle_minutes`` without a page view, after :data:`MAX_SESSION_HOURS` whatever
happens, as soon as its operator is disabled, or once the password changes. Logging out, disabling
the operator and a new password delete the rows (service/operators.py): a copy of the cookie taken
before is worth nothing after. Expired rows are deleted when met and at every login. Every worker
and node reads the same table, so any of them serves any session.

**The key** is 32 random bytes in ``<data_dir>/console.key`` (0600), made on first use. It signs
the cookies (a forged cookie is refused before any database read) and the short-lived OIDC
sign-in cookie (console/oidc.py). Several nodes behind one address need the same file.

**CSRF**: every form carries the session's token in a hidden field ``csrf_token``; a POST
without the right one is refused (403). The login form has one too, from a short anonymous
cookie set by the login page (no row: a stranger loading the login page writes nothing), so that
another site cannot log a browser in as someone else either. The cookies are ``SameSite=Lax``:
Strict would drop the cookie on the first page after following a link from elsewhere (a ticket,
a mail) and show the login page for nothing; Lax still keeps it off every cross-site POST (and
lets the OIDC provider's redirect back, a top-level GET, carry the sign-in cookie).

**Login rate limit** (``console_login_failures``, shared by every worker and node): 5 failures
for one name from one client address within 15 minutes refuse that pair until the oldest of
them is 15 minutes old, right password or not; :data:`ADDRESS_FAILURES_ALLOWED` failures from
one address whatever the names refuse that address the same way (password spraying: one guess
at each of many names). A success clears its pair, never the address's count (one account of
one's own must not reset a spray).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from identity_sync.service.operators import Operator
from identity_sync.storage import console_sessions as rows
from identity_sync.storage.db import Database

KEY_FILE = "console.key"
#: A session ends this long after the login, however active.
MAX_SESSION_HOURS = 12
#: How long the anonymous cookie of the login form lives (its CSRF token).
LOGIN_COOKIE_SECONDS = 3_600
FAILURES_ALLOWED = 5
#: Failures from one client address, whatever the names, before the address is refused.
ADDRESS_FAILURES_ALLOWED = 20
FAILURE_WINDOW_SECONDS = 15 * 60
CSRF_FIELD = "csrf_token"
#: A page view writes ``seen_at`` only if the last write is older than this: the idle timeout is
#: then exact to within these seconds, and a busy operator costs a write a minute, not one a page.
TOUCH_EVERY_SECONDS = 30


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
    """Binds a session to the password it was opened with, without storing the hash twice."""
    return hashlib.sha256(operator.password_hash.encode()).hexdigest()[:16]


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    operator_id: str | None  # None: the anonymous session of the login form
    csrf: str
    began: float
    seen: float
    fingerprint: str = ""
    sid: str = ""  # the random id the cookie carries (empty: anonymous, no row)


class Sessions:
    def __init__(self, key: bytes, idle_seconds: float, secure: bool, db: Database,
                 clock: Callable[[], float] = time.time) -> None:
        self.serializer = URLSafeSerializer(key, salt="identity-sync console session")
        self.idle_seconds = idle_seconds
        self.secure = secure
        self.db = db
        self.clock = clock
        # __Host-: the browser accepts it only Secure, for Path=/ and from this very host (no
        # sibling domain can set or shadow it). Over plain HTTP the prefix would be refused.
        self.cookie = "__Host-idsync-console" if secure else "idsync-console"

    def anonymous(self) -> Session:
        """The login form's session: a CSRF token in a cookie, nothing stored."""
        now = self.clock()
        return Session(None, secrets.token_urlsafe(32), now, now)

    def open(self, operator: Operator, client: str, user_agent: str, via: str) -> Session:
        """A new session of ``operator`` (a row), after clearing out every expired one."""
        now = self.clock()
        session = Session(operator.id, secrets.token_urlsafe(32), now, now, password_fingerprint(operator),
                          secrets.token_urlsafe(32))
        with self.db.write() as conn:
            rows.open_session(
                conn, ended_if_seen_before=now - self.idle_seconds,
                ended_if_created_before=now - MAX_SESSION_HOURS * 3_600,
                id=digest(session.sid), operator_id=operator.id, csrf_digest=digest(session.csrf),
                password_fingerprint=session.fingerprint, created_at=now, seen_at=now, client=client[:64],
                user_agent=user_agent[:200], via=via[:16])
        return session

    def read(self, cookies: dict[str, str]) -> Session | None:
        """The session of a request's cookie, if the signature holds, its row exists and it has not
        expired (an expired row is deleted). Reads the database: call it off the event loop."""
        raw = cookies.get(self.cookie)
        if not raw:
            return None
        try:
            data = self.serializer.loads(raw)
            csrf, sid = str(data["csrf"]), str(data.get("sid") or "")
            began = float(data.get("began", 0))
        except (BadSignature, KeyError, TypeError, ValueError, AttributeError):
            return None
        now = self.clock()
        if not sid:
            return Session(None, csrf, began, began) if 0 <= now - began <= LOGIN_COOKIE_SECONDS else None
        key = digest(sid)
        with self.db.read() as conn:
            row = rows.session_row(conn, key)
        if row is None or not hmac.compare_digest(row.csrf_digest, digest(csrf)):
            return None
        if now - row.seen_at > self.idle_seconds or now - row.created_at > MAX_SESSION_HOURS * 3_600:
            self.end_id(key)
            return None
        return Session(row.operator_id, csrf, row.created_at, row.seen_at, row.password_fingerprint, sid)

    def touched(self, session: Session) -> Session:
        """The session used now: its ``seen_at`` written (at most every few seconds)."""
        now = self.clock()
        if not session.sid or now - session.seen < TOUCH_EVERY_SECONDS:
            return session
        with self.db.write() as conn:
            rows.touch_session(conn, digest(session.sid), now)
        return replace(session, seen=now)

    def end(self, session: Session) -> None:
        if session.sid:
            self.end_id(digest(session.sid))

    def end_id(self, key: str) -> None:
        with self.db.write() as conn:
            rows.delete_session(conn, key)

    def valid_for(self, session: Session, operator: Operator | None) -> bool:
        return (operator is not None and not operator.disabled and operator.id == session.operator_id
                and hmac.compare_digest(session.fingerprint, password_fingerprint(operator)))

    def cookie_options(self, session: Session) -> dict[str, Any]:
        """What ``Response.set_cookie`` takes for this session (set once, at login: the row, not
        the cookie, knows when it was last used)."""
        value: dict[str, Any]
        if session.sid:
            value, max_age = {"sid": session.sid, "csrf": session.csrf}, MAX_SESSION_HOURS * 3_600
        else:
            value, max_age = {"csrf": session.csrf, "began": session.began}, LOGIN_COOKIE_SECONDS
        return {"key": self.cookie, "value": self.serializer.dumps(value), "max_age": max_age,
                "path": "/", "secure": self.secure, "httponly": True, "samesite": "lax"}

    def delete_options(self) -> dict[str, Any]:
        return {"key": self.cookie, "path": "/", "secure": self.secure, "httponly": True, "samesite": "lax"}


def csrf_ok(session: Session | None, submitted: object) -> bool:
    return (session is not None and isinstance(submitted, str) and bool(submitted)
            and hmac.compare_digest(session.csrf.encode(), submitted.encode()))


class LoginLimiter:
    """Failed logins per (name, client address) and per address, in the database (see the
    module's docstring). Each method is one short transaction: call them off the event loop."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock

    @staticmethod
    def _name(name: str) -> str:
        # A digest, not the name: what someone typed as a name may be a password.
        return digest(name.casefold())

    def retry_after(self, name: str, client: str) -> int:
        """Seconds until ``name`` may try again from ``client`` (0: now)."""
        now = self.clock()
        since = now - FAILURE_WINDOW_SECONDS
        with self.db.read() as conn:
            pair, address = rows.recent_failures(conn, client[:64], self._name(name), since, FAILURES_ALLOWED,
                                                 ADDRESS_FAILURES_ALLOWED)
        waits = [0.0]
        # Refused until the oldest of the last N failures leaves the window: then fewer than N are in it.
        if len(pair) >= FAILURES_ALLOWED:
            waits.append(pair[-1] + FAILURE_WINDOW_SECONDS - now)
        if len(address) >= ADDRESS_FAILURES_ALLOWED:
            waits.append(address[-1] + FAILURE_WINDOW_SECONDS - now)
        wait = max(waits)
        return int(wait) + 1 if wait > 0 else 0

    def failed(self, name: str, client: str) -> None:
        now = self.clock()
        with self.db.write() as conn:
            rows.record_failure(conn, self._name(name), client[:64], now, now - FAILURE_WINDOW_SECONDS)

    def succeeded(self, name: str, client: str) -> None:
        with self.db.write() as conn:  # the pair's failures stay, under no name: they count for the address
            rows.unname_failures(conn, self._name(name), client[:64])
