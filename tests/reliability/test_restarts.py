"""The servers underneath go away and come back: the Temporal dev server stopped and started
again on its database file while timers are pending, and PostgreSQL stopped while the
activities need it. Every agreement resumes; nothing fires twice, nothing is skipped,
nothing is half-written."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import Counter
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
    all_sent_and_idle,
    delivered,
    due_by,
    instants,
    start_due_soon,
    tally,
    until,
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
    mail = tmp_path / "mail"
    migrate(url)
    sink = start_sink(mail, port=port)
    worker = WorkerProcess(worker_env(server.address, tmp_path, port))
    worker.start()
    try:
        client = await ops.connect(Settings(temporal_address=server.address))
        times = instants(agreement_copy(0))
        agreements = [agreement_copy(n) for n in range(10)]
        due = {a.id: times[n % len(times)] for n, a in enumerate(agreements)}
        lead = {a.id: 6 + 1.5 * n for n, a in enumerate(agreements)}
        # Due from 6 s to 20 s from now: some before the stop, some while the server is away
        # (they fire late, after it is back), some after. Each falls due between
        # `began + lead` and `started + lead` on the monotonic clock.
        began = time.monotonic()
        await asyncio.gather(
            *(start_due_soon(client, a, due[a.id], lead[a.id]) for a in agreements)
        )
        started = time.monotonic()
        planned_by = {
            i: [e.key for e in emails]
            for i, emails in zip(
                due,
                await asyncio.gather(*(due_by(client, i, t) for i, t in due.items())),
                strict=True,
            )
        }
        planned = [k for keys in planned_by.values() for k in keys]

        def copies() -> Counter[str]:
            return delivered(read_mail(mail))

        # Stop the server once the first agreement's emails are out (all was working) ...
        first = agreements[0].id
        await until(
            lambda: all(copies()[k] for k in planned_by[first]), 60, "the first agreement's emails"
        )
        server.stop()
        stopped = time.monotonic()
        # ... and keep it away until the timers of up to three agreements that had not yet
        # fallen due at the stop have fallen due.
        away = [i for i in due if began + lead[i] > stopped][:3]
        assert away, f"every timer fell due before the stop ({stopped - began:.1f} s): none pending"
        await until(lambda: time.monotonic() > started + lead[away[-1]] + 0.5, 60, "timers due")
        late = copies()
        assert not any(late[k] for i in away for k in planned_by[i]), "sent with no server?"
        server.start()
        back = time.monotonic()
        client = await ops.connect(Settings(temporal_address=server.address))
        # Every email out once, its outbox row sent, and no workflow with anything in flight
        # (no retry, no task): after that the worker stops, and the count is final.
        await all_sent_and_idle(
            client, url, mail, planned, [workflow_id(a.id) for a in agreements], 240
        )
        for agreement in agreements:  # every agreement is still there and running
            described = await client.get_workflow_handle(workflow_id(agreement.id)).describe()
            assert described.status == WorkflowExecutionStatus.RUNNING, (agreement.id, described)
    finally:
        worker.stop()
        sink.stop()
        if server.process is not None and server.process.poll() is None:
            server.stop()
    copies_now = tally(
        "Temporal dev server stopped and restarted, timers pending",
        mail,
        planned,
        away_seconds=round(back - stopped, 1),
        fell_due_while_away=len(away),
    )
    assert set(copies_now) == set(planned) and set(copies_now.values()) == {1}, copies_now


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

        async def failing_attempts_at_least(count: int) -> bool:
            return await failing_attempts() >= count

        # The activities retry while the database is away (bounded: fails if they do not).
        await until(
            lambda: failing_attempts_at_least(2), 30, "the activities retrying without a database"
        )
        attempts = await failing_attempts()
        # The workflow waits for its activities: still running, and no email went out
        # while its outbox row could not be written first.
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        assert read_mail(tmp_path / "mail") == []
        postgres.launch()
        stopped = False

        # Every email out once, its outbox row sent, nothing in flight: the count is final.
        await all_sent_and_idle(client, url, tmp_path / "mail", planned, [handle.id], 180)
        with Session(engine(url)) as session:
            rows = session.exec(select(OutboxRecord)).all()
        assert sorted(r.key for r in rows) == sorted(planned), [r.key for r in rows]
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
