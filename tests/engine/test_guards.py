"""Guards against broken inputs that are well-formed: a scoping filter naming an attribute the source
does not have (a typo that would disable everybody), and an export that lacks many provisioned
objects (a file cut at a line end, which no parser can tell from a smaller one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from identity_sync.config import Settings
from identity_sync.engine.errors import CycleAborted
from identity_sync.engine.jobs import Credentials
from identity_sync.engine.mapping.model import default_mapping_document
from identity_sync.engine.service import EngineService
from identity_sync.storage.db import Database
from tests.engine.conftest import unique
from tests.engine.directory import user, write_directory
from tests.engine.readback import Readback
from tests.engine.targets import Target


def _with_filter(attribute: str) -> dict[str, object]:
    mapping = default_mapping_document()
    return {**mapping, "users": {**mapping["users"], "scoping": [
        {"title": "Sales", "clauses": [{"attribute": attribute, "operator": "EQUALS", "value": "Sales"}]}]}}


def test_a_scoping_filter_naming_no_source_attribute_stops_the_cycle_and_disables_nobody(
        db: Database, settings: Settings, our_target: Target, tmp_path: Path) -> None:
    prefix = unique("typo")
    users = [user(f"u{i}", userPrincipalName=f"{prefix}-u{i}@example.com", department="Sales") for i in range(3)]
    source = write_directory(tmp_path / "export", users, [], assignments=[u["id"] for u in users])
    engine = EngineService(db, settings)
    engine.jobs.create("job", source=f"csv:{source}", target_url=our_target.base_url,
                       credentials=Credentials(token=our_target.token))
    engine.run("job")
    engine.jobs.update("job", mapping=_with_filter("departmnet"))
    with pytest.raises(CycleAborted) as raised:
        engine.run("job")
    assert raised.value.error_code == "InvalidScopingFilter"
    assert "'departmnet'" in str(raised.value) and "did you mean 'department'" in str(raised.value)
    reader = Readback(our_target)
    assert all(u["active"] for u in reader.users(prefix).values())
    # Spelled in another case, the attribute is the source's (as Direct mappings are).
    engine.jobs.update("job", mapping=_with_filter("DEPARTMENT"))
    again = engine.run("job")
    assert again.counts["disabled"] == 0 and again.counts["failed"] == 0
    reader.close()


def test_an_export_missing_many_provisioned_users_deletes_nothing_until_the_operator_allows_it(
        db: Database, settings: Settings, our_target: Target, tmp_path: Path) -> None:
    prefix = unique("cut")
    users = [user(f"u{i:02d}", userPrincipalName=f"{prefix}-u{i:02d}@example.com") for i in range(15)]
    source = write_directory(tmp_path / "export", users, [], assignments=[u["id"] for u in users])
    engine = EngineService(db, settings)
    engine.jobs.create("job", source=f"csv:{source}", target_url=our_target.base_url,
                       credentials=Credentials(token=our_target.token))
    engine.run("job")
    # Cut after the third row, at a line end: a well-formed file, and most people missing.
    write_directory(source, users[:3], [], assignments=[u["id"] for u in users[:3]])
    with pytest.raises(CycleAborted) as raised:
        engine.run("job")
    assert raised.value.error_code == "TooManyDeletes" and "12 of the 15 users" in str(raised.value)
    reader = Readback(our_target)
    assert len(reader.users(prefix)) == 15 and all(u["active"] for u in reader.users(prefix).values())

    engine.jobs.restart("job", frozenset({"force-deletes"}))
    allowed = engine.run("job")
    assert allowed.counts["deleted"] == 12
    assert len(reader.users(prefix)) == 3
    assert "force_deletes" not in engine.jobs.get("job").settings  # allowed once, not forever
    reader.close()
