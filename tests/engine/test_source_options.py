"""A job's source settings: the plain ones kept in the job's settings, the secrets sealed with the
target credentials (never in ``job show``), Graph's URLs from Settings, and the source attributes
the mapping reads handed to the source."""

from __future__ import annotations

from pathlib import Path

import pytest

from identity_sync.config import Settings
from identity_sync.engine.jobs import Credentials, JobError, JobService
from identity_sync.engine.sources.base import SourceOptions
from identity_sync.storage.db import Database


@pytest.fixture
def jobs(tmp_path: Path) -> JobService:
    settings = Settings(data_dir=tmp_path, graph_url="http://127.0.0.1:9/v1.0")
    db = Database(settings.resolved_database_url())
    db.migrate()
    return JobService(db, settings)


def test_source_secrets_are_sealed_and_come_back(jobs: JobService, tmp_path: Path) -> None:
    job = jobs.create("j", source=f"csv:{tmp_path}", target_url="https://t.example/scim",
                      credentials=Credentials(token="target-secret"),
                      source_options=SourceOptions(bind_dn="cn=reader,dc=example", password="ldap-secret",
                                                   preset="openldap"))
    assert job.settings["source"] == {"bind_dn": "cn=reader,dc=example", "preset": "openldap"}
    assert "ldap-secret" not in repr(job) and "ldap-secret" not in str(job.describe())
    options = jobs.source_options(job)
    assert (options.bind_dn, options.password, options.preset) == ("cn=reader,dc=example", "ldap-secret", "openldap")
    assert options.graph_url == "http://127.0.0.1:9/v1.0"
    assert "ldap-secret" not in repr(options)
    assert {"userPrincipalName", "accountEnabled", "manager"} <= (options.user_attributes or set())
    assert "members" in (options.group_attributes or set())
    assert jobs.credentials(job).token == "target-secret"


def test_new_target_credentials_keep_the_source_secret(jobs: JobService, tmp_path: Path) -> None:
    jobs.create("j", source=f"csv:{tmp_path}", target_url="https://t.example/scim",
                credentials=Credentials(token="one"), source_options=SourceOptions(password="ldap-secret"))
    job = jobs.update("j", credentials=Credentials(token="two"))
    assert jobs.credentials(job).token == "two"
    assert jobs.source_options(job).password == "ldap-secret"
    job = jobs.update("j", source_options=SourceOptions(password="new-secret"))
    assert jobs.credentials(job).token == "two"
    assert jobs.source_options(job).password == "new-secret"
    assert job.watermark is None


def test_a_bad_source_is_refused_at_create(jobs: JobService) -> None:
    with pytest.raises(JobError, match="expected one of csv:DIR"):
        jobs.create("j", source="ftp://x", target_url="https://t.example/scim", credentials=Credentials(token="t"))
