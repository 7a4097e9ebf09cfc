"""A job's life between cycles, end to end against our own service (SQLite and PostgreSQL), with an
injected clock (engine/operations.py, quarantine.py, escrow.py): quarantine entered and left for
each reason, the deletion threshold holding back a mistyped scoping filter, escrow back-off."""

from __future__ import annotations

from pathlib import Path

import pytest

from identity_sync.config import Settings
from identity_sync.engine.errors import CycleAborted
from identity_sync.engine.jobs import Credentials
from identity_sync.engine.logs import query_events
from identity_sync.engine.mapping.model import default_mapping_document
from identity_sync.engine.service import EngineService
from identity_sync.storage.db import Database
from tests.engine.clock import Backoffs, Clock
from tests.engine.conftest import unique
from tests.engine.directory import user, write_directory
from tests.engine.readback import Readback
from tests.engine.targets import Target


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _engine(db: Database, settings: Settings, clock: Clock) -> EngineService:
    return EngineService(db, settings, clock=clock)


def test_refused_credentials_quarantine_the_job_and_start_ends_it(
        db: Database, settings: Settings, our_target: Target, clock: Clock, tmp_path: Path) -> None:
    prefix = unique("cred")
    source = write_directory(tmp_path / "export", [user("u1", userPrincipalName=f"{prefix}-u1@example.com")], [],
                             assignments=["u1"])
    engine = _engine(db, settings, clock)
    engine.jobs.create("job", source=f"csv:{source}", target_url=our_target.base_url,
                       credentials=Credentials(token="not-the-token"))
    with pytest.raises(CycleAborted) as raised:
        engine.run("job")
    assert raised.value.error_code == "Unauthorized"
    job = engine.jobs.get("job")
    assert job.state == "quarantined" and job.quarantine is not None
    assert job.quarantine.reason == "EncounteredQuarantineException"
    assert job.next_run_at == job.quarantine.next_attempt == "2026-12-01T14:00:00.000000Z"
    shown = job.describe()
    assert shown["state"] == "quarantined" and shown["quarantine"]["reason"] == "EncounteredQuarantineException"

    clock.advance(hours=6)
    with pytest.raises(CycleAborted):
        engine.run("job")
    assert engine.jobs.get("job").quarantine.next_attempt == "2026-12-01T20:00:00.000000Z"  # type: ignore[union-attr]

    engine.jobs.update("job", credentials=Credentials(token=our_target.token))
    started = engine.operations.start("job", clock())
    assert (started.state, started.quarantine, started.next_run_at) == ("active", None, "2026-12-01T14:00:00.000000Z")
    result = engine.run("job")
    job = engine.jobs.get("job")
    assert result.counts["created"] == 1 and job.state == "active" and job.quarantine is None
    assert job.next_run_at == "2026-12-01T14:00:00.000000Z"  # after an initial cycle, the next at once
    engine.run("job")
    assert engine.jobs.get("job").next_run_at == "2026-12-01T14:40:00.000000Z"  # then the interval, 40 minutes


def test_an_unreachable_target_is_quarantined_after_three_cycles_and_a_success_ends_it(
        db: Database, settings: Settings, our_target: Target, clock: Clock, tmp_path: Path) -> None:
    from tests.pg import free_port

    source = write_directory(tmp_path / "export", [user("u1", userPrincipalName=f"{unique('down')}@example.com")],
                             [], assignments=["u1"])
    backoffs = Backoffs()
    engine = EngineService(db, settings, clock=clock, sleep=backoffs)
    engine.jobs.create("job", source=f"csv:{source}", target_url=f"http://127.0.0.1:{free_port()}/scim/v2/x",
                       credentials=Credentials(token=our_target.token), interval=15)
    for attempt in range(1, 4):
        retried = len(backoffs.waits)
        with pytest.raises(CycleAborted):
            engine.run("job")
        assert len(backoffs.waits) > retried  # each cycle retried the connection before giving up
        job = engine.jobs.get("job")
        assert job.failures_in_a_row == attempt
        assert (job.state == "quarantined") is (attempt == 3)
        if attempt < 3:
            assert job.next_run_at == "2026-12-01T08:15:00.000000Z"  # retried at the job's interval
    engine.jobs.update("job", target_url=our_target.base_url)
    engine.run("job")
    job = engine.jobs.get("job")
    assert (job.state, job.quarantine, job.failures_in_a_row) == ("active", None, 0)


def _sales_only(value: str) -> dict[str, object]:
    mapping = default_mapping_document()
    return {**mapping, "users": {**mapping["users"], "scoping": [
        {"title": "Sales", "clauses": [{"attribute": "department", "operator": "EQUALS", "value": value}]}]}}


def test_the_deletion_threshold_holds_back_a_mistyped_filter_until_deletes_are_allowed(
        db: Database, settings: Settings, our_target: Target, readback: Readback, clock: Clock,
        tmp_path: Path) -> None:
    prefix = unique("thr")
    users = [user(f"u{i}", userPrincipalName=f"{prefix}-u{i}@example.com",
                  department="Sales" if i < 9 else "Legal") for i in range(10)]
    source = write_directory(tmp_path / "export", users, [], assignments=[u["id"] for u in users])
    engine = _engine(db, settings, clock)
    engine.jobs.create("job", source=f"csv:{source}", target_url=our_target.base_url,
                       credentials=Credentials(token=our_target.token), deletion_threshold=5)
    engine.run("job")
    # "Slaes": the filter parses, names a real attribute, and puts 90 % of the users out of scope.
    engine.jobs.update("job", mapping=_sales_only("Slaes"))
    with pytest.raises(CycleAborted) as raised:
        engine.run("job")
    assert raised.value.error_code == "TooManyDeletes" and "10 objects" in str(raised.value)
    assert all(u["active"] for u in readback.users(prefix).values())  # nothing was removed
    job = engine.jobs.get("job")
    assert job.state == "quarantined" and job.quarantine.reason == "TooManyDeletes"  # type: ignore[union-attr]
    staged = query_events(db, job.id, action="stageddelete", limit=100)
    assert len(staged) == 10 and {e["provisioningAction"] for e in staged} == {"stageddelete"}
    assert {e["sourceIdentity"]["id"] for e in staged} == {f"u{i}" for i in range(10)}
    assert all("would disable" in e["provisioningSteps"][0]["description"] for e in staged)

    # The operator says yes: the next cycle removes them, and the job is healthy again.
    engine.jobs.restart("job", frozenset({"force-deletes", "quarantine"}))
    allowed = engine.run("job")
    assert allowed.counts["disabled"] == 10
    assert not any(u["active"] for u in readback.users(prefix).values())
    assert engine.jobs.get("job").state == "active"


def test_a_refused_object_is_retried_with_back_off_and_restart_forgets_it(
        db: Database, settings: Settings, our_target: Target, clock: Clock, tmp_path: Path) -> None:
    prefix = unique("escrow")
    users = [user(f"u{i}", userPrincipalName=f"{prefix}-u{i}@example.com",
                  displayName="Bad\u0000Name" if i == 1 else f"User {i}") for i in range(3)]
    source = write_directory(tmp_path / "export", users, [], assignments=["u0", "u1", "u2"])
    engine = _engine(db, settings, clock)
    engine.jobs.create("job", source=f"csv:{source}", target_url=our_target.base_url,
                       credentials=Credentials(token=our_target.token))
    assert engine.run("job").counts["failed"] == 1
    second = engine.run("job")  # the first retry is the next cycle
    assert second.counts["failed"] == 1 and second.requests.get("POST") == 1
    clock.advance(minutes=30)  # the second retry waits an hour
    third = engine.run("job")
    assert (third.counts["failed"], third.counts["escrowed"]) == (0, 1) and "POST" not in third.requests
    clock.advance(minutes=31)
    assert engine.run("job").counts["failed"] == 1
    job = engine.jobs.get("job")
    failures = query_events(db, job.id, status="failure", limit=10)
    assert len(failures) == 3  # every attempt is in the provisioning logs
    engine.jobs.restart("job", frozenset({"escrows"}))
    assert engine.run("job").counts["failed"] == 1  # tried at once again


def test_failures_are_mailed_once_per_event(db: Database, settings: Settings, our_target: Target, clock: Clock,
                                            tmp_path: Path) -> None:
    """A real SMTP server (aiosmtpd) receives one message when the job enters quarantine, none for
    the same reason again, one when the reason changes (the deletion guard), none with the switch off."""
    from tests.smtp import smtp_server

    prefix = unique("mail")
    users = [user(f"u{i}", userPrincipalName=f"{prefix}-u{i}@example.com", department="Sales") for i in range(4)]
    source = write_directory(tmp_path / "export", users, [], assignments=[u["id"] for u in users])
    with smtp_server("none") as smtp:
        mailing = Settings(**settings.model_dump(exclude_defaults=True), smtp_host="127.0.0.1", smtp_port=smtp.port,
                           smtp_security="none", smtp_from="identity-sync@example.test")
        engine = EngineService(db, mailing, clock=clock)
        engine.jobs.create("job", source=f"csv:{source}", target_url=our_target.base_url,
                           credentials=Credentials(token="wrong"), notify="it@example.test", deletion_threshold=2)
        for _ in range(2):
            with pytest.raises(CycleAborted):
                engine.run("job")
            clock.advance(hours=7)
        [first] = smtp.messages
        assert first.rcpt_tos == ["it@example.test"] and "quarantine" in first.message["Subject"]
        assert "identity-sync job show job" in first.message.get_body(("plain",)).get_content()

        engine.jobs.update("job", credentials=Credentials(token=our_target.token))
        engine.operations.start("job", clock())
        engine.run("job")
        engine.jobs.update("job", mapping=_sales_only("Slaes"))
        with pytest.raises(CycleAborted):
            engine.run("job")
        assert len(smtp.messages) == 2
        guard = smtp.messages[1].message
        assert "TooManyDeletes" in guard["Subject"]
        assert "--reset force-deletes" in guard.get_body(("plain",)).get_content()

        engine.jobs.update("job", notify_on_failure=False, credentials=Credentials(token="wrong-again"))
        engine.operations.start("job", clock())
        with pytest.raises(CycleAborted):
            engine.run("job")
        assert len(smtp.messages) == 2


def test_a_target_that_is_down_for_a_while_then_recovers(
        db: Database, settings: Settings, our_target: Target, readback: Readback, clock: Clock,
        tmp_path: Path) -> None:
    """503s within the client's retries cost nothing; an outage longer than a cycle stops it (the
    job is retried at its interval, and quarantined only if it lasts); after it, the next cycle
    converges with every object once."""
    from urllib.parse import urlsplit

    from tests.engine.flaky_proxy import FlakyProxy

    prefix = unique("flaky")
    users = [user(f"u{i}", userPrincipalName=f"{prefix}-u{i}@example.com") for i in range(30)]
    source = write_directory(tmp_path / "export", users, [], assignments=[u["id"] for u in users])
    target = urlsplit(our_target.base_url)
    proxy = FlakyProxy(f"{target.scheme}://{target.netloc}").start()
    try:
        engine = _engine(db, settings, clock)
        engine.jobs.create("job", source=f"csv:{source}", target_url=f"{proxy.url}{target.path}",
                           credentials=Credentials(token=our_target.token))
        proxy.outage(3)  # a blip: retried within the cycle
        first = engine.run("job")
        assert proxy.refused == 3 and (first.counts["created"], first.counts["failed"]) == (30, 0)

        for u in users[:10]:
            u["displayName"] = "Changed"
        write_directory(tmp_path / "export", users, [], assignments=[u["id"] for u in users])
        proxy.outage(10_000)  # a real outage: the cycle cannot even test the connection
        with pytest.raises(CycleAborted) as raised:
            engine.run("job")
        assert raised.value.error_code in ("TargetUnreachable", "ServiceUnavailable", "InternalServerError")
        job = engine.jobs.get("job")
        assert job.state == "active" and job.failures_in_a_row == 1  # retried at its interval, not quarantined
        proxy.outage(0)
        recovered = engine.run("job")
        assert (recovered.counts["updated"], recovered.counts["failed"]) == (10, 0)
        found = readback.users(prefix)
        assert len(found) == 30 and sum(r["displayName"] == "Changed" for r in found.values()) == 10
        assert engine.jobs.get("job").failures_in_a_row == 0
    finally:
        proxy.stop()


def test_too_many_failed_objects_quarantine_the_job_until_a_clean_cycle(
        db: Database, settings: Settings, our_target: Target, clock: Clock, tmp_path: Path) -> None:
    """``EncounteredEscrowProportionThreshold`` with its thresholds lowered (Entra's are 5,000 failures
    and 40 %): two of three users refused → quarantine; the source fixed → the next cycle ends it."""
    prefix = unique("prop")

    def write(bad: bool) -> Path:
        users = [user(f"u{i}", userPrincipalName=f"{prefix}-u{i}@example.com",
                      displayName="Bad\u0000Name" if bad and i else f"User {i}") for i in range(3)]
        return write_directory(tmp_path / "export", users, [], assignments=["u0", "u1", "u2"])

    source = write(bad=True)
    strict = settings.model_copy(update={"engine_quarantine_min_failures": 2})
    engine = EngineService(db, strict, clock=clock)
    engine.jobs.create("job", source=f"csv:{source}", target_url=our_target.base_url,
                       credentials=Credentials(token=our_target.token))
    first = engine.run("job")
    assert first.state == "completed" and first.counts["failed"] == 2
    job = engine.jobs.get("job")
    assert job.state == "quarantined" and job.quarantine.reason == "EncounteredEscrowProportionThreshold"  # type: ignore[union-attr]
    assert "2 of 3 objects failed" in (job.quarantine.error or "")  # type: ignore[union-attr]
    write(bad=False)
    fixed = engine.run("job")
    assert (fixed.counts["created"], fixed.counts["failed"]) == (2, 0)
    job = engine.jobs.get("job")
    assert (job.state, job.quarantine) == ("active", None)
