"""Tenant admins (an operator bound to one tenant) and each tenant's recent rejected requests.

``operators.tenant_id``: the tenant a ``tenant-admin`` operator may see (``NULL`` for ``admin``
and ``viewer``, who see every tenant). ``rejected_requests``: the last few hundred SCIM requests
of each tenant answered 4xx (status, reason, route, client address; never a credential), shown on
the console's tenant page (service/rejections.py says how it stays small).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("operators") as batch:
        batch.add_column(sa.Column("tenant_id", sa.String(36), nullable=True))
    op.create_table(
        "rejected_requests",
        sa.Column("tenant_id", sa.String(36), primary_key=True),
        sa.Column("id", sa.String(36), primary_key=True),  # UUIDv7 (ids.py): time-ordered
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("method", sa.String(10), nullable=False),
        sa.Column("route", sa.String(80), nullable=False),
        sa.Column("client", sa.String(64)),
        sa.Column("credential_id", sa.String(80)),
        sa.Column("request_id", sa.String(64)),
    )


def downgrade() -> None:
    op.drop_table("rejected_requests")
    with op.batch_alter_table("operators") as batch:
        batch.drop_column("tenant_id")
