"""An agreement never ends FAILED: a signature round terminated by an operator becomes a
round outcome the coordinator is told of, and work that fails after every retry becomes an
alert and is tried again later. Real dev server, real worker, real mail sink."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi.testclient import TestClient
from sqlmodel import Session
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities.notify import Notifier
from activities.steps import Steps
from activities.store import Store
from agreements.simulate import free_port
from emails.sink import read_mail, start_sink
from models.config import Settings, binary
from models.db import migrate
from models.effects import Summary
from models.lifecycle import RoundOutcome, State
from models.loader import load_agreement
from models.prerequisites import CHECKLIST
from tests.conftest import Temporal
from tests.test_web import AUTH, links, start
from worker import WORKFLOWS, workflow_runner
from workflows.agreement import (
    AgreementInput,
    AgreementWorkflow,
    ConfirmPrerequisites,
    Snapshot,
    StartSigning,
)

ROOT = Path(__file__).resolve().parent.parent


def sent(mail: Path, template: str) -> list[str]:
    return [
        str(m["X-Sink-Recipient"]) for m in read_mail(mail) if m["X-Agreement-Template"] == template
    ]


def wait_for(check, seconds: float = 30):
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_a_terminated_round_is_an_outcome_and_a_new_round_can_start(
    web: tuple[TestClient, Path], service_env: dict[str, str]
) -> None:
    client, mail = web
    start(client)
    links(mail, 6)
    snapshot = client.get("/api/agreements/planteringen", headers=AUTH).json()
    round_id = snapshot["round_workflow_id"]
    terminated = subprocess.run(
        [
            binary("temporal"),
            "workflow",
            "terminate",
            "--address",
            service_env["AGREEMENTS_TEMPORAL_ADDRESS"],
            "--namespace",
            service_env["AGREEMENTS_TEMPORAL_NAMESPACE"],
            "--workflow-id",
            round_id,
            "--reason",
            "an operator in the Web UI",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert terminated.returncode == 0, terminated.stderr

    def back_to_draft() -> dict[str, object] | None:
        data = client.get("/api/agreements/planteringen", headers=AUTH).json()
        return data if data["state"] == "draft" else None

    data = wait_for(back_to_draft)
    assert data, "the agreement went back to draft"
    assert data["round"]["outcome"] == RoundOutcome.failed.value
    coordinator = load_agreement(ROOT / "examples" / "planteringen.toml").coordinator.email
    assert wait_for(lambda: sent(mail, "signature_failed")) == [coordinator]
    # A new round starts, with new links for everyone.
    again = client.post("/api/agreements/planteringen/signing", headers=AUTH)
    assert again.status_code == 200, again.text
    assert again.json()["round"]["number"] == 2
    assert wait_for(lambda: len(sent(mail, "signature_request")) >= 12)
    assert sent(mail, "signature_failed") == [coordinator], "told once"


class BrokenStore(Store):
    """The read model refuses for good (a stand-in for a schema a migration broke)."""

    def _write_summary(self, session: Session, summary: Summary) -> None:
        raise ApplicationError("the agreements table is read-only", non_retryable=True)


@asynccontextmanager
async def broken_worker(temporal: Temporal, tmp_path: Path) -> AsyncIterator[tuple[Client, Path]]:
    """A worker whose writes of the agreement list always fail; everything else is real."""
    config = Settings(
        temporal_address=temporal.address,
        temporal_namespace=temporal.namespace,
        data_dir=tmp_path / "data",
        smtp_port=free_port(),
        task_queue="broken",
    )
    config.data_dir.mkdir(parents=True)
    migrate(config.db_url())
    sink = start_sink(config.data_dir / "mail", port=config.smtp_port)
    client = await Client.connect(
        temporal.address, namespace=temporal.namespace, data_converter=pydantic_data_converter
    )
    store = BrokenStore(config.db_url())
    notifier = Notifier(config)
    worker = Worker(
        client,
        task_queue=config.task_queue,
        workflows=WORKFLOWS,
        activities=[
            store.save_terms,
            store.record_event,
            store.record_events,
            store.update_summary,
            notifier.send_email,
            notifier.send_emails,
            Steps(store, notifier).carry_out_step,
        ],
        workflow_runner=workflow_runner(),
    )
    try:
        async with worker:
            yield client, config.data_dir / "mail"
    finally:
        sink.stop()


async def test_work_that_fails_for_good_alerts_the_coordinator_and_the_agreement_runs_on(
    temporal: Temporal, tmp_path: Path
) -> None:
    agreement = load_agreement(ROOT / "examples" / "planteringen.toml")
    async with broken_worker(temporal, tmp_path) as (client, mail):
        handle = await client.start_workflow(
            AgreementWorkflow.run,
            AgreementInput(agreement=agreement),
            id="agreement-planteringen",
            task_queue="broken",
        )
        for _ in range(300):
            if sent(mail, "service_alert"):
                break
            await asyncio.sleep(0.1)
        assert sent(mail, "service_alert") == [agreement.coordinator.email]
        state: Snapshot = await handle.query(AgreementWorkflow.get_state)
        assert state.alert is not None and "agreement list" in state.alert
        # Decisions are still taken and answered; their effects wait for the retry.
        answer = await handle.execute_update(
            AgreementWorkflow.confirm_prerequisites, ConfirmPrerequisites(keys=list(CHECKLIST))
        )
        assert answer.prerequisites_missing == []
        signing: Snapshot = await handle.execute_update(
            "start_signing", StartSigning(), result_type=Snapshot
        )
        assert signing.state is State.signing
        described = await handle.describe()
        assert described.status is WorkflowExecutionStatus.RUNNING
        assert sent(mail, "service_alert") == [agreement.coordinator.email], "told once"
