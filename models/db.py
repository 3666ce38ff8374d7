"""Database engines and sessions for the configured URL (SQLite by default)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, event
from sqlmodel import create_engine

from models import records  # noqa: F401  (registers the tables on SQLModel.metadata)


def driver_url(url: str) -> str:
    """`postgresql://…` (as PostgreSQL itself writes it) means psycopg 3, the driver this
    project installs; SQLAlchemy would otherwise look for psycopg2."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


@lru_cache(maxsize=8)
def engine(url: str) -> Engine:
    url = driver_url(url)
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


MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


_migrated: set[tuple[str, str]] = set()


def migrate(url: str, revision: str = "head") -> Engine:
    """Bring the database to `revision` (the newest by default) and return its engine.
    Done once per process and URL; `agreements migrate` and `agreements up` call it."""
    if (url, revision) not in _migrated:
        command.upgrade(alembic_config(url), revision)
        _migrated.add((url, revision))
    return engine(url)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)
    _migrated.clear()


def create_all(url: str) -> Engine:
    """The database at the newest schema: every caller goes through the migrations."""
    return migrate(url)
