"""Migrations, on SQLite and PostgreSQL: an empty database upgrades to the newest schema,
which matches the models, keeps the event log append-only, and downgrades back to empty."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import DatabaseError
from sqlmodel import SQLModel
from typer.testing import CliRunner

import models.config as config
from agreements.cli import app
from models.db import downgrade, engine, head, migrate


def test_upgrade_to_head_matches_the_models_and_downgrades(database_url: str) -> None:
    url = database_url
    db = migrate(url)
    assert set(inspect(db).get_table_names()) >= {"agreement", "terms", "event", "outbox"}
    with db.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert differences == []
    downgrade(url)
    assert set(inspect(engine(url)).get_table_names()) <= {"alembic_version"}


def test_the_event_log_refuses_changes(database_url: str) -> None:
    db = migrate(database_url)
    with db.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO event (event_key, agreement_id, at, kind, summary, data_json,"
                " recorded_at) VALUES ('k', 'a', '2026-01-01', 'x', 's', '{}', '2026-01-01')"
            )
        )
    for statement in ("UPDATE event SET summary = 'changed'", "DELETE FROM event"):
        with pytest.raises(DatabaseError, match="append-only"), db.begin() as connection:
            connection.execute(text(statement))


def test_migrate_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGREEMENTS_DATA_DIR", str(tmp_path))
    config.settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["migrate"])
    finally:
        config.settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert (
        "agreement"
        in inspect(engine(f"sqlite:///{tmp_path.resolve() / 'agreements.db'}")).get_table_names()
    )


def test_reading_a_database_that_is_not_migrated_says_what_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGREEMENTS_DATA_DIR", str(tmp_path))
    config.settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["list"])
    finally:
        config.settings.cache_clear()
    assert result.exit_code == 1
    assert f"is at schema none (empty), this version needs {head()}" in result.output
    assert "run `agreements migrate` first" in result.output
    assert "Traceback" not in result.output
