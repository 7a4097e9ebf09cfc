"""A lease per engine job (identity_sync/engine/lease.py): who runs its cycle, until when.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (no batch copy), as 0009: other tables' foreign keys point at engine_jobs.
    op.add_column("engine_jobs", sa.Column("lease_owner", sa.String(128)))
    op.add_column("engine_jobs", sa.Column("lease_expires_at", sa.String(32)))


def downgrade() -> None:
    op.drop_column("engine_jobs", "lease_expires_at")
    op.drop_column("engine_jobs", "lease_owner")
