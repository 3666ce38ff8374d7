"""No worker is running when an agreement is handed over and its first emails fall due: the
worker that comes later sends them, late rather than never (a busy worker on the first of
the month is the same case)."""

from __future__ import annotations

import time
from pathlib import Path

from agreements import ops
from agreements.simulate import free_port
from emails.sink import start_sink
from models.config import Settings
from models.db import migrate
from tests.reliability.harness import (
    WorkerProcess,
    agreement_copy,
    all_sent_and_idle,
    instants,
    promised_by,
    start_due_soon,
    tally,
    until,
    worker_env,
)
from workflows.agreement import workflow_id


async def test_emails_due_before_the_first_task_still_go_out(
    dev_server: str, tmp_path: Path
) -> None:
    port = free_port()
    url = f"sqlite:///{tmp_path / 'agreements.db'}"
    migrate(url)
    sink = start_sink(tmp_path / "mail", port=port)
    worker = WorkerProcess(worker_env(dev_server, tmp_path, port))
    try:
        client = await ops.connect(Settings(temporal_address=dev_server))
        agreement = agreement_copy(0)
        instant = instants(agreement)[0]
        await start_due_soon(client, agreement, instant, 2)
        started = time.monotonic()
        handle = client.get_workflow_handle(workflow_id(agreement.id))
        # Until the emails are due (2 s after the start, on the agreement's clock) ...
        await until(lambda: time.monotonic() > started + 2.5, 10, "the emails falling due")
        # ... with the agreement never run: started, its first task waiting, nothing more.
        raw = (await handle.describe()).raw_description
        assert raw.workflow_execution_info.history_length == 2, "a worker ran it already"
        planned = promised_by(agreement, instant, 2)
        assert len(planned) >= 2
        worker.start()
        # Every email out once, its outbox row sent, nothing in flight: the count is final.
        await all_sent_and_idle(client, url, tmp_path / "mail", planned, [handle.id], 60)
    finally:
        worker.stop()
        sink.stop()
    copies = tally(
        "first emails due before any worker ran the agreement", tmp_path / "mail", planned
    )
    assert set(copies) == set(planned) and set(copies.values()) == {1}
