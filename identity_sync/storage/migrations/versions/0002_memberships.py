"""Group memberships as a relation, and the memberships kept with tombstones.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "memberships",
        sa.Column("group_id", sa.String(36), sa.ForeignKey("resources.id"), primary_key=True),
        sa.Column("member_id", sa.String(36), sa.ForeignKey("resources.id"), primary_key=True),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("member_type", sa.String(8), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
    )
    op.create_index("ix_memberships_member", "memberships", ["member_id", "group_id"])
    op.create_table(
        "former_memberships",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("group_id", sa.String(36), nullable=False),
        sa.Column("member_id", sa.String(36), nullable=False),
        sa.Column("member_type", sa.String(8), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("ended_at", sa.String(32), nullable=False),
    )
    op.create_index("ix_former_memberships_group_id", "former_memberships", ["group_id"])
    op.create_index("ix_former_memberships_member_id", "former_memberships", ["member_id"])


def downgrade() -> None:
    op.drop_table("former_memberships")
    op.drop_table("memberships")
