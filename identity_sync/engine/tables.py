"""The engine's state, in the service's database (migration 0010; declared on the service's
``metadata`` so the migration test compares them too).

* ``engine_jobs`` — one row per provisioning job: source, target, sealed credentials
  (``engine/secrets.py``), settings, the mapping document, and the watermark of the last
  completed cycle (``NULL``: the next cycle is an initial one).
* ``engine_links`` — the connector data store (provisioning-engine.md §1.3): which target object
  each source object is linked to, the values last exported to it and their digest. The digest
  is what makes "no change, no request" cheap: an incremental cycle loads anchors and digests only.
* ``engine_memberships`` — the group memberships the engine has exported, by source anchors.
* ``engine_cycles`` — one row per cycle: kind, state, counts, the error that stopped it.
* ``engine_events`` — the provisioning logs, one row per object per cycle (§4.4).
* ``engine_escrows`` — objects that failed, retried with back-off (engine/escrow.py).
* ``engine_source_objects`` — the engine's copy of the source (engine/mirror.py, migration 0013):
  each object's attributes as last read, the digest of what the cycle sees of it, and whether a
  cycle still has to look at it (``pending``). With it, a source that reports only changes (LDAP
  content synchronisation, Graph delta) still gives the cycle a complete picture, and an
  incremental cycle evaluates only the objects that changed. ``engine_jobs.source_cursor`` is the
  source's position that copy is at.
"""

from __future__ import annotations

import sqlalchemy as sa

from identity_sync.storage.tables import JSON_DOC, metadata

engine_jobs = sa.Table(
    "engine_jobs",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("target_url", sa.Text, nullable=False),
    # Sealed JSON (engine/secrets.py): never a token or client secret in clear.
    sa.Column("credentials", sa.Text, nullable=False),
    sa.Column("settings", JSON_DOC, nullable=False),
    sa.Column("mapping", JSON_DOC, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("watermark", sa.Text),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
    # Who runs the job's cycle, until when (engine/lease.py; migration 0012).
    sa.Column("lease_owner", sa.String(128)),
    sa.Column("lease_expires_at", sa.String(32)),
    # The source's own position (a delta link, a sync cookie) the mirror is at (migration 0013).
    sa.Column("source_cursor", sa.Text),
    # Operations (migration 0013, engine/scheduler.py, engine/quarantine.py): when the scheduler runs
    # the job next, its quarantine (NULL: none), and how many cycles in a row could not run.
    sa.Column("next_run_at", sa.String(32)),
    sa.Column("quarantine", JSON_DOC),
    sa.Column("failures_in_a_row", sa.Integer, nullable=False, server_default="0"),
)

engine_links = sa.Table(
    "engine_links",
    metadata,
    sa.Column("job_id", sa.String(36), sa.ForeignKey("engine_jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("object_type", sa.String(8), primary_key=True),
    sa.Column("anchor", sa.String(255), primary_key=True),
    sa.Column("target_id", sa.String(255), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("exported", JSON_DOC, nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
)

engine_memberships = sa.Table(
    "engine_memberships",
    metadata,
    sa.Column("job_id", sa.String(36), sa.ForeignKey("engine_jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("group_anchor", sa.String(255), primary_key=True),
    sa.Column("member_anchor", sa.String(255), primary_key=True),
    sqlite_with_rowid=False,
)

engine_cycles = sa.Table(
    "engine_cycles",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("job_id", sa.String(36), sa.ForeignKey("engine_jobs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("kind", sa.String(12), nullable=False),
    sa.Column("state", sa.String(12), nullable=False),
    sa.Column("started_at", sa.String(32), nullable=False),
    sa.Column("ended_at", sa.String(32)),
    sa.Column("counts", JSON_DOC, nullable=False),
    sa.Column("error", sa.Text),
    sa.Index("ix_engine_cycles_job", "job_id", "started_at"),
)

engine_events = sa.Table(
    "engine_events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(36), sa.ForeignKey("engine_jobs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("cycle_id", sa.String(36), nullable=False),
    sa.Column("change_id", sa.String(36), nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("object_type", sa.String(8), nullable=False),
    sa.Column("source_id", sa.String(255), nullable=False),
    sa.Column("source_name", sa.Text, nullable=False),
    sa.Column("target_id", sa.String(255)),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("status", sa.String(8), nullable=False),
    sa.Column("error_code", sa.String(64)),
    sa.Column("reason", sa.Text),
    sa.Column("steps", JSON_DOC, nullable=False),
    sa.Column("modified", JSON_DOC, nullable=False),
    sa.Column("duration_ms", sa.Integer, nullable=False),
    sa.Index("ix_engine_events_job", "job_id", "id"),
    sa.Index("ix_engine_events_cycle", "job_id", "cycle_id"),
    sa.Index("ix_engine_events_object", "job_id", "source_id"),
    sa.Index("ix_engine_events_at", "at"),
)

engine_source_objects = sa.Table(
    "engine_source_objects",
    metadata,
    sa.Column("job_id", sa.String(36), sa.ForeignKey("engine_jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("object_type", sa.String(8), primary_key=True),
    sa.Column("anchor", sa.String(255), primary_key=True),
    # JSON text, decoded only when the cycle looks at the object (100k users stay cheap to hold).
    sa.Column("attributes", sa.Text, nullable=False),
    sa.Column("assigned", sa.Boolean, nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("pending", sa.Boolean, nullable=False),
    sqlite_with_rowid=False,
)

engine_escrows = sa.Table(
    "engine_escrows",
    metadata,
    sa.Column("job_id", sa.String(36), sa.ForeignKey("engine_jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("anchor", sa.String(255), primary_key=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("first_failed_at", sa.String(32), nullable=False),
    sa.Column("next_attempt_at", sa.String(32), nullable=False),
    sa.Column("error_code", sa.String(64), nullable=False),
    sqlite_with_rowid=False,
)

# The outbox of failure e-mails (engine/notify.py, migration 0015): written in the transaction that
# records the event, sent afterwards, so a failed send never undoes the event nor stops a cycle.
# ``dedupe_key`` is unique per job: an event is mailed once, however many cycles report it.
# ``next_attempt_at`` is NULL once the message was sent or given up on.
engine_notifications = sa.Table(
    "engine_notifications",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("job_id", sa.String(36), sa.ForeignKey("engine_jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("dedupe_key", sa.String(255), nullable=False),
    sa.Column("recipient", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("text_body", sa.Text, nullable=False),
    sa.Column("html_body", sa.Text, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", sa.String(32)),
    sa.Column("sent_at", sa.String(32)),
    sa.Column("last_error", sa.Text),
    sa.UniqueConstraint("job_id", "dedupe_key", name="uq_engine_notifications_event"),
    sa.Index("ix_engine_notifications_due", "next_attempt_at"),
)
