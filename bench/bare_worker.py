"""`python -m bench.bare_worker`: a worker for the bare waiting workflow alone, in its own
process, the memory benchmark's baseline beside `python worker.py`. It reads the same
variables (Temporal address, task queue, max cached workflows) and stops on SIGTERM.

Temporal's defaults otherwise (the sandbox, the JSON converter), except that the workflow's
module is passed through, as ours are (worker.PASSTHROUGH): a run then holds what Temporal
itself needs for it, not a fresh copy of the module."""

from __future__ import annotations

import asyncio
import os
import signal

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from bench.bare import BareWaiting


async def serve() -> None:
    address = os.environ["AGREEMENTS_TEMPORAL_ADDRESS"]
    task_queue = os.environ["AGREEMENTS_TASK_QUEUE"]
    client = await Client.connect(address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[BareWaiting],
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules("bench.bare")
        ),
        max_cached_workflows=int(os.environ.get("AGREEMENTS_MAX_CACHED_WORKFLOWS", "1000")),
    )
    print(f"worker on {address}, task queue {task_queue}", flush=True)
    async with worker:
        await stop.wait()
    print("worker stopped", flush=True)


if __name__ == "__main__":
    asyncio.run(serve())
    # As worker.leave: no interpreter shutdown under the client's threads.
    os._exit(0)
