"""Alembic environment: the tables are SQLModel's metadata; the URL is the caller's."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from models import people, records, webhooks  # noqa: F401  (registers the tables)
from models.db import engine

target_metadata = SQLModel.metadata
MIGRATION_LOCK = 7_262_001  # any fixed number: the advisory lock the migrations hold
url = context.config.get_main_option("sqlalchemy.url")
assert url, "migrations need sqlalchemy.url"

if context.is_offline_mode():
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    with engine(url).connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # Two deployments migrating at once take turns; the second finds nothing to do.
                context.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            context.run_migrations()
