"""The step activity: what one step of an agreement decided, carried out in one activity
instead of one per kind of work (each activity is a round trip through Temporal and two
events in the agreement's history).

The terms, events and summary go in one transaction; then the emails of the moment go as
`Notifier.send_emails` sends a batch: one that meets a passing fault comes back as `retry`,
and the workflow sends it on its own with the email retry policy. A retried step writes
no row twice (every insert skips what is there) and sends no email twice (the outbox).
"""

from __future__ import annotations

import asyncio

from temporalio import activity

from activities.contracts import StepActivities
from activities.notify import Notifier
from activities.store import Store
from models.effects import Step
from models.lifecycle import SendResult


class Steps(StepActivities):
    def __init__(self, store: Store, notifier: Notifier) -> None:
        self.store = store
        self.notifier = notifier

    @activity.defn(name="carry_out_step")
    async def carry_out_step(self, step: Step) -> list[SendResult]:
        await asyncio.to_thread(self.store.write_step, step)
        if step.events or step.emails or step.terms:
            activity.logger.info(
                "step: %d events, %d emails, %d new terms",
                len(step.events),
                len(step.emails),
                len(step.terms),
            )
        if not step.emails:
            return []
        return await self.notifier.send_emails(step.emails)
