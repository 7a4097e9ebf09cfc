"""Failure e-mail (engine/notify.py): what a job's notification address receives, from a real SMTP
server on loopback (tests/smtp.py) — once per event, whatever the server's security; a failed send
is logged without the password, retried on schedule, and never raised to the caller. The tests
that use the outbox run on SQLite and on PostgreSQL."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pydantic
import pytest
import sqlalchemy as sa
import structlog

from identity_sync.clock import format_timestamp, parse_timestamp
from identity_sync.config import Settings
from identity_sync.engine.jobs import Credentials, JobService
from identity_sync.engine.notify import DeliveryReport, Notice, Notifier, notice_for
from identity_sync.engine.notify_messages import compose
from identity_sync.engine.tables import engine_notifications
from identity_sync.storage.db import Database
from tests.engine.clock import Clock
from tests.smtp import HOST, Certificates, free_port, make_certificates, smtp_server

SENDER = "identity-sync <idsync@example.test>"
OPS = "ops@example.test"
PASSWORD = "s3cret-Pa55-never-logged"
T0 = datetime(2026, 12, 5, 20, 0, tzinfo=UTC)

TOO_MANY_DELETES = Notice(job_name="hr", kind="quarantined", reason="TooManyDeletes",
                          detail="612 deletions and disables, over the threshold of 500",
                          counts={"would_delete": 612, "threshold": 500}, since=format_timestamp(T0),
                          next_attempt=format_timestamp(T0 + timedelta(hours=6)))


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def job_id(db: Database, settings: Settings, tmp_path: Path) -> str:
    jobs = JobService(db, settings)
    return jobs.create("hr", source=f"csv:{tmp_path}", target_url="https://scim.example.test/scim",
                       credentials=Credentials(token="target-token"), notify=OPS).id


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("smtp-certificates"))


def mail_settings(settings: Settings, port: int, **smtp: Any) -> Settings:
    """The suite's settings with an SMTP server (validated as an operator's environment would be)."""
    values = {"smtp_security": "none", "smtp_from": SENDER, "smtp_timeout_seconds": 5.0, **smtp}
    return Settings(**settings.model_dump(exclude_defaults=True), smtp_host=HOST, smtp_port=port, **values)


def outbox(db: Database) -> list[Any]:
    with db.read() as conn:
        return list(conn.execute(sa.select(engine_notifications).order_by(engine_notifications.c.created_at)))


def parts(message: EmailMessage) -> tuple[str, str]:
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


# -- what arrives --------------------------------------------------------------------------------


def test_a_quarantine_arrives_once_with_a_text_and_an_html_part(
        db: Database, settings: Settings, job_id: str, clock: Clock) -> None:
    with smtp_server() as server:
        notifier = Notifier(db, mail_settings(settings, server.port), clock)
        assert notifier.enqueue(None, job_id, OPS, TOO_MANY_DELETES) is True
        assert notifier.deliver() == DeliveryReport(sent=1)
        assert notifier.deliver() == DeliveryReport()  # sent is sent: nothing goes twice

    [received] = server.messages
    assert received.mail_from == "idsync@example.test" and received.rcpt_tos == [OPS]
    message = received.message
    assert message["Subject"] == "[identity-sync] Job 'hr' is in quarantine: TooManyDeletes"
    assert message["From"] == SENDER and message["To"] == OPS
    assert message["Message-ID"].endswith("@example.test>") and message["Auto-Submitted"] == "auto-generated"
    assert message["Date"].datetime == T0  # the event's time
    assert message.get_content_type() == "multipart/alternative"
    text, html = parts(message)
    for body in (text, html):
        assert "TooManyDeletes" in body and "612" in body and "500" in body
        assert format_timestamp(T0) in body and format_timestamp(T0 + timedelta(hours=6)) in body
        assert "identity-sync job show hr" in body
        assert "identity-sync job logs hr --status failure" in body
        assert "identity-sync job restart hr --reset force-deletes" in body  # let the deletions through
        assert "deletion threshold" in body
    [row] = outbox(db)
    assert row.sent_at == format_timestamp(T0) and row.attempts == 1 and row.next_attempt_at is None


def test_every_value_is_escaped_in_the_html_part(
        db: Database, settings: Settings, job_id: str, clock: Clock) -> None:
    notice = Notice(job_name="<b>hr</b>", kind="quarantined", reason="EncounteredQuarantineException",
                    detail='401 from the target: <script>alert("x")</script>', since=format_timestamp(T0))
    with smtp_server() as server:
        notifier = Notifier(db, mail_settings(settings, server.port), clock)
        notifier.enqueue(None, job_id, OPS, notice)
        assert notifier.deliver().sent == 1

    [received] = server.messages
    assert received.message["Subject"] == "[identity-sync] Job '<b>hr</b>' is in quarantine: " \
                                          "EncounteredQuarantineException"
    text, html = parts(received.message)
    assert "<b>hr</b>" in text and "<script>" in text  # the text part shows them as they are
    assert "<b>" not in html and "<script>" not in html
    assert "&lt;b&gt;hr&lt;/b&gt;" in html and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    # The name is quoted for a shell in the commands, then escaped for HTML.
    assert "identity-sync job show '<b>hr</b>'" in text
    assert "identity-sync job show &#x27;&lt;b&gt;hr&lt;/b&gt;&#x27;" in html


def test_each_kind_of_event_says_what_happened_and_what_to_do() -> None:
    changed = compose(Notice("hr", "reason_changed", "EncounteredEscrowProportionThreshold", since="s"))
    assert changed.subject == ("[identity-sync] Job 'hr' is still in quarantine, now for: "
                               "EncounteredEscrowProportionThreshold")
    assert "more than 40%" in changed.html and "identity-sync job restart hr\n" in changed.text

    guard = compose(Notice("hr", "deletion_guard", "TooManyDeletes", counts={"would_delete": 3, "threshold": 2}))
    assert guard.subject == "[identity-sync] Job 'hr' held back its deletions: TooManyDeletes"
    assert "deletions and disables held back: 3" in guard.text and "deletion threshold: 2" in guard.text

    recovered = compose(Notice("hr", "recovered", "TooManyDeletes"))
    assert recovered.subject == "[identity-sync] Job 'hr' left quarantine"
    assert "What to do" not in recovered.text  # nothing left to do

    unknown = compose(Notice("hr", "quarantined", "SomethingNew", detail="line one\nSubject: injected"))
    assert "does not describe" in unknown.html
    assert "Detail: line one Subject: injected" in unknown.text  # one line: no header can be smuggled in
    with pytest.raises(ValueError, match="notice kind"):
        Notice("hr", "exploded", "Unknown")


@dataclass(frozen=True)
class Quarantine:
    """A job's quarantine as the engine keeps it (engine/quarantine.py)."""

    reason: str
    since: str
    current_began: str
    next_attempt: str
    error: str | None = None


def test_a_cycles_end_calls_for_an_e_mail_when_quarantine_begins_or_its_reason_changes() -> None:
    six, twelve = format_timestamp(T0 + timedelta(hours=6)), format_timestamp(T0 + timedelta(hours=12))
    began = Quarantine("EncounteredQuarantineException", format_timestamp(T0), format_timestamp(T0), six,
                       "the target answered 401")
    entered = notice_for("hr", None, began)
    assert entered == Notice("hr", "quarantined", "EncounteredQuarantineException", "the target answered 401",
                             {}, format_timestamp(T0), six)

    retried = Quarantine(began.reason, began.since, began.current_began, twelve, "the target answered 401")
    assert notice_for("hr", began, retried) is None  # the same event: mailed already
    assert notice_for("hr", began, None) is None  # out of quarantine: not a failure

    changed = Quarantine("EncounteredEscrowProportionThreshold", began.since, six, twelve, "6000 of 9000 failed")
    notice = notice_for("hr", retried, changed, {"failed": 6000})
    assert notice is not None and (notice.kind, notice.since, notice.counts) == ("reason_changed", six,
                                                                                   {"failed": 6000})
    assert notice.dedupe_key != entered.dedupe_key

    guard = Quarantine("TooManyDeletes", six, six, twelve, "612 removals, threshold 500")
    assert notice_for("hr", None, guard, {"would_delete": 612, "threshold": 500}) == Notice(
        "hr", "deletion_guard", "TooManyDeletes", "612 removals, threshold 500",
        {"would_delete": 612, "threshold": 500}, six, twelve)


# -- once per event ----------------------------------------------------------------------------


def test_an_event_is_mailed_once_however_many_cycles_report_it_and_again_when_the_reason_changes(
        db: Database, settings: Settings, job_id: str, clock: Clock) -> None:
    with smtp_server() as server:
        notifier = Notifier(db, mail_settings(settings, server.port), clock)
        # Three cycles of the same quarantine series report the same event.
        assert [notifier.enqueue(None, job_id, OPS, TOO_MANY_DELETES) for _ in range(3)] == [True, False, False]
        assert notifier.deliver().sent == 1
        assert notifier.enqueue(None, job_id, OPS, TOO_MANY_DELETES) is False  # sent already: still the same event

        clock.advance(hours=6)
        changed = Notice("hr", "reason_changed", "EncounteredEscrowProportionThreshold", since=format_timestamp(T0))
        assert notifier.enqueue(None, job_id, OPS, changed) is True
        assert notifier.enqueue(None, job_id, OPS, changed) is False
        # A new series (the job recovered, then was quarantined again) is a new event.
        later = Notice("hr", "quarantined", "TooManyDeletes", since=format_timestamp(T0 + timedelta(days=2)))
        assert notifier.enqueue(None, job_id, OPS, later) is True
        clock.advance(seconds=1)
        # The caller may name the event itself.
        assert notifier.enqueue(None, job_id, OPS, later, dedupe_key="guard:cycle-7") is True
        assert notifier.enqueue(None, job_id, OPS, TOO_MANY_DELETES, dedupe_key="guard:cycle-7") is False
        assert notifier.deliver().sent == 3

    subjects = [received.message["Subject"] for received in server.messages]
    assert subjects == ["[identity-sync] Job 'hr' is in quarantine: TooManyDeletes",
                        "[identity-sync] Job 'hr' is still in quarantine, now for: "
                        "EncounteredEscrowProportionThreshold",
                        "[identity-sync] Job 'hr' is in quarantine: TooManyDeletes",
                        "[identity-sync] Job 'hr' is in quarantine: TooManyDeletes"]


def test_a_job_without_a_notification_address_queues_nothing(
        db: Database, settings: Settings, job_id: str, clock: Clock) -> None:
    notifier = Notifier(db, settings, clock)
    assert notifier.enqueue(None, job_id, None, TOO_MANY_DELETES) is False
    assert notifier.enqueue(None, job_id, "", TOO_MANY_DELETES) is False
    assert outbox(db) == []


def test_the_message_is_queued_in_the_callers_transaction(
        db: Database, settings: Settings, job_id: str, clock: Clock) -> None:
    notifier = Notifier(db, settings, clock)
    with pytest.raises(RuntimeError), db.write() as conn:
        assert notifier.enqueue(conn, job_id, OPS, TOO_MANY_DELETES) is True
        raise RuntimeError("the cycle failed before recording the quarantine")
    assert outbox(db) == []  # rolled back with the event

    with db.write() as conn:
        assert notifier.enqueue(conn, job_id, OPS, TOO_MANY_DELETES) is True
        assert notifier.enqueue(conn, job_id, OPS, TOO_MANY_DELETES) is False
        # The duplicate did not abort the transaction (PostgreSQL would, after an error).
        conn.execute(sa.update(engine_notifications).values(recipient=OPS))
    assert len(outbox(db)) == 1


def test_a_deleted_job_takes_its_messages_along(db: Database, settings: Settings, job_id: str, clock: Clock) -> None:
    notifier = Notifier(db, settings, clock)
    notifier.enqueue(None, job_id, OPS, TOO_MANY_DELETES)
    [entry] = notifier.messages(job_id)
    assert entry.status == "waiting" and entry.recipient == OPS and entry.attempts == 0
    JobService(db, settings).delete("hr")
    assert outbox(db) == []


# -- TLS and authentication ------------------------------------------------------------------------


def test_starttls_verifies_the_servers_certificate_against_the_configured_ca(
        db: Database, settings: Settings, job_id: str, clock: Clock, certificates: Certificates) -> None:
    with smtp_server("starttls", certificates=certificates) as server:
        untrusting = Notifier(db, mail_settings(settings, server.port, smtp_security="starttls"), clock)
        untrusting.enqueue(None, job_id, OPS, TOO_MANY_DELETES)
        with structlog.testing.capture_logs() as logs:
            assert untrusting.deliver() == DeliveryReport(failed=1, waiting=1)
        assert server.messages == []
        assert "certificate is not trusted" in logs[0]["error"]

        clock.advance(minutes=1)
        trusting = Notifier(db, mail_settings(settings, server.port, smtp_security="starttls",
                                              smtp_ca_file=certificates.ca_file), clock)
        assert trusting.deliver() == DeliveryReport(sent=1)
    [received] = server.messages
    assert received.encrypted


def test_starttls_never_falls_back_to_clear_text(
        db: Database, settings: Settings, job_id: str, clock: Clock, certificates: Certificates) -> None:
    with smtp_server("none") as server:  # offers no STARTTLS
        notifier = Notifier(db, mail_settings(settings, server.port, smtp_security="starttls",
                                              smtp_ca_file=certificates.ca_file), clock)
        notifier.enqueue(None, job_id, OPS, TOO_MANY_DELETES)
        assert notifier.deliver() == DeliveryReport(failed=1, waiting=1)
    assert server.messages == []
    assert "does not offer STARTTLS" in outbox(db)[0].last_error


def test_implicit_tls(db: Database, settings: Settings, job_id: str, clock: Clock,
                      certificates: Certificates) -> None:
    with smtp_server("tls", certificates=certificates) as server:
        notifier = Notifier(db, mail_settings(settings, server.port, smtp_security="tls",
                                              smtp_ca_file=certificates.ca_file), clock)
        notifier.enqueue(None, job_id, OPS, TOO_MANY_DELETES)
        assert notifier.deliver() == DeliveryReport(sent=1)
    [received] = server.messages
    assert received.encrypted and received.message["Subject"].startswith("[identity-sync] Job 'hr'")


def test_a_refused_login_is_logged_without_the_password_and_retried_with_the_rotated_one(
        db: Database, settings: Settings, job_id: str, clock: Clock, certificates: Certificates,
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    password_file = tmp_path / "smtp-password"
    password_file.write_text("an-0ld-wrong-password\n")
    with smtp_server("starttls", certificates=certificates, credentials=("idsync", PASSWORD)) as server:
        notifier = Notifier(db, mail_settings(settings, server.port, smtp_security="starttls",
                                              smtp_ca_file=certificates.ca_file, smtp_username="idsync",
                                              smtp_password_file=password_file), clock)
        notifier.enqueue(None, job_id, OPS, TOO_MANY_DELETES)
        with structlog.testing.capture_logs() as logs:
            assert notifier.deliver() == DeliveryReport(failed=1, waiting=1)
            assert server.messages == []
            assert set(server.recorder.logins) == {("idsync", "an-0ld-wrong-password")}

            assert notifier.deliver() == DeliveryReport(waiting=1)  # not due again before a minute
            password_file.write_text(PASSWORD + "\n")  # the operator fixes the file: no restart needed
            clock.advance(minutes=1)
            assert notifier.deliver() == DeliveryReport(sent=1)
        assert server.recorder.logins[-1] == ("idsync", PASSWORD)  # the trailing newline is not part of it
    assert len(server.messages) == 1

    failure, sent = logs
    assert failure["event"] == "notify.send_failed" and failure["log_level"] == "warning"
    assert failure["error"].startswith("login refused: 535") and failure["attempts"] == 1
    assert failure["next_attempt_at"] == format_timestamp(T0 + timedelta(minutes=1))
    assert sent["event"] == "notify.sent" and sent["attempts"] == 2
    seen = repr(logs) + "".join(capfd.readouterr()) + repr(outbox(db)) + repr(notifier.settings)
    assert PASSWORD not in seen and "an-0ld-wrong-password" not in seen


# -- failures: logged, retried, never raised ------------------------------------------------------


def test_an_unreadable_password_file_is_a_failed_send(
        db: Database, settings: Settings, job_id: str, clock: Clock, certificates: Certificates,
        tmp_path: Path) -> None:
    with smtp_server("starttls", certificates=certificates, credentials=("idsync", PASSWORD)) as server:
        notifier = Notifier(db, mail_settings(settings, server.port, smtp_security="starttls",
                                              smtp_ca_file=certificates.ca_file, smtp_username="idsync",
                                              smtp_password_file=tmp_path / "missing"), clock)
        notifier.enqueue(None, job_id, OPS, TOO_MANY_DELETES)
        assert notifier.deliver() == DeliveryReport(failed=1, waiting=1)
    assert server.recorder.logins == [] and server.messages == []
    assert outbox(db)[0].last_error == "IDSYNC_SMTP_PASSWORD_FILE cannot be read: No such file or directory"


def test_a_server_that_is_down_delays_the_message_and_it_is_sent_once_when_it_is_back(
        db: Database, settings: Settings, job_id: str, clock: Clock) -> None:
    port = free_port()
    notifier = Notifier(db, mail_settings(settings, port), clock)
    notifier.enqueue(None, job_id, OPS, TOO_MANY_DELETES)
    assert notifier.deliver() == DeliveryReport(failed=1, waiting=1)  # no exception
    [row] = outbox(db)
    assert row.attempts == 1 and row.sent_at is None
    assert row.next_attempt_at == format_timestamp(T0 + timedelta(minutes=1)) > format_timestamp(T0)
    assert row.last_error.startswith(f"cannot reach {HOST}:{port}")

    with smtp_server(port=port) as server:
        assert notifier.deliver() == DeliveryReport(waiting=1)  # back, but the message is not due yet
        clock.advance(seconds=59)
        assert notifier.deliver() == DeliveryReport(waiting=1)
        clock.advance(seconds=1)
        assert notifier.deliver() == DeliveryReport(sent=1)
        clock.advance(hours=1)
        assert notifier.deliver() == DeliveryReport()
    assert len(server.messages) == 1
    [row] = outbox(db)
    assert row.attempts == 2 and row.sent_at == format_timestamp(T0 + timedelta(minutes=1))


def test_a_message_is_retried_after_1_5_15_and_60_minutes_then_hourly_and_given_up_after_a_day(
        db: Database, settings: Settings, job_id: str, clock: Clock) -> None:
    notifier = Notifier(db, mail_settings(settings, free_port()), clock)  # nothing ever listens
    notifier.enqueue(None, job_id, OPS, TOO_MANY_DELETES)
    attempts_at: list[datetime] = []
    reports: list[DeliveryReport] = []
    with structlog.testing.capture_logs() as logs:
        while (row := outbox(db)[0]).next_attempt_at is not None:
            clock.now = parse_timestamp(row.next_attempt_at)
            attempts_at.append(clock.now)
            reports.append(notifier.deliver())
    waits = [(later - earlier) / timedelta(minutes=1)
             for earlier, later in zip(attempts_at, attempts_at[1:], strict=False)]
    assert waits[:5] == [1, 5, 15, 60, 60] and set(waits[4:-1]) == {60}
    assert attempts_at[-1] == T0 + timedelta(hours=24)  # the last attempt falls on the deadline
    assert reports[-1] == DeliveryReport(gave_up=1) and all(r.failed == 1 for r in reports[:-1])
    assert [entry["event"] for entry in logs] == ["notify.send_failed"] * (len(reports) - 1) + ["notify.gave_up"]
    assert logs[-1]["log_level"] == "error" and logs[-1]["attempts"] == len(reports) == outbox(db)[0].attempts
    [entry] = notifier.messages(job_id)
    assert entry.status == "given-up" and entry.last_error.startswith("cannot reach")
    clock.advance(days=1)
    assert notifier.deliver() == DeliveryReport()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel completes them) but never says a word."""
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


def test_a_server_that_never_answers_times_out(
        db: Database, settings: Settings, job_id: str, clock: Clock, silent_port: int) -> None:
    notifier = Notifier(db, mail_settings(settings, silent_port, smtp_timeout_seconds=0.3), clock)
    notifier.enqueue(None, job_id, OPS, TOO_MANY_DELETES)
    assert notifier.deliver() == DeliveryReport(failed=1, waiting=1)
    assert outbox(db)[0].last_error == f"no answer from {HOST}:{silent_port} within 0.3 s"


def test_a_message_that_cannot_go_does_not_hold_back_the_others(
        db: Database, settings: Settings, job_id: str, clock: Clock) -> None:
    with smtp_server() as server:
        server.recorder.unknown.add("left@example.test")
        notifier = Notifier(db, mail_settings(settings, server.port), clock)
        notifier.enqueue(None, job_id, "left@example.test", TOO_MANY_DELETES)  # the server refuses it
        clock.advance(seconds=1)
        # No message can be built for this one (an event of its own: one event is one message per job).
        notifier.enqueue(None, job_id, "not an address@", TOO_MANY_DELETES, dedupe_key="another event")
        clock.advance(seconds=1)
        notifier.enqueue(None, job_id, OPS, Notice("hr", "recovered", "TooManyDeletes", since="later"))
        assert notifier.deliver() == DeliveryReport(sent=1, failed=2, waiting=2)
    assert [received.rcpt_tos for received in server.messages] == [[OPS]]
    errors = {row.recipient: row.last_error for row in outbox(db)}
    assert errors["left@example.test"] == "recipient refused: 550 5.1.1 No such user here"
    assert errors["not an address@"].startswith("cannot build the message")


def test_without_an_smtp_server_messages_wait_and_that_is_said_once(
        db: Database, settings: Settings, job_id: str, clock: Clock) -> None:
    notifier = Notifier(db, settings, clock)
    notifier.enqueue(None, job_id, OPS, TOO_MANY_DELETES)
    with structlog.testing.capture_logs() as logs:
        assert notifier.deliver() == DeliveryReport(waiting=1)
        assert notifier.deliver() == DeliveryReport(waiting=1)
    assert [entry["event"] for entry in logs] == ["notify.not_configured"]
    with smtp_server() as server:  # configured later: the message goes then
        assert Notifier(db, mail_settings(settings, server.port), clock).deliver() == DeliveryReport(sent=1)
    assert len(server.messages) == 1


def test_without_an_smtp_server_a_message_is_given_up_after_a_day(
        db: Database, settings: Settings, job_id: str, clock: Clock) -> None:
    notifier = Notifier(db, settings, clock)
    notifier.enqueue(None, job_id, OPS, TOO_MANY_DELETES)
    clock.advance(hours=23, minutes=59)
    assert notifier.deliver() == DeliveryReport(waiting=1)
    clock.advance(minutes=1)
    with structlog.testing.capture_logs() as logs:
        assert notifier.deliver() == DeliveryReport(gave_up=1)
    assert logs == [{"event": "notify.gave_up", "log_level": "error", "count": 1,
                     "error": "e-mail is not configured (IDSYNC_SMTP_HOST)"}]
    with smtp_server() as server:  # configured weeks later: e-mail starts with what is news
        assert Notifier(db, mail_settings(settings, server.port), clock).deliver() == DeliveryReport()
    assert server.messages == [] and notifier.messages(job_id)[0].status == "given-up"


def test_two_processes_delivering_at_once_send_each_message_once(
        db: Database, settings: Settings, job_id: str, clock: Clock) -> None:
    with smtp_server() as server:
        smtp = mail_settings(settings, server.port)
        first = Notifier(db, smtp, clock)
        for number in range(12):
            first.enqueue(None, job_id, OPS, TOO_MANY_DELETES, dedupe_key=f"event-{number}")
        other = Notifier(Database(db.url), smtp, clock)  # another process: its own pool
        reports: list[DeliveryReport] = []
        threads = [threading.Thread(target=lambda n=n: reports.append(n.deliver())) for n in (first, other)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        other.db.dispose()
    assert sum(report.sent for report in reports) == 12
    ids = [received.message["Message-ID"] for received in server.messages]
    assert len(ids) == len(set(ids)) == 12


def test_a_broken_database_is_logged_not_raised(settings: Settings, clock: Clock, tmp_path: Path) -> None:
    broken = Database(f"sqlite:///{tmp_path / 'no-such-dir' / 'x.db'}")
    with structlog.testing.capture_logs() as logs:
        assert Notifier(broken, mail_settings(settings, free_port()), clock).deliver() == DeliveryReport()
    assert [entry["event"] for entry in logs] == ["notify.deliver_failed"]
    broken.dispose()


# -- settings ----------------------------------------------------------------------------------------


def test_smtp_settings_are_checked_when_they_are_read(tmp_path: Path) -> None:
    with pytest.raises(pydantic.ValidationError, match="IDSYNC_SMTP_FROM"):
        Settings(data_dir=tmp_path, smtp_host="smtp.example.test")
    with pytest.raises(pydantic.ValidationError, match="together"):
        Settings(data_dir=tmp_path, smtp_host="smtp.example.test", smtp_from=SENDER, smtp_username="idsync")
    with pytest.raises(pydantic.ValidationError, match="in clear"):
        Settings(data_dir=tmp_path, smtp_host="smtp.example.test", smtp_from=SENDER, smtp_security="none",
                 smtp_username="idsync", smtp_password_file=tmp_path / "p")
    with pytest.raises(pydantic.ValidationError, match="smtp_security"):
        Settings(data_dir=tmp_path, smtp_host="smtp.example.test", smtp_from=SENDER, smtp_security="ssl")
    defaults = Settings(data_dir=tmp_path)
    assert (defaults.smtp_host, defaults.smtp_port, defaults.smtp_security) == (None, 587, "starttls")


def test_sent_messages_are_forgotten_with_the_provisioning_logs(
        db: Database, settings: Settings, job_id: str, clock: Clock) -> None:
    with smtp_server() as server:
        notifier = Notifier(db, mail_settings(settings, server.port, engine_log_retention_days=30), clock)
        notifier.enqueue(None, job_id, OPS, TOO_MANY_DELETES)
        assert notifier.deliver().sent == 1
        clock.advance(days=30, seconds=1)
        later = Notice("hr", "quarantined", "TooManyDeletes", since=format_timestamp(clock.now))
        notifier.enqueue(None, job_id, OPS, later)
    # The server is gone: the new message cannot go, and stays, while the old one is forgotten.
    assert notifier.deliver() == DeliveryReport(failed=1, waiting=1)
    assert [row.dedupe_key for row in outbox(db)] == [later.dedupe_key]
