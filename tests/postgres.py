"""A throwaway PostgreSQL server for the tests: Debian's binaries, a cluster in a temporary
folder, listening on a loopback port only, trusted local logins, stopped afterwards.

PostgreSQL refuses to run as root; as root the cluster belongs to the `postgres` system user
that Debian's package creates.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from pathlib import Path

from agreements.simulate import free_port

USER = "agreements"


def binaries() -> Path | None:
    """The folder with initdb and pg_ctl: on PATH, or Debian's newest version."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return versions[-1].parent if versions else None


def unavailable() -> str | None:
    """Why a server cannot be had here, or None when it can."""
    if binaries() is None:
        return "PostgreSQL is not installed (python3.11 tasks.py test installs it as root)"
    if os.geteuid() == 0 and not _system_user():
        return "running as root and there is no postgres system user to own the cluster"
    return None


def _system_user() -> bool:
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        return False
    return True


class PostgresServer:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.port = free_port()
        self.bin = binaries()
        self._names = itertools.count(1)
        assert self.bin is not None, unavailable()

    def _run(self, *args: str) -> None:
        command = [*args]
        if os.geteuid() == 0:  # initdb and postgres will not run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode:
            raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout}{result.stderr}")

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        assert self.bin is not None
        self._run(
            str(self.bin / "initdb"),
            "--pgdata",
            str(self.data),
            "--username",
            USER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-sync",
        )
        self.launch()

    def launch(self) -> None:
        """Start the server on its cluster (again, after `stop`)."""
        assert self.bin is not None
        options = f"-h 127.0.0.1 -p {self.port} -k {self.folder} -F -c max_connections=200"
        self._run(
            str(self.bin / "pg_ctl"),
            "--pgdata",
            str(self.data),
            "--options",
            options,
            "--log",
            str(self.folder / "server.log"),
            "--wait",
            "--timeout",
            "60",
            "start",
        )

    def stop(self) -> None:
        assert self.bin is not None
        self._run(str(self.bin / "pg_ctl"), "--pgdata", str(self.data), "-m", "fast", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database on this server; its URL."""
        import psycopg

        name = f"test_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
