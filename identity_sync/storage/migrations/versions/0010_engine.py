"""The provisioning engine's state: jobs, the connector data store, cycles and provisioning logs
(identity_sync/engine/tables.py).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "engine_jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("target_url", sa.Text, nullable=False),
        sa.Column("credentials", sa.Text, nullable=False),
        sa.Column("settings", JSON_DOC, nullable=False),
        sa.Column("mapping", JSON_DOC, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("watermark", sa.Text),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
    )
    op.create_table(
        "engine_links",
        sa.Column("job_id", sa.String(36), sa.ForeignKey("engine_jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("object_type", sa.String(8), primary_key=True),
        sa.Column("anchor", sa.String(255), primary_key=True),
        sa.Column("target_id", sa.String(255), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("exported", JSON_DOC, nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
    )
    op.create_table(
        "engine_memberships",
        sa.Column("job_id", sa.String(36), sa.ForeignKey("engine_jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("group_anchor", sa.String(255), primary_key=True),
        sa.Column("member_anchor", sa.String(255), primary_key=True),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "engine_cycles",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("job_id", sa.String(36), sa.ForeignKey("engine_jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("started_at", sa.String(32), nullable=False),
        sa.Column("ended_at", sa.String(32)),
        sa.Column("counts", JSON_DOC, nullable=False),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_engine_cycles_job", "engine_cycles", ["job_id", "started_at"])
    op.create_table(
        "engine_events",
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
    )
    op.create_index("ix_engine_events_job", "engine_events", ["job_id", "id"])
    op.create_index("ix_engine_events_cycle", "engine_events", ["job_id", "cycle_id"])
    op.create_index("ix_engine_events_object", "engine_events", ["job_id", "source_id"])
    op.create_index("ix_engine_events_at", "engine_events", ["at"])


def downgrade() -> None:
    for table in ("engine_events", "engine_cycles", "engine_memberships", "engine_links", "engine_jobs"):
        op.drop_table(table)
