"""No worker is running when an agreement is handed over and its first emails fall due: the
worker that comes later sends them, late rather than never (a busy worker on the first of
the month is the same case)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agreements import ops
from agreements.simulate import free_port
from emails.sink import read_mail, start_sink
from models.config import Settings
from models.db import migrate
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


async def test_emails_due_before_the_first_task_still_go_out(
    dev_server: str, tmp_path: Path
) -> None:
    port = free_port()
    migrate(f"sqlite:///{tmp_path / 'agreements.db'}")
    sink = start_sink(tmp_path / "mail", port=port)
    worker = WorkerProcess(worker_env(dev_server, tmp_path, port))
    try:
        client = await ops.connect(Settings(temporal_address=dev_server))
        agreement = agreement_copy(0)
        instant = instants(agreement)[0]
        await start_due_soon(client, agreement, instant, 2)
        await asyncio.sleep(5)  # due 3 s ago, and no worker has run the agreement yet
        worker.start()
        planned = [e.key for e in await due_by(client, agreement.id, instant)]
        assert len(planned) >= 2

        def settled() -> bool:
            copies = delivered(read_mail(tmp_path / "mail"))
            return all(copies[k] >= 1 for k in planned)

        await asyncio.to_thread(wait_until, settled, 60, f"{len(planned)} late emails")
    finally:
        worker.stop()
        sink.stop()
    copies = tally(
        "first emails due before any worker ran the agreement", tmp_path / "mail", planned
    )
    assert set(copies) == set(planned) and set(copies.values()) == {1}
