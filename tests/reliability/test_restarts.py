"""The servers underneath go away and come back: the Temporal dev server stopped and started
again on its database file while timers are pending, and PostgreSQL stopped while the
activities need it. Every agreement resumes; nothing fires twice, nothing is skipped,
nothing is half-written."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

from sqlmodel import Session, select
from temporalio.client import WorkflowExecutionStatus

from agreements import ops
from agreements.simulate import free_port
from agreements.up import start_dev_server
from emails.sink import read_mail, start_sink
from models.config import Settings
from models.db import engine, migrate
from models.records import AgreementRecord, EventRecord, OutboxRecord, TermsRecord
from tests.conftest import wait_for_port
from tests.postgres import PostgresServer
from tests.reliability.harness import (
    WorkerProcess,
    agreement_copy,
    delivered,
    due_by,
    instants,
    start_due_soon,
    tally,
    wait_until,
    worker_env,
)
from workflows.agreement import workflow_id


class DevServer:
    """The Temporal dev server on a fixed port and database file, to stop and start again."""

    def __init__(self, folder: Path) -> None:
        self.config = Settings(
            data_dir=folder, temporal_port=free_port(), temporal_ui_port=free_port()
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return self.config.temporal_target()

    def start(self) -> None:
        self.process = start_dev_server(self.config, self.config.data_dir / "temporal.log")
        wait_for_port(self.config.temporal_port, self.process)

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(timeout=30)


async def test_the_temporal_server_restarts_while_timers_are_pending(tmp_path: Path) -> None:
    server = DevServer(tmp_path)
    server.start()
    port = free_port()
    url = f"sqlite:///{tmp_path / 'agreements.db'}"
    migrate(url)
    sink = start_sink(tmp_path / "mail", port=port)
    worker = WorkerProcess(worker_env(server.address, tmp_path, port))
    worker.start()
    try:
        client = await ops.connect(Settings(temporal_address=server.address))
        times = instants(agreement_copy(0))
        agreements = [agreement_copy(n) for n in range(10)]
        due = {a.id: times[n % len(times)] for n, a in enumerate(agreements)}
        # Due from 6 s to 20 s from now: some before the stop, most while the server is
        # away (they fire late, after it is back), some after.
        await asyncio.gather(
            *(start_due_soon(client, a, due[a.id], 6 + 1.5 * n) for n, a in enumerate(agreements))
        )
        planned = [
            e.key
            for emails in await asyncio.gather(*(due_by(client, i, t) for i, t in due.items()))
            for e in emails
        ]
        await asyncio.sleep(8)
        server.stop()
        await asyncio.sleep(8)
        server.start()
        client = await ops.connect(Settings(temporal_address=server.address))

        def settled() -> bool:
            copies = delivered(read_mail(tmp_path / "mail"))
            return all(copies[k] >= 1 for k in planned)

        await asyncio.to_thread(wait_until, settled, 240, f"{len(planned)} emails")
        await asyncio.sleep(3)
        for agreement in agreements:  # every agreement is still there and running
            described = await client.get_workflow_handle(workflow_id(agreement.id)).describe()
            assert described.status is not None and described.status.name == "RUNNING"
    finally:
        worker.stop()
        sink.stop()
        if server.process is not None and server.process.poll() is None:
            server.stop()
    copies = tally(
        "Temporal dev server stopped 8 s and restarted, timers pending", tmp_path / "mail", planned
    )
    assert set(copies) == set(planned) and set(copies.values()) == {1}, copies


async def test_postgresql_stopped_while_activities_need_it(
    dev_server: str, postgres: PostgresServer, tmp_path: Path
) -> None:
    url = postgres.new_database()
    migrate(url)
    port = free_port()
    sink = start_sink(tmp_path / "mail", port=port)
    worker = WorkerProcess(worker_env(dev_server, tmp_path, port, AGREEMENTS_DATABASE_URL=url))
    worker.start()
    stopped = False
    try:
        client = await ops.connect(Settings(temporal_address=dev_server))
        postgres.stop()
        stopped = True
        agreement = agreement_copy(0)
        times = instants(agreement)
        await start_due_soon(client, agreement, times[0], 12)
        planned = [e.key for e in await due_by(client, agreement.id, times[0])]
        handle = client.get_workflow_handle(workflow_id(agreement.id))

        async def failing_attempts() -> int:
            pending = (await handle.describe()).raw_description.pending_activities
            return max((p.attempt for p in pending), default=0)

        deadline = time.monotonic() + 30
        while await failing_attempts() < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        attempts = await failing_attempts()
        assert attempts >= 2, "the activities should be retrying while the database is away"
        # The workflow waits for its activities: still running, and no email went out
        # while its outbox row could not be written first.
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        assert read_mail(tmp_path / "mail") == []
        postgres.launch()
        stopped = False

        def settled() -> bool:
            with Session(engine(url)) as session:
                rows = session.exec(select(OutboxRecord)).all()
            return len(rows) == len(planned) and all(r.status == "sent" for r in rows)

        await asyncio.to_thread(wait_until, settled, 180, "the emails after the database is back")
    finally:
        if stopped:
            postgres.launch()
        worker.stop()
        sink.stop()
    with Session(engine(url)) as session:
        terms = session.exec(select(TermsRecord)).all()
        events = session.exec(select(EventRecord)).all()
        summary = session.get(AgreementRecord, agreement.id)
    assert len(terms) == 1 and summary is not None and summary.state == "active"
    assert len({e.event_key for e in events}) == len(events) > 0
    copies = tally(
        "PostgreSQL stopped while activities ran",
        tmp_path / "mail",
        planned,
        retried_attempts=attempts,
    )
    assert set(copies) == set(planned) and set(copies.values()) == {1}
