"""Failure e-mail (provisioning-engine.md §4.3 and §4.8): a job's notification address hears once
when the job enters quarantine, again when the reason changes, and when the deletion guard trips —
once per event, not once per cycle.

Two steps, so that e-mail can never stop or undo a cycle:

* :meth:`Notifier.enqueue` writes the message to the outbox (``engine_notifications``), in the
  transaction that records the event if the caller passes its connection. The outbox row's
  ``(job_id, dedupe_key)`` is unique: the same event reported by ten cycles is one message.
* :meth:`Notifier.deliver` sends what is due over SMTP and never raises. A failed send is logged
  (one line: no password, no body) and tried again after 1, 5, 15 and 60 minutes, then hourly; a
  message not sent within 24 hours of its event is given up on, and that is logged too.

Several processes may deliver at once (a scheduler on each node): each message is claimed before it
is sent, by moving its ``next_attempt_at`` forward only if it still holds the value just read, so
one process sends it. A process that dies after sending and before recording it sends it again
when the claim expires: at least once, never lost.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any, Protocol

import sqlalchemy as sa
import structlog
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from identity_sync.clock import format_timestamp, parse_timestamp
from identity_sync.config import Settings
from identity_sync.engine.notify_messages import KINDS, Notice, compose
from identity_sync.engine.tables import engine_notifications
from identity_sync.ids import new_id
from identity_sync.storage.db import Database

__all__ = ["BACKOFF", "GIVE_UP_AFTER", "KINDS", "DeliveryReport", "Notice", "Notifier", "OutboxEntry",
           "QuarantineLike", "notice_for"]

#: The wait after the 1st, 2nd, 3rd failed attempt…; the last one repeats (hourly).
BACKOFF = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15), timedelta(hours=1))
#: A message not sent this long after its event is given up on: the job's state (``job show``)
#: tells the rest, and a day-old alert sent at last would mislead more than inform.
GIVE_UP_AFTER = timedelta(hours=24)
#: The most messages one :meth:`Notifier.deliver` looks at; the rest wait for the next call.
_BATCH = 100
_NO_DOMAIN = "identity-sync.invalid"


@dataclass(frozen=True)
class DeliveryReport:
    """What one :meth:`Notifier.deliver` did."""

    #: Messages the SMTP server accepted.
    sent: int = 0
    #: Messages whose send failed this time and will be tried again.
    failed: int = 0
    #: Messages still in the outbox afterwards (not due yet, or e-mail is not configured).
    waiting: int = 0
    #: Messages given up on this time (24 hours of failures).
    gave_up: int = 0


@dataclass(frozen=True)
class OutboxEntry:
    """One message of a job's outbox, for ``job show`` (never the bodies)."""

    id: str
    dedupe_key: str
    recipient: str
    subject: str
    created_at: str
    attempts: int
    next_attempt_at: str | None
    sent_at: str | None
    last_error: str | None

    @property
    def status(self) -> str:
        if self.sent_at is not None:
            return "sent"
        return "waiting" if self.next_attempt_at is not None else "given-up"


class QuarantineLike(Protocol):
    """What :func:`notice_for` reads of a job's quarantine (Graph's ``synchronizationQuarantine``);
    read-only properties, so that a frozen dataclass fits."""

    @property
    def reason(self) -> str: ...
    @property
    def since(self) -> str:  # when this series of quarantine began
        ...
    @property
    def current_began(self) -> str:  # when the current reason began
        ...
    @property
    def next_attempt(self) -> str: ...
    @property
    def error(self) -> str | None: ...


def notice_for(job_name: str, before: QuarantineLike | None, after: QuarantineLike | None,
               counts: dict[str, int] | None = None) -> Notice | None:
    """The e-mail a cycle's end calls for, from the job's quarantine before and after it: entering
    quarantine (``deletion_guard`` when the reason is ``TooManyDeletes``), or a new reason; else
    ``None`` — a quarantine that goes on for the same reason was mailed already, and leaving it is
    not a failure (Entra mails failures only). The dedupe key of a new series is its start, of a
    new reason the time that reason began: each is mailed once, however many cycles report it."""
    if after is None or (before is not None and before.reason == after.reason):
        return None
    if before is None:
        kind = "deletion_guard" if after.reason == "TooManyDeletes" else "quarantined"
        since = after.since
    else:
        kind, since = "reason_changed", after.current_began
    return Notice(job_name=job_name, kind=kind, reason=after.reason, detail=after.error or "",
                  counts=dict(counts or {}), since=since, next_attempt=after.next_attempt)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _log() -> Any:
    # Looked up at each use (these events are rare): a logger cached at import would keep the
    # logging configuration of that moment, and miss a later ``logs.configure`` or a test's capture.
    return structlog.get_logger("identity_sync.notify")


class Notifier:
    """The outbox of failure e-mails and its delivery over SMTP (``IDSYNC_SMTP_*``)."""

    def __init__(self, db: Database, settings: Settings, clock: Callable[[], datetime] = _utcnow) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self._said_not_configured = False
        self._pruned_at: datetime | None = None

    # -- the outbox -----------------------------------------------------------------------------

    def enqueue(self, conn: Connection | None, job_id: str, recipient: str | None, notice: Notice,
                dedupe_key: str | None = None) -> bool:
        """Queue the e-mail about ``notice`` for ``recipient``; ``False`` when nothing was queued:
        no recipient (the job has no notification address), or this event (``dedupe_key``,
        by default :attr:`Notice.dedupe_key`) was queued for the job before.

        With ``conn``, the row is written in the caller's transaction — committed with the event,
        or not at all. ``ON CONFLICT DO NOTHING`` rather than catching a duplicate-key error: on
        PostgreSQL an error would abort the caller's whole transaction."""
        if not recipient:
            return False
        message = compose(notice)
        now = format_timestamp(self.clock())
        row = {"id": new_id(), "job_id": job_id, "dedupe_key": (dedupe_key or notice.dedupe_key)[:255],
               "recipient": recipient, "subject": message.subject, "text_body": message.text,
               "html_body": message.html, "created_at": now, "attempts": 0, "next_attempt_at": now}
        if conn is not None:
            return self._insert(conn, row)
        with self.db.write() as own:
            return self._insert(own, row)

    @staticmethod
    def _insert(conn: Connection, row: dict[str, Any]) -> bool:
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        # RETURNING rather than rowcount, which the PostgreSQL driver leaves at -1 here.
        statement = insert(engine_notifications).values(**row).on_conflict_do_nothing(
            index_elements=["job_id", "dedupe_key"]).returning(engine_notifications.c.id)
        return conn.execute(statement).first() is not None

    def messages(self, job_id: str, limit: int = 20) -> list[OutboxEntry]:
        """The job's latest messages, newest first."""
        t = engine_notifications.c
        query = (sa.select(t.id, t.dedupe_key, t.recipient, t.subject, t.created_at, t.attempts, t.next_attempt_at,
                           t.sent_at, t.last_error)
                 .where(t.job_id == job_id).order_by(t.created_at.desc(), t.id.desc()).limit(limit))
        with self.db.read() as conn:
            return [OutboxEntry(*row) for row in conn.execute(query)]

    # -- delivery -------------------------------------------------------------------------------

    def deliver(self, now: datetime | None = None) -> DeliveryReport:
        """Send every due message. Never raises: whatever fails is logged and tried again later."""
        moment = now or self.clock()
        try:
            report = self._deliver(moment)
            self._prune(moment)
            return report
        except Exception as exc:  # the database, most likely; e-mail must never stop a caller
            _log().error("notify.deliver_failed", error=_one_line(f"{type(exc).__name__}: {exc}"))
            return DeliveryReport()

    def _deliver(self, now: datetime) -> DeliveryReport:
        if not self.settings.smtp_host:
            gave_up = self._expire(now)
            waiting = self._waiting()
            if waiting and not self._said_not_configured:
                self._said_not_configured = True
                _log().warning("notify.not_configured", waiting=waiting,
                               hint="set IDSYNC_SMTP_HOST and IDSYNC_SMTP_FROM to send failure e-mail")
            return DeliveryReport(waiting=waiting, gave_up=gave_up)
        due = self._due(now)
        sent = failed = gave_up = 0
        session = _Session(self)
        try:
            for row in due:
                claim = self._claim(row, now)
                if claim is None:
                    continue  # another process took it
                error = self._attempt(row, session)
                if error is None:
                    self._record_sent(row, claim, now)
                    sent += 1
                elif self._record_failure(row, claim, now, error):
                    failed += 1
                else:
                    gave_up += 1
        finally:
            session.close()
        return DeliveryReport(sent=sent, failed=failed, waiting=self._waiting(), gave_up=gave_up)

    def _attempt(self, row: Any, session: _Session) -> str | None:
        """Send one message: ``None``, or why it did not go."""
        try:
            email = self._email(row)
        except Exception as exc:  # a stored address or header the e-mail package refuses
            return _one_line(f"cannot build the message: {exc}")
        return session.send(email, self._sender(), row.recipient)

    def _expire(self, now: datetime) -> int:
        """Without an SMTP server, give up on messages older than :data:`GIVE_UP_AFTER`, as on
        messages that failed that long: configured weeks later, e-mail starts with what is news."""
        t = engine_notifications.c
        error = "e-mail is not configured (IDSYNC_SMTP_HOST)"
        with self.db.write() as conn:
            expired = conn.execute(sa.update(engine_notifications).where(
                t.sent_at.is_(None), t.next_attempt_at.is_not(None),
                t.created_at <= format_timestamp(now - GIVE_UP_AFTER)).values(
                next_attempt_at=None, last_error=error)).rowcount or 0
        if expired:
            _log().error("notify.gave_up", count=expired, error=error)
        return expired

    def _due(self, now: datetime) -> list[Any]:
        t = engine_notifications.c
        query = (sa.select(t.id, t.job_id, t.recipient, t.subject, t.text_body, t.html_body, t.created_at,
                           t.attempts, t.next_attempt_at)
                 .where(t.sent_at.is_(None), t.next_attempt_at <= format_timestamp(now))
                 .order_by(t.created_at, t.id).limit(_BATCH))  # in the order the events happened
        with self.db.read() as conn:
            return list(conn.execute(query))

    def _waiting(self) -> int:
        t = engine_notifications.c
        query = sa.select(sa.func.count()).where(t.sent_at.is_(None), t.next_attempt_at.is_not(None))
        with self.db.read() as conn:
            return int(conn.execute(query).scalar_one())

    def _claim(self, row: Any, now: datetime) -> str | None:
        """Take the message for this process until it could not still be sending it (each of the
        few SMTP steps is bounded by the timeout); ``None`` if another process was faster."""
        until = format_timestamp(now + timedelta(seconds=max(60.0, 8 * self.settings.smtp_timeout_seconds)))
        return until if self._update(row.id, row.next_attempt_at, next_attempt_at=until) else None

    def _record_sent(self, row: Any, claim: str, now: datetime) -> None:
        self._update(row.id, claim, sent_at=format_timestamp(now), next_attempt_at=None, attempts=row.attempts + 1)
        _log().info("notify.sent", notification=row.id, job_id=row.job_id, recipient=row.recipient,
                    attempts=row.attempts + 1)

    def _record_failure(self, row: Any, claim: str, now: datetime, error: str) -> bool:
        """Schedule the next attempt (``True``), or give up after :data:`GIVE_UP_AFTER` (``False``)."""
        attempts = row.attempts + 1
        deadline = parse_timestamp(row.created_at) + GIVE_UP_AFTER
        if now >= deadline:
            self._update(row.id, claim, attempts=attempts, next_attempt_at=None, last_error=error)
            _log().error("notify.gave_up", notification=row.id, job_id=row.job_id, recipient=row.recipient,
                         attempts=attempts, error=error)
            return False
        # The last attempt falls on the deadline itself rather than an hour past it.
        after = min(now + BACKOFF[min(attempts, len(BACKOFF)) - 1], deadline)
        self._update(row.id, claim, attempts=attempts, next_attempt_at=format_timestamp(after), last_error=error)
        _log().warning("notify.send_failed", notification=row.id, job_id=row.job_id, recipient=row.recipient,
                       attempts=attempts, error=error, next_attempt_at=format_timestamp(after))
        return True

    def _update(self, notification_id: str, expected_next: str, **values: Any) -> bool:
        """Change a message only if it is still unsent and as this process last saw it."""
        t = engine_notifications.c
        with self.db.write() as conn:
            result = conn.execute(sa.update(engine_notifications).where(
                t.id == notification_id, t.sent_at.is_(None), t.next_attempt_at == expected_next).values(**values))
            return result.rowcount == 1

    def _prune(self, now: datetime) -> None:
        """Forget messages sent or given up on longer ago than provisioning logs are kept; at most
        hourly, since deliver runs often and the outbox changes rarely."""
        days = self.settings.engine_log_retention_days
        if days <= 0 or (self._pruned_at is not None and now - self._pruned_at < timedelta(hours=1)):
            return
        self._pruned_at = now
        t = engine_notifications.c
        with self.db.write() as conn:
            conn.execute(sa.delete(engine_notifications).where(
                t.created_at < format_timestamp(now - timedelta(days=days)),
                sa.or_(t.sent_at.is_not(None), t.next_attempt_at.is_(None))))

    # -- SMTP -----------------------------------------------------------------------------------

    def _sender(self) -> str:
        return parseaddr(self.settings.smtp_from or "")[1]

    def _email(self, row: Any) -> EmailMessage:
        email = EmailMessage()
        email["Subject"] = row.subject
        email["From"] = self.settings.smtp_from
        email["To"] = row.recipient
        # The event's time: a message held up by an outage still sorts where the event happened.
        email["Date"] = format_datetime(parse_timestamp(row.created_at))
        # Stable across retries, so a message the server took twice (a lost reply) shows as one.
        email["Message-ID"] = f"<{row.id}@{self._sender().rpartition('@')[2] or _NO_DOMAIN}>"
        email["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to it
        email.set_content(row.text_body)
        email.add_alternative(row.html_body, subtype="html")
        return email

    def _open(self, password: str | None) -> smtplib.SMTP:
        """A session ready to send: connected, encrypted as configured, logged in."""
        s = self.settings
        assert s.smtp_host is not None
        # Verifies the certificate and the host name, against the system's CAs or IDSYNC_SMTP_CA_FILE.
        context = ssl.create_default_context(cafile=str(s.smtp_ca_file) if s.smtp_ca_file else None)
        session: smtplib.SMTP
        if s.smtp_security == "tls":
            session = smtplib.SMTP_SSL(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds, context=context)
        else:
            session = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds)
        try:
            session.ehlo()
            if s.smtp_security == "starttls":
                # Raises when the server does not offer STARTTLS: never a fallback to clear text.
                session.starttls(context=context)
                session.ehlo()
            if s.smtp_username:
                session.login(s.smtp_username, password or "")
        except BaseException:
            _close(session)
            raise
        return session

    def _describe(self, exc: BaseException, password: str | None) -> str:
        """One line about a failed send, for the log and ``last_error``: never the password."""
        s = self.settings
        # smtplib reports a reply that never came as "disconnected", the timeout as its context.
        if isinstance(exc, _PasswordUnreadable):
            return str(exc)
        if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
            text = f"no answer from {s.smtp_host}:{s.smtp_port} within {s.smtp_timeout_seconds:g} s"
        elif isinstance(exc, smtplib.SMTPAuthenticationError):
            text = f"login refused: {exc.smtp_code} {_decode(exc.smtp_error)}"
        elif isinstance(exc, smtplib.SMTPRecipientsRefused):
            text = "recipient refused: " + "; ".join(f"{code} {_decode(reply)}"
                                                     for code, reply in exc.recipients.values())
        elif isinstance(exc, smtplib.SMTPResponseException):
            text = f"{type(exc).__name__}: {exc.smtp_code} {_decode(exc.smtp_error)}"
        elif isinstance(exc, smtplib.SMTPNotSupportedError) and s.smtp_security == "starttls":
            text = "the server does not offer STARTTLS (IDSYNC_SMTP_SECURITY=starttls)"
        elif isinstance(exc, smtplib.SMTPException):
            text = f"{type(exc).__name__}: {exc}"
        elif isinstance(exc, ssl.SSLCertVerificationError):
            text = f"TLS: the server's certificate is not trusted: {exc.verify_message}"
        elif isinstance(exc, ssl.SSLError):
            text = f"TLS: {exc.reason or exc}"
        elif isinstance(exc, OSError):
            text = f"cannot reach {s.smtp_host}:{s.smtp_port}: {exc.strerror or exc}"
        else:
            text = f"{type(exc).__name__}: {exc}"
        if password:
            # A server's reply could echo what it was sent; the password must not travel on.
            text = text.replace(password, "[redacted]")
        return _one_line(text)


class _Session:
    """The SMTP session of one :meth:`Notifier.deliver`: opened for the first message, and given
    up at the first failure of the server itself (unreachable, TLS, login, timeout) — the other
    messages then fail alike without trying, rather than each waiting for its own timeout."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self.smtp: smtplib.SMTP | None = None
        self.broken: str | None = None
        self.password: str | None = None

    def send(self, email: EmailMessage, sender: str, recipient: str) -> str | None:
        if self.broken is not None:
            return self.broken
        try:
            if self.smtp is None:
                self.password = self._read_password()
                self.smtp = self.notifier._open(self.password)
            self.smtp.send_message(email, from_addr=sender, to_addrs=[recipient])
            return None
        except Exception as exc:
            error = self.notifier._describe(exc, self.password)
            if not isinstance(exc, _ONE_MESSAGE_ERRORS):
                self.close()
                self.broken = error
            return error

    def _read_password(self) -> str | None:
        try:
            return self.notifier.settings.resolved_smtp_password()
        except OSError as exc:  # told apart from the server's failures, which are OSErrors too
            raise _PasswordUnreadable(f"IDSYNC_SMTP_PASSWORD_FILE cannot be read: {exc.strerror}") from None

    def close(self) -> None:
        _close(self.smtp)
        self.smtp = None


class _PasswordUnreadable(Exception):
    """The password file could not be read: no message can go until it can."""


#: Failures of one message that leave the session usable for the next one.
_ONE_MESSAGE_ERRORS = (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError)


def _close(session: smtplib.SMTP | None) -> None:
    """Say goodbye if the server still listens; a failure here changes nothing."""
    if session is None:
        return
    try:
        session.quit()
    except Exception:
        session.close()


def _decode(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"
