"""Indexes for the console's audit trail page (identity_sync/console/audit.py): newest first
within a time range, and one actor's events, without reading the whole trail.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05
"""

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_events_at", "audit_events", ["at", "id"])
    op.create_index("ix_audit_events_actor", "audit_events", ["actor", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_actor", "audit_events")
    op.drop_index("ix_audit_events_at", "audit_events")
