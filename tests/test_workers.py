"""Several workers, one Temporal server, one database: two worker processes share the task
queue of the real dev server (not time-skipping) while a few dozen agreements go through
their signature rounds, on SQLite and on PostgreSQL. Every email reaches the mail server
exactly once, whichever worker sent it (how the queue shares the work between them is
Temporal's business: one worker may well send them all)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

from sqlmodel import Session, select

from agreements import ops
from agreements.simulate import free_port
from emails.links import read_link
from emails.sink import read_mail, start_sink
from models.config import Settings
from models.db import engine, migrate
from models.loader import loads_agreement
from models.records import OutboxRecord
from tests.conftest import ROOT
from tests.mail import signing_requests
from tests.reliability.harness import all_sent_and_idle, until
from tests.test_commands import FUTURE
from workflows.agreement import StartSigning, round_workflow_id, workflow_id
from workflows.signing import PaperSignature, SignRequest

AGREEMENTS = 30
SIGNERS = ("maria@kommun.example.se", "saul@forening.example.se")
# Per agreement: a signing request to each signer, a receipt to the first who signs, then the
# completion to both signers and the coordinator.
EXPECTED = {"signature_request": 2, "signature_receipt": 1, "signature_completed": 3}


def terms(number: int) -> str:
    text = FUTURE.replace('id = "kommande"', f'id = "avtal-{number:02d}"')
    text = text.replace(
        "budget-plan = true", "budget-plan = true\nfollow-up-plan = true\ntrust = true"
    )
    return text.replace('method = "paper"', 'method = "link"')


def links(mail: Path) -> dict[tuple[str, str], str]:
    """(agreement, signer) -> the signed value of their personal link, from the sink."""
    return {(a, s): url.rsplit("/", 1)[1] for a, s, url in signing_requests(mail)}


async def test_two_workers_send_every_email_once(
    dev_server: str, database_url: str, tmp_path: Path
) -> None:
    mail = tmp_path / "mail"
    port = free_port()
    env = {
        **os.environ,
        "AGREEMENTS_TEMPORAL_ADDRESS": dev_server,
        "AGREEMENTS_DATABASE_URL": database_url,
        "AGREEMENTS_SMTP_PORT": str(port),
        "AGREEMENTS_DATA_DIR": str(tmp_path / "data"),
    }
    config = Settings(temporal_address=dev_server, database_url=database_url, smtp_port=port)
    sink = start_sink(mail, port=port)
    migrate(database_url)  # as a deployment does, once, before the workers start
    workers = [
        subprocess.Popen(
            [sys.executable, "worker.py"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            line = worker.stdout.readline()
            assert line.startswith("worker on"), line + (
                worker.stderr.read() if worker.stderr else ""
            )
        client = await ops.connect(config)
        ids = [f"avtal-{n:02d}" for n in range(AGREEMENTS)]
        await asyncio.gather(
            *(
                ops.create(client, config, loads_agreement(terms(n), f"avtal-{n:02d}.toml"))
                for n in range(AGREEMENTS)
            )
        )
        await asyncio.gather(*(ops.decide(client, i, "start_signing", StartSigning()) for i in ids))
        await until(lambda: len(links(mail)) == 2 * AGREEMENTS, 120, "every signing request")

        # Saul signs from his emailed link; Maria's signature arrives on paper.
        secret = config.signing_secret.get_secret_value()
        now = dt.datetime.now(dt.UTC)
        saul = {
            a: read_link(secret, value, now)
            for (a, s), value in links(mail).items()
            if s == SIGNERS[1]
        }
        await asyncio.gather(
            *(
                ops.round_action(client, a, "sign", SignRequest(token=link.token))
                for a, link in saul.items()
            )
        )
        paper = PaperSignature(
            signer=SIGNERS[0], signed_on=dt.date.today(), recorded_by="coordinator"
        )
        await asyncio.gather(*(ops.round_action(client, a, "sign_paper", paper) for a in ids))

        async def all_signed() -> bool:
            states = await asyncio.gather(*(ops.state(client, a) for a in ids))
            return {s.state for s in states} == {"signed"}

        await until(all_signed, 120, "every agreement signed")
        total = AGREEMENTS * sum(EXPECTED.values())
        await until(lambda: len(read_mail(mail)) >= total, 120, f"{total} emails in the sink")
        # No copy can still be on its way: every outbox row says sent and neither the
        # agreements nor their rounds have an activity or a workflow task left; the workers
        # then stop, so what the sink holds below is all there will ever be.
        with Session(engine(database_url)) as session:
            keys = [r.key for r in session.exec(select(OutboxRecord))]
        rounds = [round_workflow_id(a, 1) for a in ids]
        await all_sent_and_idle(
            client, database_url, mail, keys, [*map(workflow_id, ids), *rounds], 120
        )
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.communicate(timeout=60)
        sink.stop()

    messages = read_mail(mail)
    by_id = Counter(str(m["Message-ID"]) for m in messages)
    assert len(messages) == total and set(by_id.values()) == {1}, by_id.most_common(3)
    per_agreement = Counter(
        (str(m["X-Agreement-Id"]), str(m["X-Agreement-Template"])) for m in messages
    )
    assert per_agreement == Counter({(a, t): n for a in ids for t, n in EXPECTED.items()})
    with Session(engine(database_url)) as session:
        rows = session.exec(select(OutboxRecord)).all()
    assert {r.status for r in rows} == {"sent"}
    assert {r.message_id for r in rows} == set(by_id)
    # Each was sent by one of the two workers (which one, and how many each, is up to the
    # queue); a row no worker of ours claimed would be an email sent some other way.
    ours = {f"{socket.gethostname()}:{w.pid}" for w in workers}
    assert {r.worker for r in rows} <= ours, ({r.worker for r in rows}, ours)
