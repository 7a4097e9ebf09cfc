"""The engine's copy of each job's source (identity_sync/engine/mirror.py) and its position; the
job's operations state (schedule, quarantine) and its escrows.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (no batch copy), as 0012: other tables' foreign keys point at engine_jobs.
    op.add_column("engine_jobs", sa.Column("source_cursor", sa.Text))
    op.add_column("engine_jobs", sa.Column("next_run_at", sa.String(32)))
    op.add_column("engine_jobs", sa.Column("quarantine", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")))
    op.add_column("engine_jobs", sa.Column("failures_in_a_row", sa.Integer, nullable=False, server_default="0"))
    op.create_table(
        "engine_escrows",
        sa.Column("job_id", sa.String(36), sa.ForeignKey("engine_jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("anchor", sa.String(255), primary_key=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("first_failed_at", sa.String(32), nullable=False),
        sa.Column("next_attempt_at", sa.String(32), nullable=False),
        sa.Column("error_code", sa.String(64), nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "engine_source_objects",
        sa.Column("job_id", sa.String(36), sa.ForeignKey("engine_jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("object_type", sa.String(8), primary_key=True),
        sa.Column("anchor", sa.String(255), primary_key=True),
        sa.Column("attributes", sa.Text, nullable=False),
        sa.Column("assigned", sa.Boolean, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("pending", sa.Boolean, nullable=False),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("engine_escrows")
    op.drop_table("engine_source_objects")
    for column in ("failures_in_a_row", "quarantine", "next_run_at", "source_cursor"):
        op.drop_column("engine_jobs", column)
