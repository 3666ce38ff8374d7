"""Database engines and sessions for the configured URL (SQLite by default)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, event, text
from sqlmodel import SQLModel, create_engine

from models import records  # noqa: F401  (registers the tables on SQLModel.metadata)

# The event log is append-only: the database itself refuses to change or remove a row.
_APPEND_ONLY = [
    "CREATE TRIGGER IF NOT EXISTS event_no_update BEFORE UPDATE ON event "
    "BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS event_no_delete BEFORE DELETE ON event "
    "BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END",
]


@lru_cache(maxsize=8)
def engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        created = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(created, "connect")
        def _pragmas(connection, _record):  # type: ignore[no-untyped-def]
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return created
    return create_engine(url, pool_pre_ping=True)


def create_all(url: str) -> Engine:
    """Create the tables when they are missing (migrations take this over later)."""
    db = engine(url)
    SQLModel.metadata.create_all(db)
    if db.dialect.name == "sqlite":
        with db.begin() as connection:
            for statement in _APPEND_ONLY:
                connection.execute(text(statement))
    return db
