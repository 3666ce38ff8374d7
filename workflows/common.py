"""What the agreement workflow and its signature rounds share: the clock, and the calls to
the activities (sending email, writing the event log, the terms and the read model), each
with its retry policy and result type."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.contracts import (
        EmailActivities,
        RecordActivities,
        StepActivities,
        StoreActivities,
    )
    from models.effects import EventIn, SaveTerms, Step, Summary
    from models.lifecycle import Attachment, EmailSpec, RecordRequest, SendOutcome, SendResult
    from models.schedule import dates

# Transient SMTP trouble (connection refused, 421, 451, timeouts) is retried with backoff for
# up to three days; a permanent refusal comes back as a result, never as a retry.
EMAIL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=10),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=30),
    non_retryable_error_types=["TermsMissing"],
)
EMAIL_TIMEOUT = timedelta(seconds=90)
EMAIL_DEADLINE = timedelta(days=3)
STORE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5)
)
STORE_TIMEOUT = timedelta(seconds=60)
# A database that is away longer than this (or refuses for good) makes the agreement alert
# its coordinator and try again later, instead of retrying silently forever.
STORE_DEADLINE = timedelta(minutes=30)

T = TypeVar("T")


class Clock:
    """`workflow.now()` plus an offset: zero in production; a simulation of an agreement
    that lies in the past runs the real workflow code on the agreement's own dates."""

    def __init__(self, offset_seconds: float) -> None:
        self.offset = timedelta(seconds=offset_seconds)

    def now(self) -> dt.datetime:
        return (workflow.now() + self.offset).astimezone(dates.STOCKHOLM)

    def until(self, moment: dt.datetime) -> timedelta:
        return max(moment - self.now(), timedelta(0))


async def send_email(spec: EmailSpec) -> SendResult:
    """Send once; an email the mail server would not take after three days counts as failed."""
    try:
        result = await workflow.execute_activity_method(
            EmailActivities.send_email,
            spec,
            start_to_close_timeout=EMAIL_TIMEOUT,
            schedule_to_close_timeout=EMAIL_DEADLINE,
            retry_policy=EMAIL_RETRY,
        )
        return result
    except Exception as error:  # ActivityError once every retry is spent
        cause = getattr(error, "cause", None) or error
        return SendResult(
            key=spec.key,
            outcome=SendOutcome.failed,
            message_id="",
            subject=spec.template,
            error=str(cause),
        )


# Sealing the signing record: a few seconds' work; a store or database away is waited for
# up to an hour, then the completion emails go without it (the record is made again from
# the agreement's page: never a reason to hold the round's outcome back for long).
RECORD_TIMEOUT = timedelta(minutes=2)
RECORD_DEADLINE = timedelta(hours=1)


async def sealed_record(request: RecordRequest) -> Attachment | None:
    """The round's sealed signing record, or None when it could not be made."""
    try:
        result: Attachment = await workflow.execute_activity_method(
            RecordActivities.seal_record,
            request,
            start_to_close_timeout=RECORD_TIMEOUT,
            schedule_to_close_timeout=RECORD_DEADLINE,
            retry_policy=STORE_RETRY,
        )
        return result
    except Exception as error:  # ActivityError once every retry is spent
        workflow.logger.warning("no signing record: %s", getattr(error, "cause", None) or error)
        return None


BATCH_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=2)


async def send_emails(specs: list[EmailSpec]) -> list[SendResult] | None:
    """Several emails in one activity; None if the batch itself could not run (a crashed
    worker, twice), and then each is sent on its own."""
    try:
        results = await workflow.execute_activity_method(
            EmailActivities.send_emails,
            specs,
            start_to_close_timeout=EMAIL_TIMEOUT + timedelta(seconds=len(specs)),
            retry_policy=BATCH_RETRY,
        )
        return results
    except Exception:  # ActivityError: the emails go one by one instead
        return None


async def wait_until(clock: Clock, woken: Callable[[], bool], moment: dt.datetime) -> bool:
    """Sleep until `moment` on the clock, or less if `woken()` turns true: says which."""
    try:
        await workflow.wait_condition(woken, timeout=clock.until(moment))
    except TimeoutError:
        return False
    return True


async def store(
    activity: Callable[[Any, T], Awaitable[None]],
    payload: T,
    deadline: timedelta | None = STORE_DEADLINE,
) -> None:
    """Run one persistence activity; with a deadline, it raises once that has passed."""
    await workflow.execute_activity_method(
        activity,
        payload,
        start_to_close_timeout=STORE_TIMEOUT,
        schedule_to_close_timeout=deadline,
        retry_policy=STORE_RETRY,
    )


async def record_all(events: list[EventIn], deadline: timedelta | None = STORE_DEADLINE) -> None:
    await store(StoreActivities.record_events, events, deadline)


async def save_terms(terms: SaveTerms) -> None:
    await store(StoreActivities.save_terms, terms)


async def save_summary(summary: Summary) -> None:
    await store(StoreActivities.update_summary, summary)


async def carry_out_step(step: Step) -> list[SendResult]:
    """One step's writes and emails; raises once the store deadline has passed."""
    result: list[SendResult] = await workflow.execute_activity_method(
        StepActivities.carry_out_step,
        step,
        start_to_close_timeout=STORE_TIMEOUT + timedelta(seconds=len(step.emails)),
        schedule_to_close_timeout=STORE_DEADLINE,
        retry_policy=STORE_RETRY,
    )
    return result


async def record(event: EventIn) -> None:
    """One event of a signature round: retried for as long as it takes."""
    await store(StoreActivities.record_event, event, deadline=None)


def count_decision(outcome: str) -> None:
    """One decision for the metrics (`agreements_decisions_total`, agreements/telemetry.py),
    by the name of the update being handled: `applied` or `refused`. Outside an update
    (the main loop, a query) nothing is counted; on a replay the SDK counts nothing again."""
    info = workflow.current_update_info()
    if info is None:
        return
    workflow.metric_meter().create_counter(
        "agreements_decisions", "Decisions on agreements and signature rounds"
    ).add(1, {"kind": info.name, "outcome": outcome})
