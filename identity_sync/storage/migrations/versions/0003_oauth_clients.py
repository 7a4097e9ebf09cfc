"""OAuth 2.0 clients and their secrets, and per-tenant trust in Entra-issued tokens.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oauth_clients",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("scopes", sa.String(200), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("revoked_at", sa.String(32)),
    )
    op.create_index("ix_oauth_clients_tenant_id", "oauth_clients", ["tenant_id"])
    op.create_table(
        "oauth_client_secrets",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("client_id", sa.String(40), sa.ForeignKey("oauth_clients.id"), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("expires_at", sa.String(32), nullable=False),
        sa.Column("last_used_at", sa.String(32)),
        sa.Column("revoked_at", sa.String(32)),
    )
    op.create_index("ix_oauth_client_secrets_client_id", "oauth_client_secrets", ["client_id"])
    op.create_table(
        "entra_trust",
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), primary_key=True),
        sa.Column("entra_tenant_id", sa.String(36), nullable=False),
        sa.Column("audience", sa.String(200), nullable=False),
        sa.Column("jwks", sa.Text),
        sa.Column("jwks_url", sa.String(500)),
        sa.Column("updated_at", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("entra_trust")
    op.drop_index("ix_oauth_client_secrets_client_id", "oauth_client_secrets")
    op.drop_table("oauth_client_secrets")
    op.drop_index("ix_oauth_clients_tenant_id", "oauth_clients")
    op.drop_table("oauth_clients")
