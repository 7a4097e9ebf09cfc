"""The audit trail: one row per committed change of a resource (storage/audit.py).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(120), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("resource_type", sa.String(32), nullable=False),
        sa.Column("resource_id", sa.String(36), nullable=False),
        sa.Column("version", sa.Integer),
        sa.Column("attributes", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_events_tenant", "audit_events", ["tenant_id", "id"])
    op.create_index("ix_audit_events_resource", "audit_events", ["resource_id", "id"])


def downgrade() -> None:
    op.drop_table("audit_events")
