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
    # Plain ADD COLUMN, not a batch (copy-and-rename) operation: on SQLite, dropping the old
    # tenants table fails while other tables' foreign keys point at its rows.
    op.add_column("tenants", sa.Column("retention_days", sa.Integer))
    op.add_column("tenants", sa.Column("legal_hold", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    op.drop_column("tenants", "legal_hold")
    op.drop_column("tenants", "retention_days")
