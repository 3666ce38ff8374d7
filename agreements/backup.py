"""Backup and restore of the embedded default (`agreements backup`, `agreements restore`):
a consistent copy of the data folder taken while the service runs, and that copy put back
into an empty data folder, checked against its manifest first.

A deployment on PostgreSQL and a Temporal cluster is backed up by their own tools
(docs/operations.md, "Backup and restore"); this module refuses it rather than copy half.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import make_url

from i18n import N_
from models.codec import KEY_FILE
from models.config import Settings
from models.db import shown
from sealing.seal import SEAL_FILE

MANIFEST = "manifest.json"
FORMAT = "agreements-backup/1"
TEMPORAL_DB = "temporal.db"
SERVICE_DB = "agreements.db"
DOCUMENTS = "documents"
# Temporal's database is copied before the service's: restored, Temporal is then never
# ahead of the service's database, and what Temporal does again (timers, activities it
# had not seen finish) finds its outbox rows and events already written (the outbox's
# keys): nothing is sent twice. docs/operations.md reasons it out.
ORDER = (TEMPORAL_DB, SERVICE_DB)


class BackupError(Exception):
    """A backup or restore that is refused: an English message id (translated by the
    interface, i18n) and its parameters. `code` is the exit status the CLI gives."""

    def __init__(self, message: str, code: int = 1, **params: Any) -> None:
        super().__init__(message % params if params else message)
        self.message = message
        self.code = code
        self.params = params


@dataclass
class Manifest:
    """What a backup holds: when it was made, the service's schema revision, and each
    file's size and SHA-256 (databases with the moment each was copied)."""

    made_at: str
    schema: str | None
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Where the keys are: "file" (payload.key, seal.p12 in the backup), "settings"
    # (AGREEMENTS_PAYLOAD_KEYS, AGREEMENTS_SEAL_P12: the secret store's), or "none" yet.
    payload_keys: str = "none"
    seal: str = "none"

    def as_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "made_at": self.made_at,
            "schema": self.schema,
            "order": list(ORDER),
            "payload_keys": self.payload_keys,
            "seal": self.seal,
            "files": self.files,
        }


def production(config: Settings) -> bool:
    """A deployment whose data is not the embedded default's to copy: PostgreSQL, or a
    Temporal of its own (its persistence is the cluster's)."""
    return not config.embedded_temporal() or not config.db_url().startswith("sqlite:")


def refuse_production(config: Settings) -> None:
    if production(config):
        raise BackupError(
            N_(
                "this service's data is not the embedded default's (database %(database)s, "
                "Temporal at %(temporal)s): it is backed up with PostgreSQL's and Temporal's "
                "own tools (pg_dump, or a base backup with WAL archiving for a point in time; "
                "the Temporal cluster's persistence backups). Nothing was copied: see "
                'docs/operations.md, "Backup and restore"'
            ),
            2,
            database=shown(config.db_url()),
            temporal=config.temporal_target(),
        )


def database_path(config: Settings) -> Path:
    """The service's SQLite file (under the data folder unless AGREEMENTS_DATABASE_URL
    names another)."""
    name = make_url(config.db_url()).database
    if not name:
        raise BackupError(N_("the database is in memory: there is nothing to back up"))
    return Path(name)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def empty_or_absent(folder: Path) -> bool:
    return not folder.exists() or (folder.is_dir() and not any(folder.iterdir()))


def _private_folder(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder.chmod(0o700)


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database with SQLite's online backup API: it
    reads a snapshot under SQLite's own locking (waiting its turn while a writer commits),
    so another process may go on writing. The copy is one self-contained file (no WAL)
    and passes SQLite's quick check."""
    if not source.is_file():
        raise BackupError(N_("%(path)s is missing: there is nothing to back up"), path=source)
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(descriptor)
    with (
        contextlib.closing(sqlite3.connect(source, timeout=30)) as live,
        contextlib.closing(sqlite3.connect(":memory:")) as memory,
    ):
        # Into memory first, in one step: the source is read under one shared lock for
        # only as long as copying its pages in memory takes. Temporal's dev server keeps
        # its database in rollback-journal mode, where that lock holds its commits back
        # (they fail as busy, and Temporal retries them); writing the file and syncing it
        # to disk comes after the lock is let go.
        live.backup(memory)
        with contextlib.closing(sqlite3.connect(target)) as copy:
            memory.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")
            checked = copy.execute("PRAGMA quick_check").fetchone()
    if checked is None or checked[0] != "ok":
        raise BackupError(
            N_("the copy of %(path)s fails SQLite's check: %(problem)s"),
            path=source,
            problem=checked[0] if checked else "?",
        )


def schema_of(database: Path) -> str | None:
    """The Alembic revision the service's database is at."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        try:
            row = db.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.Error:
            return None
    return str(row[0]) if row else None


def _documents(folder: Path) -> Iterator[Path]:
    """The stored documents (whole files; a write under way is a hidden `.incoming-` file)."""
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            yield path


def backup(config: Settings, dest: Path) -> Manifest:
    """Copy the embedded default's data into `dest` (a new or empty folder): Temporal's
    database, then the service's (online backup API), then the documents, the payload key
    and the seal, and last the manifest. Everything 0600 in a 0700 folder."""
    refuse_production(config)
    if not empty_or_absent(dest):
        raise BackupError(
            N_("%(path)s exists and is not empty: a backup goes into a new folder"), path=dest
        )
    data = config.data_dir
    sources = {TEMPORAL_DB: data / TEMPORAL_DB, SERVICE_DB: database_path(config)}
    for source in sources.values():
        if not source.is_file():
            raise BackupError(N_("%(path)s is missing: there is nothing to back up"), path=source)
    made_here = not dest.exists()
    _private_folder(dest)
    try:
        return _backup(config, dest, sources)
    except BaseException:
        _clear(dest, made_here)
        raise


def _backup(config: Settings, dest: Path, sources: dict[str, Path]) -> Manifest:
    data = config.data_dir
    manifest = Manifest(made_at=now(), schema=None)
    for name in ORDER:
        copied_at = now()
        copy_database(sources[name], dest / name)
        manifest.files[name] = _entry(dest / name, copied_at=copied_at)
    manifest.schema = schema_of(dest / SERVICE_DB)
    # After the databases: a document is stored before anything names it, and never
    # removed, so every document either database names is here.
    for document in _documents(data / DOCUMENTS):
        name = document.relative_to(data).as_posix()
        target = dest / name
        _private_folder(target.parent)
        _copy_file(document, target)
        manifest.files[name] = _entry(target)
    # Copied whenever they are there, also when the settings name other keys: an older
    # history may still be sealed with the key file.
    for name in (KEY_FILE, SEAL_FILE):
        if (data / name).is_file():
            _copy_file(data / name, dest / name)
            manifest.files[name] = _entry(dest / name)
    manifest.payload_keys = kept(config.payload_keys is not None, KEY_FILE in manifest.files)
    manifest.seal = kept(config.seal_p12 is not None, SEAL_FILE in manifest.files)
    _write_private(dest / MANIFEST, json.dumps(manifest.as_json(), indent=2) + "\n")
    return manifest


def kept(in_settings: bool, in_backup: bool) -> str:
    """Where a key is kept: in the settings (the secret store's, not in the backup), in
    the backup, or nowhere yet (the seal is made with the first sealed record)."""
    return "settings" if in_settings else "file" if in_backup else "none"


def _entry(path: Path, **more: Any) -> dict[str, Any]:
    return {"sha256": sha256_of(path), "size": path.stat().st_size, **more}


def _copy_file(source: Path, target: Path) -> None:
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(descriptor, "wb") as out, source.open("rb") as data:
        shutil.copyfileobj(data, out)
        out.flush()
        os.fsync(out.fileno())


def _write_private(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(descriptor, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())


def _clear(folder: Path, remove: bool) -> None:
    """What a refused or failed backup or restore wrote: the folder was empty before."""
    if remove:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for entry in folder.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def read_manifest(src: Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((src / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise BackupError(
            N_(
                "%(path)s has no readable manifest.json: it is not a backup made by "
                "agreements backup"
            ),
            path=src,
        ) from None
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
        raise BackupError(
            N_("%(path)s: its manifest.json is not one agreements backup writes"), path=src
        )
    return manifest


def verify(src: Path, manifest: dict[str, Any]) -> None:
    """Every file the manifest lists is there with its SHA-256; else refused, naming it."""
    for name in ORDER:
        if name not in manifest["files"]:
            raise BackupError(N_("the backup has no %(file)s"), file=name)
    for name, entry in sorted(manifest["files"].items()):
        path = src / name
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise BackupError(
                N_("the manifest names a file outside the backup: %(file)s"), file=name
            )
        if not path.is_file():
            raise BackupError(N_("%(file)s is missing from the backup"), file=name)
        if sha256_of(path) != entry.get("sha256"):
            raise BackupError(
                N_(
                    "%(file)s has changed since the backup was made (its SHA-256 is not the "
                    "manifest's): nothing was restored"
                ),
                file=name,
            )


def known_schema(revision: str | None) -> bool:
    """Whether this version of the service knows the revision (an older one `agreements up`
    migrates; a newer one is another version's)."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from models.db import alembic_config

    if revision is None:
        return False
    try:
        return (
            ScriptDirectory.from_config(alembic_config("sqlite://")).get_revision(revision)
            is not None
        )
    except CommandError:
        return False


def restore(config: Settings, src: Path) -> dict[str, Any]:
    """Put the backup in `src` into the configured data folder, which must be empty or
    absent: the manifest's hashes checked first, then every file copied (0600, folders
    0700) and checked again. Returns the manifest."""
    refuse_production(config)
    manifest = read_manifest(src)
    verify(src, manifest)
    if not known_schema(manifest.get("schema")):
        raise BackupError(
            N_(
                "the backup's database is at schema %(schema)s, which this version of the "
                "service does not know: restore it with the version that made it"
            ),
            schema=manifest.get("schema") or "?",
        )
    data = config.data_dir
    if not empty_or_absent(data):
        raise BackupError(
            N_(
                "the data folder %(path)s is not empty: restore into an empty or new folder "
                "(AGREEMENTS_DATA_DIR)"
            ),
            path=data.resolve(),
        )
    service_db = database_path(config)
    outside = service_db.parent.resolve() != data.resolve()
    if outside and service_db.exists():
        raise BackupError(
            N_("%(path)s exists: the database is restored only where there is none"),
            path=service_db,
        )
    made_here = not data.exists()
    _private_folder(data)
    try:
        for name in manifest["files"]:
            target = service_db if name == SERVICE_DB else data / name
            _private_folder(target.parent)
            _copy_file(src / name, target)
        verify_restored(config, manifest)
    except BaseException:
        _clear(data, made_here)
        if outside:
            service_db.unlink(missing_ok=True)
        raise
    return manifest


def verify_restored(config: Settings, manifest: dict[str, Any]) -> None:
    for name, entry in manifest["files"].items():
        target = database_path(config) if name == SERVICE_DB else config.data_dir / name
        if sha256_of(target) != entry["sha256"]:
            raise BackupError(N_("%(file)s was not written whole: nothing was restored"), file=name)
