"""The database schema (SQLAlchemy Core). Alembic migrations create exactly this; a test
compares the two.

* ``tenants`` — one row per customer; the name is the segment of its Tenant URL.
* ``credentials`` — bearer tokens, stored only as SHA-256 digests (tokens carry 256 random bits,
  so a fast hash is enough: nothing to brute-force).
* ``resources`` — one row per SCIM resource, the canonical document as JSON. A DELETE sets
  ``deleted_at`` and keeps the row (the tombstone an archive needs); the partial unique index on
  ``name_key`` covers live rows only, so a deleted user's ``userName`` can be reused.
* ``attr_values`` — the searchable values of live resources (see ``scim/index.py``).
* ``resource_counts`` — live resources per tenant and type, kept with every create and delete.
* ``audit_events`` — the append-only audit trail of every committed change.

Every tenant-owned table's primary key, unique constraints and foreign keys include ``tenant_id``
(migration 0017), so that a distributed PostgreSQL (Citus) can shard them all by tenant and
enforce each key within one shard (docs/deployment.md; tests/storage/test_distribution.py checks
it). ``tenant_id`` comes first in those keys: every statement names the tenant.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()

JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    # Tombstones older than this are purged by the service's retention job; NULL keeps them.
    sa.Column("retention_days", sa.Integer),
    # Under legal hold nothing of the tenant is purged, by the job or by the operator.
    sa.Column("legal_hold", sa.Boolean, nullable=False, server_default=sa.false()),
)

credentials = sa.Table(
    "credentials",
    metadata,
    sa.Column("id", sa.String(16), nullable=False),
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("expires_at", sa.String(32)),
    sa.Column("last_used_at", sa.String(32)),
    sa.Column("revoked_at", sa.String(32)),
    sa.PrimaryKeyConstraint("tenant_id", "id"),
    # A token is looked for among the credentials of the tenant whose URL it was sent to.
    sa.UniqueConstraint("tenant_id", "secret_hash", name="uq_credentials_tenant_secret_hash"),
)

resources = sa.Table(
    "resources",
    metadata,
    sa.Column("id", sa.String(36), nullable=False),
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("resource_type", sa.String(32), nullable=False),
    sa.Column("name_key", sa.Text, nullable=False),
    sa.Column("doc", JSON_DOC, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("last_modified", sa.String(32), nullable=False),
    sa.Column("deleted_at", sa.String(32)),
    sa.PrimaryKeyConstraint("tenant_id", "id"),
    sa.Index(
        "uq_resources_live_name",
        "tenant_id",
        "resource_type",
        "name_key",
        unique=True,
        sqlite_where=sa.text("deleted_at IS NULL"),
        postgresql_where=sa.text("deleted_at IS NULL"),
    ),
    # Live rows only, so that OFFSET paging and counts walk the index alone (migration 0004).
    sa.Index(
        "ix_resources_live_listing",
        "tenant_id",
        "resource_type",
        "created_at",
        "id",
        sqlite_where=sa.text("deleted_at IS NULL"),
        postgresql_where=sa.text("deleted_at IS NULL"),
    ),
    sa.Index("ix_resources_deleted", "deleted_at"),
)

# How many live resources of each type a tenant has, and a generation number that every create and
# delete bumps, kept in the same transaction as the change (storage/counts.py). ``totalResults``
# of an unfiltered list is this row instead of a count over the tenant's rows (15 ms at 100,000
# users, on every page), and the generation tells when remembered paging positions
# (storage/marks.py) are still exact.
resource_counts = sa.Table(
    "resource_counts",
    metadata,
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), primary_key=True),
    sa.Column("resource_type", sa.String(32), primary_key=True),
    sa.Column("live", sa.Integer, nullable=False),
    sa.Column("generation", sa.BigInteger, nullable=False),
)

attr_values = sa.Table(
    "attr_values",
    metadata,
    sa.Column("resource_id", sa.String(36), nullable=False),
    sa.Column("path", sa.String(160), nullable=False),
    sa.Column("element", sa.Integer, nullable=False),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "resource_id", "path", "element"),
    sa.ForeignKeyConstraint(["tenant_id", "resource_id"], ["resources.tenant_id", "resources.id"]),
    sa.Index("ix_attr_values_lookup", "tenant_id", "path", "key", "resource_id"),
    # The primary key is the table: one copy of each row fewer than with a rowid table.
    sqlite_with_rowid=False,
)

# Group membership is a relation, one row per (group, member), indexed both ways: a PATCH that
# adds or removes k members costs O(k) whatever the group's size, and concurrent PATCHes cannot
# lose each other's members (no read-modify-write of a member list anywhere).
memberships = sa.Table(
    "memberships",
    metadata,
    sa.Column("group_id", sa.String(36), nullable=False),
    sa.Column("member_id", sa.String(36), nullable=False),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("member_type", sa.String(8), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "group_id", "member_id"),
    sa.ForeignKeyConstraint(["tenant_id", "group_id"], ["resources.tenant_id", "resources.id"]),
    sa.ForeignKeyConstraint(["tenant_id", "member_id"], ["resources.tenant_id", "resources.id"]),
    sa.Index("ix_memberships_member", "member_id", "group_id"),
)

# What a deleted user or group was a member of (or contained): the tombstone's memberships,
# invisible to SCIM, kept for the operator until the tombstone is purged. ``id`` only tells rows
# apart: PostgreSQL draws it from the column's sequence; SQLite, which has no sequence and cannot
# autoincrement a column of a composite key, gets the tenant's highest id plus one from the
# statement (storage/memberships.py; SQLite runs one writer at a time).
former_memberships = sa.Table(
    "former_memberships",
    metadata,
    sa.Column("id", sa.Integer, sa.Sequence("former_memberships_id_seq"), nullable=False, autoincrement=False),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("group_id", sa.String(36), nullable=False, index=True),
    sa.Column("member_id", sa.String(36), nullable=False, index=True),
    sa.Column("member_type", sa.String(8), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("ended_at", sa.String(32), nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "id"),
)

# The audit trail: one row per committed change of a resource, written in the change's own
# transaction (a rolled-back request leaves none), never updated or deleted by the service. It
# names who (the credential's id, never a secret), what (action, resource, new version, the
# top-level attributes that changed) and when; not the values, which the documents and
# tombstones keep. ``id`` orders a tenant's events as they committed (storage/audit.py); ``at`` is
# the change's own timestamp. ``id`` is unique across tenants: PostgreSQL draws it from the
# column's sequence, SQLite (no sequence, no autoincrement in a composite key) takes the highest
# id plus one in the insert, through ``ix_audit_events_id`` (one writer at a time there).
audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), sa.Sequence("audit_events_id_seq"),
              nullable=False, autoincrement=False),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(120), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("resource_type", sa.String(32), nullable=False),
    sa.Column("resource_id", sa.String(36), nullable=False),
    sa.Column("version", sa.Integer),
    sa.Column("attributes", sa.Text, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "id"),
    sa.Index("ix_audit_events_id", "id"),
    sa.Index("ix_audit_events_resource", "resource_id", "id"),
    # The console's audit page (migration 0018): a time range, one actor.
    sa.Index("ix_audit_events_at", "at", "id"),
    sa.Index("ix_audit_events_actor", "actor", "id"),
)

# -- OAuth 2.0 clients and Entra trust (issue 5; see docs/security.md) ------------------------------

# A client of the token endpoint: one per customer (Microsoft requires each customer to bring its
# own client id/secret). ``scopes`` is a space-separated subset of auth/tokens.py's scopes.
oauth_clients = sa.Table(
    "oauth_clients",
    metadata,
    sa.Column("id", sa.String(40), nullable=False),
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), nullable=False, index=True),
    sa.Column("scopes", sa.String(200), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("revoked_at", sa.String(32)),
    sa.PrimaryKeyConstraint("tenant_id", "id"),
)

# A client's secrets: several live at once (rotation), each with an expiry, stored as SHA-256
# digests only (256 random bits: nothing to brute-force, so a fast hash is enough). Access tokens
# name the secret they were issued for, so revoking a secret ends its tokens too.
oauth_client_secrets = sa.Table(
    "oauth_client_secrets",
    metadata,
    sa.Column("id", sa.String(16), nullable=False),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("client_id", sa.String(40), nullable=False, index=True),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("expires_at", sa.String(32), nullable=False),
    sa.Column("last_used_at", sa.String(32)),
    sa.Column("revoked_at", sa.String(32)),
    sa.PrimaryKeyConstraint("tenant_id", "id"),
    sa.UniqueConstraint("tenant_id", "secret_hash", name="uq_oauth_client_secrets_tenant_secret_hash"),
    sa.ForeignKeyConstraint(["tenant_id", "client_id"], ["oauth_clients.tenant_id", "oauth_clients.id"]),
)

# Tokens issued by the customer's Microsoft Entra tenant that this tenant accepts (Entra's
# blank-secret mode): the Entra tenant id fixes the trusted issuer; the JWKS (public keys, not a
# secret) is kept here so that every worker and node sees the same configuration.
entra_trust = sa.Table(
    "entra_trust",
    metadata,
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), primary_key=True),
    sa.Column("entra_tenant_id", sa.String(36), nullable=False),
    sa.Column("audience", sa.String(200), nullable=False),
    sa.Column("jwks", sa.Text),
    sa.Column("jwks_url", sa.String(500)),
    sa.Column("updated_at", sa.String(32), nullable=False),
)

# Workload identity federation (RFC 7523): a client credential that is an assertion signed by the
# customer's Microsoft Entra rather than a secret. ``id`` is also a row of oauth_client_secrets
# (with a digest no secret can have), so access tokens name it in ``sid`` and revocation, expiry
# and last use work exactly as for secrets. The JWKS holds public keys only.
oauth_federated_credentials = sa.Table(
    "oauth_federated_credentials",
    metadata,
    sa.Column("id", sa.String(16), nullable=False),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("client_id", sa.String(40), nullable=False),
    sa.Column("issuer", sa.String(200), nullable=False),
    sa.Column("subject", sa.String(200), nullable=False),
    sa.Column("audience", sa.String(200), nullable=False),
    sa.Column("entra_tenant_id", sa.String(36), nullable=False),
    sa.Column("jwks", sa.Text),
    sa.Column("jwks_url", sa.String(500)),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "id"),
    sa.UniqueConstraint("tenant_id", "client_id", name="uq_oauth_federated_credentials_tenant_client"),
    sa.ForeignKeyConstraint(["tenant_id", "id"], ["oauth_client_secrets.tenant_id", "oauth_client_secrets.id"]),
    sa.ForeignKeyConstraint(["tenant_id", "client_id"], ["oauth_clients.tenant_id", "oauth_clients.id"]),
)

# -- shared rate limits (issue 6; auth/ratelimit.py) --------------------------------------------------

# One token bucket per tenant on PostgreSQL, shared by every worker and node: what was left after
# the last take (negative: the last take was refused, see ratelimit.TAKE_SQL) and when, on the
# database clock. Unused on SQLite (the buckets live in each process there). Updated in place on
# every request, only non-indexed columns: HOT updates, with room left on each page for them.
rate_limit_buckets = sa.Table(
    "rate_limit_buckets",
    metadata,
    sa.Column("tenant_id", sa.String(36), primary_key=True),
    sa.Column("tokens", sa.Double, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    postgresql_with={"fillfactor": 50},
)

# -- token-signing keys (issue 11; auth/oauth.py) -----------------------------------------------------

# The keys that sign our access tokens, shared by every node through the database. The private key
# is a PKCS#8 PEM sealed with AES-256-GCM (sealing.py), never in clear. Not a tenant's: one global
# table of a few rows (a reference table under Citus, docs/deployment.md).
signing_keys = sa.Table(
    "signing_keys",
    metadata,
    sa.Column("kid", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("private_key", sa.Text, nullable=False),
)

# -- operators of the web console (issue 14; service/operators.py, docs/console.md) --------------------

# The people who may log in to the console at /admin. The password is an argon2id hash (never the
# password); ``disabled`` ends every session of the operator at its next request. A global table of
# a few rows, like signing_keys (a reference table under Citus).
operators = sa.Table(
    "operators",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    # The one tenant a ``tenant-admin`` may see (NULL: every tenant; migration 0019).
    sa.Column("tenant_id", sa.String(36)),
)

# The last few hundred SCIM requests of each tenant answered 4xx, for the console's tenant page
# (service/rejections.py): status, a short reason, the route template, the client address and
# the credential's id — never a credential, a header, a query string or a body.
rejected_requests = sa.Table(
    "rejected_requests",
    metadata,
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

# -- console sessions and login limit (issue 14; console/auth.py) --------------------------------------

# One row per logged-in console session. The cookie carries a random session id; the row is keyed
# by its SHA-256 (a copy of this table opens no session) and holds the CSRF token's digest. Logout,
# disabling the operator and a new password delete the rows: a copied cookie dies with them.
console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("operator_id", sa.String(36), nullable=False),
    sa.Column("csrf_digest", sa.String(64), nullable=False),
    sa.Column("password_fingerprint", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),  # epoch seconds, the console's clock
    sa.Column("seen_at", sa.Double, nullable=False),
    sa.Column("client", sa.String(64), nullable=False),
    sa.Column("user_agent", sa.String(200), nullable=False),
    sa.Column("via", sa.String(16), nullable=False),  # "password" or "oidc"
    sa.Index("console_sessions_operator", "operator_id"),
    sa.Index("console_sessions_seen", "seen_at"),
)

# Failed console logins of the last 15 minutes, shared by every worker and node: the name as a
# SHA-256 digest (what was typed as a name may be a password), the client address, when.
console_login_failures = sa.Table(
    "console_login_failures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name_digest", sa.String(64), nullable=False),
    sa.Column("client", sa.String(64), nullable=False),
    sa.Column("at", sa.Double, nullable=False),
    sa.Index("console_login_failures_pair", "client", "name_digest", "at"),
    sa.Index("console_login_failures_at", "at"),
)

# -- request history of the overview (issue 14; observability/history.py) ----------------------------

# Requests served per tenant (its name; "-": not authenticated), minute (since the epoch) and status
# class ("2xx"…"5xx"). Each process counts in memory and adds its counts every few seconds with one
# upsert (count = count + new): never a write per request, and right with any number of workers.
request_counts = sa.Table(
    "request_counts",
    metadata,
    sa.Column("tenant", sa.String(64), primary_key=True),
    sa.Column("minute", sa.Integer, primary_key=True),
    sa.Column("status_class", sa.String(3), primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Index("request_counts_minute", "minute"),
)

# -- the authentication epoch (issue 11; storage/db.py ``Database.auth_epoch``) ---------------------

# One row whose ``generation`` grows in every transaction that may end a credential's validity
# (a token, client or secret revoked, a tenant disabled, an Entra trust changed): every worker of
# every node caches verified credentials under the generation it read and drops them when it
# changes. PostgreSQL only reads it (SQLite keeps the number in a file beside the database: one
# machine, and a stat is cheaper than a query). A global table of one row (a reference table
# under Citus).
auth_epoch = sa.Table(
    "auth_epoch",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("generation", sa.BigInteger, nullable=False),
)
