"""Tenants, credentials, resources with tombstones, and the attribute-value index.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
    )
    op.create_table(
        "credentials",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), nullable=False, index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("expires_at", sa.String(32)),
        sa.Column("last_used_at", sa.String(32)),
        sa.Column("revoked_at", sa.String(32)),
    )
    op.create_table(
        "resources",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("resource_type", sa.String(32), nullable=False),
        sa.Column("name_key", sa.Text, nullable=False),
        sa.Column("doc", JSON_DOC, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("last_modified", sa.String(32), nullable=False),
        sa.Column("deleted_at", sa.String(32)),
    )
    op.create_index(
        "uq_resources_live_name",
        "resources",
        ["tenant_id", "resource_type", "name_key"],
        unique=True,
        sqlite_where=sa.text("deleted_at IS NULL"),
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index("ix_resources_listing", "resources", ["tenant_id", "resource_type", "created_at", "id"])
    op.create_index("ix_resources_deleted", "resources", ["deleted_at"])
    op.create_table(
        "attr_values",
        sa.Column("resource_id", sa.String(36), sa.ForeignKey("resources.id"), primary_key=True),
        sa.Column("path", sa.String(160), primary_key=True),
        sa.Column("element", sa.Integer, primary_key=True),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_attr_values_lookup", "attr_values", ["tenant_id", "path", "key", "resource_id"])


def downgrade() -> None:
    op.drop_table("attr_values")
    op.drop_table("resources")
    op.drop_table("credentials")
    op.drop_table("tenants")
