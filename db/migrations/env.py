"""Alembic environment: runs on the connection ``db.migrate`` hands over (no alembic.ini)."""

from __future__ import annotations

from alembic import context

from db.schema import Base

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things: recreate the table ("batch") where needed.
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
