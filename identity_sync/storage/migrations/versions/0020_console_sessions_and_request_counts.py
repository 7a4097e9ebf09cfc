"""Server-side console sessions, the shared login rate limit, and the request history of the
overview (console/auth.py, observability/history.py).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("operator_id", sa.String(36), nullable=False),
        sa.Column("csrf_digest", sa.String(64), nullable=False),
        sa.Column("password_fingerprint", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("seen_at", sa.Double, nullable=False),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("user_agent", sa.String(200), nullable=False),
        sa.Column("via", sa.String(16), nullable=False),
    )
    op.create_index("console_sessions_operator", "console_sessions", ["operator_id"])
    op.create_index("console_sessions_seen", "console_sessions", ["seen_at"])
    op.create_table(
        "console_login_failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name_digest", sa.String(64), nullable=False),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("at", sa.Double, nullable=False),
    )
    op.create_index("console_login_failures_pair", "console_login_failures", ["client", "name_digest", "at"])
    op.create_index("console_login_failures_at", "console_login_failures", ["at"])
    op.create_table(
        "request_counts",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("minute", sa.Integer, primary_key=True),
        sa.Column("status_class", sa.String(3), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
    )
    op.create_index("request_counts_minute", "request_counts", ["minute"])


def downgrade() -> None:
    op.drop_table("request_counts")
    op.drop_table("console_login_failures")
    op.drop_table("console_sessions")
