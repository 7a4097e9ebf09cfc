"""Workload identity federation: federated credentials of OAuth clients.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oauth_federated_credentials",
        sa.Column("id", sa.String(16), sa.ForeignKey("oauth_client_secrets.id"), primary_key=True),
        sa.Column("client_id", sa.String(40), sa.ForeignKey("oauth_clients.id"), nullable=False, unique=True),
        sa.Column("issuer", sa.String(200), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("audience", sa.String(200), nullable=False),
        sa.Column("entra_tenant_id", sa.String(36), nullable=False),
        sa.Column("jwks", sa.Text),
        sa.Column("jwks_url", sa.String(500)),
        sa.Column("created_at", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("oauth_federated_credentials")
