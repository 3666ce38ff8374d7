"""Workers killed with SIGKILL while agreements run on the real dev server: every email the
workflows planned reaches the mail server exactly once, and a kill after the mail server
took a message but before the worker heard back never leads to a second copy."""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession
from sqlmodel import Session, select

from agreements.ops import connect
from agreements.simulate import free_port
from emails.sink import MaildirHandler, read_mail, start_sink
from models.config import Settings
from models.db import engine, migrate
from models.records import OutboxRecord
from tests.reliability.harness import (
    WorkerProcess,
    agreement_copy,
    all_sent_and_idle,
    delivered,
    due_by,
    instants,
    report,
    start_due_soon,
    tally,
    until,
    worker_env,
)
from workflows.agreement import workflow_id

AGREEMENTS = 50


def outbox(url: str) -> dict[str, OutboxRecord]:
    with Session(engine(url)) as session:
        return {r.key: r for r in session.exec(select(OutboxRecord))}


async def test_workers_killed_at_random_lose_and_double_nothing(
    dev_server: str, tmp_path: Path
) -> None:
    seed = int(os.environ.get("RELIABILITY_SEED", time.time()))
    rng = random.Random(seed)
    port = free_port()
    url = f"sqlite:///{tmp_path / 'agreements.db'}"
    migrate(url)
    sink = start_sink(tmp_path / "mail", port=port)
    worker = WorkerProcess(worker_env(dev_server, tmp_path, port))
    worker.start()
    try:
        client = await connect(Settings(temporal_address=dev_server))
        times = instants(agreement_copy(0))
        agreements = [agreement_copy(n) for n in range(AGREEMENTS)]
        due = {a.id: times[n % len(times)] for n, a in enumerate(agreements)}
        # Emails fall due from 10 s to 35 s from now, while the worker is being killed.
        await asyncio.gather(
            *(
                start_due_soon(client, a, due[a.id], 10 + 25 * n / AGREEMENTS)
                for n, a in enumerate(agreements)
            )
        )
        planned = [
            e.key
            for emails in await asyncio.gather(*(due_by(client, i, t) for i, t in due.items()))
            for e in emails
        ]
        assert len(planned) >= 2 * AGREEMENTS

        chaos_ends = time.monotonic() + 45
        while time.monotonic() < chaos_ends:
            await asyncio.sleep(rng.uniform(0.5, 4))
            worker.kill()
            await asyncio.sleep(rng.uniform(0, 1.5))
            worker.start()

        # An email being sent at a kill is retried once its attempt times out (90 s). Then
        # every email is out, its outbox row sent, and no workflow has an activity or a task
        # in flight that could send a late copy: once the worker stops, the count is final.
        ids = [workflow_id(a.id) for a in agreements]
        await all_sent_and_idle(client, url, tmp_path / "mail", planned, ids, 300)
    finally:
        worker.stop()
        sink.stop()

    copies = delivered(read_mail(tmp_path / "mail"))
    lost = [k for k in planned if copies[k] == 0]
    doubled = [k for k, n in copies.items() if n > 1]
    unplanned = [k for k in copies if k not in set(planned)]
    report(
        "worker killed at random (SIGKILL), 50 agreements",
        seed=seed,
        kills=worker.kills,
        planned=len(planned),
        delivered=sum(copies.values()),
        duplicated=len(doubled),
        lost=len(lost),
    )
    assert worker.kills >= 5, f"seed {seed}: only {worker.kills} kills"
    assert not lost and not doubled and not unplanned, (seed, lost, doubled, unplanned)
    assert len(set(planned)) == len(planned) == sum(copies.values())


class KillsAfterAccepting(MaildirHandler):
    """Takes the first message, then kills the worker before it can hear the answer."""

    def __init__(self, folder: Path, worker: WorkerProcess) -> None:
        super().__init__(folder)
        self.worker = worker
        self.killed: str | None = None

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        if self.killed is None:
            self.killed = str(envelope.rcpt_tos[0])
            os.kill(self.worker.pid, 9)
        return answer


async def test_a_kill_after_the_mail_server_took_the_message_sends_no_second_copy(
    dev_server: str, tmp_path: Path
) -> None:
    port = free_port()
    url = f"sqlite:///{tmp_path / 'agreements.db'}"
    migrate(url)
    worker = WorkerProcess(worker_env(dev_server, tmp_path, port))
    handler = KillsAfterAccepting(tmp_path / "mail", worker)
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    worker.start()
    try:
        client = await connect(Settings(temporal_address=dev_server))
        agreement = agreement_copy(0)
        instant = instants(agreement)[0]
        await start_due_soon(client, agreement, instant, 3)
        planned = [e.key for e in await due_by(client, agreement.id, instant)]
        await until(lambda: handler.killed, 60, "the first email")
        assert worker.process is not None
        worker.process.wait(timeout=30)
        worker.start()

        # Every email out, its outbox row sent, nothing in flight: the count below is final.
        ids = [workflow_id(agreement.id)]
        await all_sent_and_idle(client, url, tmp_path / "mail", planned, ids, 300)
    finally:
        worker.stop()
        controller.stop()

    rows = outbox(url)
    name = "worker killed after the mail server took the message"
    copies = tally(name, tmp_path / "mail", planned)
    assert set(copies) == set(planned) and set(copies.values()) == {1}, copies
    # The worker sends several emails at once: any other message it had handed over when
    # it died is unconfirmed too, and (above) was delivered exactly once all the same.
    unconfirmed = [r for r in rows.values() if r.error and "not sent again" in r.error]
    assert handler.killed in [r.recipient for r in unconfirmed], unconfirmed
    assert all(copies[r.key] == 1 for r in unconfirmed)
    assert all(rows[k].status == "sent" for k in planned)
