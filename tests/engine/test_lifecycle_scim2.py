"""The same lifecycle against a target no one here wrote: scim2-server (PyPI) with the GlobalRelay
extension registered, in the strict RFC 7644 dialect. The result must still be the mapping's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from identity_sync.config import Settings
from identity_sync.storage.db import Database
from tests.engine.readback import Readback
from tests.engine.targets import Target
from tests.engine.test_lifecycle import run_lifecycle


@pytest.fixture
def scim2_readback(scim2_target: Target) -> Iterator[Readback]:
    reader = Readback(scim2_target)
    yield reader
    reader.close()


def test_the_whole_lifecycle_on_scim2_server(db: Database, settings: Settings, scim2_target: Target,
                                             scim2_readback: Readback, tmp_path: Path) -> None:
    run_lifecycle(db, settings, scim2_target, scim2_readback, tmp_path, dialect="rfc")
