"""Per-tenant rate-limit buckets in the database (PostgreSQL), shared by every worker and node.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_buckets",
        sa.Column("tenant_id", sa.String(36), primary_key=True),
        sa.Column("tokens", sa.Double, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        postgresql_with={"fillfactor": 50},
    )


def downgrade() -> None:
    op.drop_table("rate_limit_buckets")
