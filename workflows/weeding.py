"""Gallring: one run pseudonymises the signers' IP addresses and user agents older than
the retention period, and clears the kept messages of emails sent longer ago than the
message retention (AGREEMENTS_MESSAGE_RETENTION_DAYS, the worker's setting; their hashes
stay) (activities/weeding.py). Started daily by the Temporal schedule
`agreements-weeding` that the worker creates (worker.py `weeding_schedule`).

It never fails: the activity is retried with backoff for as long as it takes (a database
that is away is waited for), and what it weeds is idempotent, so a retry or the next
day's run only finishes the work.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from models.plan import Frozen

WEED_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5)
)  # no maximum of attempts: retried forever, as the store's activities are
WEED_TIMEOUT = timedelta(minutes=10)


class WeedingInput(Frozen):
    retention_days: int  # traces of events older than this many days are pseudonymised


@workflow.defn(name="Weeding")
class WeedingWorkflow:
    @workflow.run
    async def run(self, data: WeedingInput) -> int:
        """How many traces were pseudonymised."""
        weeded = 0
        if data.retention_days > 0:
            before = workflow.now() - timedelta(days=data.retention_days)
            weeded = await workflow.execute_activity(
                "weed_signer_traces",
                before,
                result_type=int,
                start_to_close_timeout=WEED_TIMEOUT,
                retry_policy=WEED_RETRY,
            )
        # Runs recorded before messages were kept replay without this step.
        if workflow.patched("weed-messages"):
            cleared: int = await workflow.execute_activity(
                "weed_outbox_messages",
                workflow.now(),
                result_type=int,
                start_to_close_timeout=WEED_TIMEOUT,
                retry_policy=WEED_RETRY,
            )
            workflow.logger.info("weeding: %d traces, %d messages", weeded, cleared)
        return weeded
