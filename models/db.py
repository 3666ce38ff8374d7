"""Database engines and sessions for the configured URL (SQLite by default)."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager, nullcontext
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, event, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import create_engine

from models import people, records, webhooks  # noqa: F401  (registers the tables on SQLModel.metadata)


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
            # With WAL, NORMAL survives any process crash; only a power cut can lose the
            # last commits (an email then goes out again). FULL would fsync every commit.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return created
    return create_engine(url, pool_pre_ping=True)


_write_locks: dict[int, threading.Lock] = {}


def write_lock(db: Engine) -> AbstractContextManager[object]:
    """Held around a write transaction. SQLite lets one writer in at a time and makes the
    others wait in sleeps of up to 100 ms (its busy handler); the threads of one process
    take turns on a lock instead, which is far quicker. PostgreSQL needs no such turn."""
    if db.dialect.name != "sqlite":
        return nullcontext()
    return _write_locks.setdefault(id(db), threading.Lock())


MIGRATIONS = Path(__file__).resolve().parent / "migrations"


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


class SchemaError(RuntimeError):
    """The database is not at the schema this code needs; the message says what to run."""


def head() -> str:
    revision = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert revision is not None
    return revision


_ready: set[str] = set()


def ready(url: str) -> Engine:
    """The engine of a database that is already at the newest schema. Workers, the web
    server and the commands never migrate by themselves (several of them starting at once
    would race); `agreements migrate` or `agreements up` does, before they start."""
    db = engine(url)
    if url in _ready or (url, "head") in _migrated:
        return db
    try:
        with db.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as error:
        raise SchemaError(f"cannot open the database {shown(url)}: {error.args[0]}") from None
    wanted = head()
    if current != wanted:
        raise SchemaError(
            f"the database {shown(url)} is at schema {current or 'none (empty)'}, this version"
            f" needs {wanted}: run `agreements migrate` first"
        )
    _ready.add(url)
    return db


def shown(url: str) -> str:
    """The URL without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)
