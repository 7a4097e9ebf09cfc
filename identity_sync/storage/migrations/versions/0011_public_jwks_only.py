"""Only public keys in stored JWKS documents (issue 11).

``entra set --jwks-file`` and ``client create --federated --jwks-file`` stored the file whole, so
a JWKS that also held a private key kept it in the database. They now refuse such a file; this
migration removes, from the JWKS already stored, every key that carries private members. Such a
key never verified anything (``auth/jwt.public_jwk`` refuses it), so what is accepted does not
change. Not reversible: the removed private members are not kept anywhere.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_TABLES = (("entra_trust", "tenant_id"), ("oauth_federated_credentials", "id"))
#: JWK members of private or secret keys (auth/jwt.py PRIVATE_MEMBERS, frozen here as of this
#: revision: a migration must not change meaning when the application code does).
_PRIVATE = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def without_private_keys(jwks: dict[str, Any]) -> dict[str, Any]:
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        return jwks
    return {**jwks, "keys": [k for k in keys if not (isinstance(k, dict) and _PRIVATE.intersection(k))]}


def upgrade() -> None:
    conn = op.get_bind()
    for table, key in _TABLES:
        rows = conn.execute(sa.text(f"SELECT {key}, jwks FROM {table} WHERE jwks IS NOT NULL")).fetchall()
        for row_key, text in rows:
            try:
                jwks = json.loads(text)
            except ValueError:
                continue  # not JSON: it never yielded a key either; left for the operator to replace
            if not isinstance(jwks, dict):
                continue
            public = without_private_keys(jwks)
            if public != jwks:
                conn.execute(sa.text(f"UPDATE {table} SET jwks = :jwks WHERE {key} = :key"),
                             {"jwks": json.dumps(public), "key": row_key})


def downgrade() -> None:
    pass  # nothing to restore: private members are gone for good, on purpose
