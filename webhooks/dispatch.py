"""Starting the attempts: every worker looks for deliveries whose `WebhookDelivery`
workflow has not been started, and starts it under an id made from the delivery (and the
resend), so two workers, or a worker that stops between starting and marking, never start
two: the second start finds the first and only marks the row.

A delivery is written with the event that announces it, in one transaction, so none is
lost however the worker stops; this loop only makes it go out within about a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError

from models.config import Settings
from models.db import ready
from webhooks import registry
from workflows.webhook import DeliveryJob, WebhookDeliveryWorkflow, workflow_id

log = logging.getLogger("agreements.webhooks")


async def start_waiting(client: Client, config: Settings) -> int:
    """Start the workflows of the deliveries waiting for one; how many were marked."""
    db = ready(config.db_url())
    waiting = await asyncio.to_thread(registry.unstarted, db)
    started: list[tuple[str, int]] = []
    for delivery in waiting:
        # Already started: by another worker, or by this one before it could mark the row
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await client.start_workflow(
                WebhookDeliveryWorkflow.run,
                DeliveryJob(delivery_id=delivery.id, resend=delivery.resends),
                id=workflow_id(delivery.id, delivery.resends),
                task_queue=config.task_queue,
            )
        started.append((delivery.id, delivery.resends))
    if started:
        await asyncio.to_thread(registry.mark_started, db, started)
    return len(started)


async def keep_starting(client: Client, config: Settings) -> None:
    """Until cancelled: start what waits, then look again after the poll interval. A
    database or Temporal that is away is waited for (and said in the log once a minute)."""
    quiet_until = 0.0
    loop = asyncio.get_running_loop()
    while True:
        try:
            await start_waiting(client, config)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # RPCError, a database away, a server gone meanwhile
            if loop.time() >= quiet_until:
                log.warning("webhook deliveries not started yet: %s", error)
                quiet_until = loop.time() + 60
        await asyncio.sleep(config.webhooks_poll_seconds)
