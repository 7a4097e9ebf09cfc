"""The listing index covers live rows only.

Index-based paging (`startIndex`) and `totalResults` walk the listing index; with deleted rows in
it, each row skipped by OFFSET or counted needed a table lookup to test `deleted_at` — paging
through 100,000 users took 77 s. As a partial index on live rows, both are index-only walks.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_resources_listing", table_name="resources")
    op.create_index(
        "ix_resources_live_listing",
        "resources",
        ["tenant_id", "resource_type", "created_at", "id"],
        sqlite_where=sa.text("deleted_at IS NULL"),
        postgresql_where=sa.text("deleted_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_resources_live_listing", table_name="resources")
    op.create_index("ix_resources_listing", "resources", ["tenant_id", "resource_type", "created_at", "id"])
