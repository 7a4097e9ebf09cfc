"""Alembic environment: migrations always run on a connection the application hands over."""

from alembic import context

from identity_sync.storage.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
