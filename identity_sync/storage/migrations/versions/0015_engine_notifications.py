"""The outbox of failure e-mails (identity_sync/engine/notify.py).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "engine_notifications",
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
    )
    op.create_index("ix_engine_notifications_due", "engine_notifications", ["next_attempt_at"])


def downgrade() -> None:
    op.drop_table("engine_notifications")
