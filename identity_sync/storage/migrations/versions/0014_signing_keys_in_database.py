"""Token-signing keys in the database (issue 11; auth/oauth.py): every node shares them without
a shared disk. Key files of earlier releases are imported by the first process that finds the
table empty, not here: opening them may need the passphrase, which is the service's setting.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("private_key", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("signing_keys")
