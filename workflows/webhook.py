"""One webhook delivery, tried until the receiver takes it: attempts with exponential
backoff and jitter for about three days (`SCHEDULE`), each one an activity that POSTs the
delivery's fixed body and records the answer (activities/webhooks.py).

The workflow sleeps between attempts rather than leaving them to an activity retry policy:
Temporal's retries have no jitter (many receivers down at once would all be retried at
the same moments), and each attempt's answer is written down as it comes. The activity
itself is retried forever only for what is the service's own trouble (its database away).

It never fails: it ends with what became of the delivery, `delivered`, `gone` (the
receiver answered 410, and its endpoint is turned off), `stopped` (the endpoint was turned
off), `failed` (no success in three days) or `missing`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from models.plan import Frozen

FIRST_DELAY = timedelta(seconds=30)
FACTOR = 4
LONGEST_DELAY = timedelta(hours=12)
JITTER = 0.2  # each delay drawn from ±20 % of its nominal length
WINDOW = timedelta(days=3)  # no attempt starts later than this after the first

ATTEMPT_TIMEOUT = timedelta(seconds=60)  # the attempt bounds its own request to 15 s
ATTEMPT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5)
)  # no maximum: only the service's own faults (its database) make the activity fail


def nominal_delay(attempt: int) -> timedelta:
    """How long after attempt `attempt` (1, 2, …) the next one comes, before jitter:
    30 s, 2 min, 8 min, 32 min, about 2 h, 8.5 h, then every 12 h."""
    nominal: timedelta = FIRST_DELAY * FACTOR ** min(attempt - 1, 10)
    return min(nominal, LONGEST_DELAY)


def jittered(attempt: int, draw: float) -> timedelta:
    return nominal_delay(attempt) * (1 - JITTER + 2 * JITTER * draw)


class DeliveryJob(Frozen):
    delivery_id: str
    resend: int = 0  # 0: the first run of attempts; n: the nth sent again by hand


class AttemptJob(Frozen):
    delivery_id: str
    at: datetime  # the attempt's moment, on the workflow's clock
    next_at: datetime | None  # when the next attempt comes if this one fails


def workflow_id(delivery_id: str, resend: int) -> str:
    return f"webhook-{delivery_id}" if resend == 0 else f"webhook-{delivery_id}-{resend}"


@workflow.defn(name="WebhookDelivery")
class WebhookDeliveryWorkflow:
    @workflow.run
    async def run(self, job: DeliveryJob) -> str:
        first = workflow.now()
        attempt = 0
        while True:
            attempt += 1
            now = workflow.now()
            delay = jittered(attempt, workflow.random().random())
            later = now + delay if now + delay - first <= WINDOW else None
            outcome: str = await workflow.execute_activity(
                "deliver_webhook",
                AttemptJob(delivery_id=job.delivery_id, at=now, next_at=later),
                result_type=str,
                start_to_close_timeout=ATTEMPT_TIMEOUT,
                retry_policy=ATTEMPT_RETRY,
            )
            if outcome != "retry":
                return outcome
            if later is None:
                failed: str = await workflow.execute_activity(
                    "webhook_gave_up",
                    job.delivery_id,
                    result_type=str,
                    start_to_close_timeout=ATTEMPT_TIMEOUT,
                    retry_policy=ATTEMPT_RETRY,
                )
                return failed
            await workflow.sleep(delay)
