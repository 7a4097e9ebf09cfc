"""Bad input gives a clear error and writes nothing — above all, a broken source never becomes
deletions or disables in the target (invariant 1 of docs/engine.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from identity_sync.config import Settings
from identity_sync.engine.errors import CycleAborted
from identity_sync.engine.jobs import Credentials, JobError
from identity_sync.engine.mapping.model import MappingError, load_mapping_file
from identity_sync.engine.service import EngineService
from identity_sync.engine.state import ConnectorStore
from identity_sync.storage.db import Database
from tests.engine.clock import Backoffs
from tests.engine.conftest import unique
from tests.engine.directory import group, user, write_directory
from tests.engine.readback import Readback
from tests.engine.targets import Target
from tests.pg import free_port


def _directory(path: Path, prefix: str, count: int = 5) -> Path:
    users = [user(f"u{i}", userPrincipalName=f"{prefix}-u{i}@example.com") for i in range(count)]
    return write_directory(path, users, [group("g", [f"u{i}" for i in range(count)], displayName=f"{prefix} g")],
                           assignments=["g"])


def _job(db: Database, settings: Settings, target: Target, source: Path, token: str | None = None,
         url: str | None = None, backoffs: Backoffs | None = None) -> EngineService:
    engine = EngineService(db, settings) if backoffs is None else EngineService(db, settings, sleep=backoffs)
    engine.jobs.create("job", source=f"csv:{source}", target_url=url or target.base_url,
                       credentials=Credentials(token=token or target.token))
    return engine


@pytest.mark.parametrize("damage", ["truncated last line", "missing final newline", "users.csv deleted",
                                    "duplicate id", "bad accountEnabled", "assignments.csv deleted"])
def test_a_broken_export_after_a_good_one_deletes_and_disables_nothing(
        damage: str, db: Database, settings: Settings, our_target: Target, readback: Readback, tmp_path: Path) -> None:
    prefix = unique("bad")
    source = _directory(tmp_path / "export", prefix)
    engine = _job(db, settings, our_target, source)
    engine.run("job")
    before = readback.users(prefix)
    assert len(before) == 5
    users_csv = source / "users.csv"
    text = users_csv.read_text()
    if damage == "truncated last line":
        users_csv.write_text(text[: text.rindex("\n", 0, len(text) - 1) + 12])  # cut inside the last row
    elif damage == "missing final newline":
        users_csv.write_text("\n".join(text.splitlines()[:2]))  # only one user left, and no final newline
    elif damage == "users.csv deleted":
        users_csv.unlink()
    elif damage == "assignments.csv deleted":
        (source / "assignments.csv").unlink()
    elif damage == "duplicate id":
        users_csv.write_text(text + text.splitlines()[1] + "\n")
    else:
        users_csv.write_text(text.replace("true", "maybe", 1))
    watermark = engine.jobs.get("job").watermark

    with pytest.raises(CycleAborted) as raised:
        engine.run("job")

    message = str(raised.value)
    assert message.startswith("source: ") and "\n" not in message
    if damage == "assignments.csv deleted":
        assert "assigns nobody" in message and "refusing to disable 5" in message
    elif damage != "users.csv deleted":
        assert "users.csv:" in message  # FILE:LINE:COLUMN
    after = readback.users(prefix)
    assert {k: (v["id"], v["active"]) for k, v in after.items()} == {k: (v["id"], v["active"]) for k, v in
                                                                       before.items()}
    assert engine.jobs.get("job").watermark == watermark
    assert engine.jobs.cycles(engine.jobs.get("job"))[0]["state"] == "failed"


def test_an_unreachable_target_or_a_bad_token_stops_the_cycle_before_any_write(
        db: Database, settings: Settings, our_target: Target, readback: Readback, tmp_path: Path) -> None:
    prefix = unique("down")
    source = _directory(tmp_path / "export", prefix)
    backoffs = Backoffs()  # the target never comes back: its retries are made without waiting
    down = _job(db, settings, our_target, source, url=f"http://127.0.0.1:{free_port()}/scim/v2/x", backoffs=backoffs)
    with pytest.raises(CycleAborted) as raised:
        down.run("job")
    assert raised.value.error_code == "TargetUnreachable" and backoffs.waits
    down.jobs.update("job", target_url=our_target.base_url, credentials=Credentials(token="idsync_wrong"))
    with pytest.raises(CycleAborted) as raised:
        down.run("job")
    assert raised.value.error_code == "Unauthorized" and "idsync_wrong" not in str(raised.value)
    assert readback.users(prefix) == {}
    assert ConnectorStore(db, down.jobs.get("job").id).counts() == {"users": 0, "groups": 0}


def test_mapping_and_scoping_mistakes_are_one_line_with_file_line_and_column(tmp_path: Path) -> None:
    cases = {
        "unknown function": ('{"users": {"mappings": [{"target": "userName", "source": "upn", "matching": 1},\n'
                             ' {"target": "title", "expression": "Upper([jobTitle])"}]}}', ":2:", "Upper"),
        "bad operator": ('{"users": {"scoping": [{"title": "t", "clauses": [\n  {"attribute": "department", '
                         '"operator": "EQAULS", "value": "x"}]}],\n "mappings": [{"target": "userName", "source": '
                         '"upn", "matching": 1}]}}', ":2:", "EQUALS"),
        "no matching attribute": ('{"users": {"mappings": [{"target": "userName", "source": "upn"}]}}', ":1:",
                                  "matching"),
        "mapping id": ('{"users": {"mappings": [{"target": "userName", "source": "upn", "matching": 1},\n'
                       '  {"target": "id", "source": "x"}]}}', ":2:", "'id'"),
        "json syntax": ('{"users": {"mappings": [}}', ":1:", "invalid JSON"),
        "unknown key": ('{"users": {"mappings": [{"target": "userName", "sorce": "upn", "matching": 1}]}}', ":1:",
                        "did you mean 'source'"),
        "unwritable path": ('{"users": {"mappings": [{"target": "userName", "source": "upn", "matching": 1},\n'
                            '  {"target": "emails[type eq \\"work\\"]", "source": "mail"}]}}', ":2:", "sub-attribute"),
        "non-eq element filter": ('{"users": {"mappings": [{"target": "userName", "source": "upn", "matching": 1},\n'
                                  '  {"target": "phoneNumbers[type ne \\"fax\\"].value", "source": "x"}]}}', ":2:",
                                  "'eq'"),
    }
    for name, (text, where, words) in cases.items():
        path = tmp_path / f"{name.replace(' ', '-')}.json"
        path.write_text(text)
        with pytest.raises(MappingError) as raised:
            load_mapping_file(path)
        message = str(raised.value)
        assert message.startswith(f"{path}{where}"), (name, message)
        assert words in message and "\n" not in message, (name, message)


def test_job_options_are_checked_before_anything_is_stored(db: Database, settings: Settings, tmp_path: Path) -> None:
    engine = EngineService(db, settings)
    good = dict(source=f"csv:{_directory(tmp_path / 'e', 'x')}", target_url="https://scim.example.test/scim",
                credentials=Credentials(token="t"))
    for change, words in [({"source": "ldap:nowhere"}, "csv:"), ({"source": f"csv:{tmp_path / 'nope'}"},
                                                                 "not a directory"),
                          ({"target_url": "ftp://x"}, "http(s) URL"), ({"scope": "some"}, "--scope"),
                          ({"dialect": "okta"}, "--dialect"), ({"notify": "not-an-address"}, "e-mail")]:
        with pytest.raises((JobError, ValueError)) as raised:
            engine.jobs.create("j", **{**good, **change})
        assert words in str(raised.value)
    assert engine.jobs.list() == []
    with pytest.raises(JobError):
        Credentials(token="t", client_id="c")


def test_an_object_the_target_refuses_fails_alone_and_is_retried_next_cycle(
        db: Database, settings: Settings, our_target: Target, readback: Readback, tmp_path: Path) -> None:
    """A display name with a NUL character is refused by the target (400 invalidValue): that user
    alone fails, the cycle completes, and the next cycle tries it again without touching the rest."""
    from identity_sync.engine.logs import query_events

    prefix = unique("refused")
    users = [user(f"u{i}", userPrincipalName=f"{prefix}-u{i}@example.com",
                  displayName="Bad\u0000Name" if i == 1 else f"User {i}") for i in range(3)]
    source = write_directory(tmp_path / "export", users, [], assignments=["u0", "u1", "u2"])
    engine = _job(db, settings, our_target, source)

    first = engine.run("job")
    assert (first.state, first.counts["created"], first.counts["failed"]) == ("completed", 2, 1)
    assert set(readback.users(prefix)) == {f"{prefix}-u0@example.com", f"{prefix}-u2@example.com"}
    [failure] = query_events(db, engine.jobs.get("job").id, cycle=first.cycle_id, status="failure")
    assert failure["sourceIdentity"]["id"] == "u1"
    assert failure["provisioningStatusInfo"]["errorInformation"]["errorCode"] == "UnprocessableEntity"

    second = engine.run("job")
    assert (second.counts["failed"], second.counts["created"], second.counts["unchanged"]) == (1, 0, 2)
    assert second.requests.get("POST") == 1 and "PATCH" not in second.requests


def test_a_secret_of_more_than_one_line_is_refused_without_quoting_it() -> None:
    for credentials in ({"token": "idsync_abc\n# rotated 2026-12-01"},
                        {"client_id": "c", "client_secret": "s3cret\nmore", "token_endpoint": "https://x.test/t"}):
        with pytest.raises(JobError) as raised:
            Credentials(**credentials)
        assert "one non-empty line" in str(raised.value)
        assert "abc" not in str(raised.value) and "s3cret" not in str(raised.value)


def test_a_new_target_url_forgets_the_old_targets_links(db: Database, settings: Settings, our_target: Target,
                                                        tmp_path: Path) -> None:
    source = _directory(tmp_path / "export", unique("moved"))
    engine = _job(db, settings, our_target, source)
    engine.run("job")
    job = engine.jobs.get("job")
    assert ConnectorStore(db, job.id).counts()["users"] == 5
    engine.jobs.update("job", target_url=our_target.base_url.rstrip("/") + "/")
    job = engine.jobs.get("job")
    assert job.watermark is None and ConnectorStore(db, job.id).counts() == {"users": 0, "groups": 0}
    again = engine.run("job")  # an initial cycle that finds every object by matching
    assert (again.kind, again.counts["created"], again.counts["failed"]) == ("initial", 0, 0)


def test_credentials_never_show_their_secrets_in_a_repr() -> None:
    shown = repr(Credentials(token="idsync_tok3n")) + repr(
        Credentials(client_id="c", client_secret="s3cret", token_endpoint="https://x.test/t"))
    assert "idsync_tok3n" not in shown and "s3cret" not in shown and "client_id='c'" in shown
