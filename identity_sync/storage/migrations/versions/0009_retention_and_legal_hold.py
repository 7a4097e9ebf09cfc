"""Per-tenant retention of tombstones and legal hold (service/tombstones.py).

Existing tenants keep their tombstones (no retention) and are not on hold.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("retention_days", sa.Integer))
        batch.add_column(sa.Column("legal_hold", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("legal_hold")
        batch.drop_column("retention_days")
