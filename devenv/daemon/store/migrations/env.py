"""Alembic environment: runs on the connection the daemon hands over (see devenv.daemon.store.db.migrate)."""

from __future__ import annotations

from alembic import context

from devenv.daemon.store.tables import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
