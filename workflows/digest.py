"""The weekly digest: every coordinator and finance person gets one email of what is overdue
and what falls due in the coming 14 days in their organisations' agreements, grouped by
agreement; nobody with nothing to do gets one (activities/digest.py). Started every Monday
at 07:00 Europe/Stockholm by the Temporal schedule `agreements-digest` that the worker
creates (worker.py `digest_schedule`).

It never fails: each activity is retried with backoff, for up to half a day (a digest is
news for its week only); a person whose digest could not go is counted as failed, a run
that could not read who gets one says so in its result, and either way the run completes.
Each digest is sent once per person and ISO week whatever runs or retries (the activity's
`digest_sent` row), so a run started again in the same week only sends what is missing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.contracts import DigestActivities
    from models.digest import (
        DigestDay,
        DigestInput,
        DigestOutcome,
        DigestRequest,
        DigestResult,
        DigestSummary,
        week_of,
    )
    from models.schedule.dates import STOCKHOLM

READ_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5)
)
READ_TIMEOUT = timedelta(seconds=60)
# Transient SMTP trouble (connection refused, 421, 451, timeouts) is retried with backoff; a
# permanent refusal comes back as a result (failed), never as a retry.
SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=10),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=30),
)
SEND_TIMEOUT = timedelta(seconds=90)
# The database or the mail server away longer than this, and this week's digest is given up.
DEADLINE = timedelta(hours=12)
AT_ONCE = 8  # digests in flight at a time: the notifier's SMTP connections


@workflow.defn(name="Digest")
class DigestWorkflow:
    @workflow.run
    async def run(self, data: DigestInput) -> DigestSummary:
        """What was sent to whom, counted; never raises."""
        day = data.day or workflow.now().astimezone(STOCKHOLM).date()
        summary = DigestSummary(day=day, week=week_of(day))
        try:
            found = await workflow.execute_activity_method(
                DigestActivities.digest_recipients,
                DigestDay(day=day),
                start_to_close_timeout=READ_TIMEOUT,
                schedule_to_close_timeout=DEADLINE,
                retry_policy=READ_RETRY,
            )
        except Exception as error:  # ActivityError once every retry is spent
            reason = str(getattr(error, "cause", None) or error)
            workflow.logger.warning("no digest for %s: the recipients: %s", summary.week, reason)
            return summary.model_copy(update={"error": reason})
        results: list[DigestResult] = []
        people = found.person_ids
        for start in range(0, len(people), AT_ONCE):
            batch = people[start : start + AT_ONCE]
            results += await asyncio.gather(*(self.send(day, data.days, p) for p in batch))
        counts = Counter(r.outcome for r in results)
        return summary.model_copy(
            update={
                "people": len(people),
                "sent": counts[DigestOutcome.sent],
                "already_sent": counts[DigestOutcome.already_sent],
                "nothing": counts[DigestOutcome.nothing],
                "failed": counts[DigestOutcome.failed],
            }
        )

    async def send(self, day: dt.date, days: int, person_id: int) -> DigestResult:
        """One person's digest; failed (with the reason) once every retry is spent."""
        try:
            result = await workflow.execute_activity_method(
                DigestActivities.send_digest,
                DigestRequest(person_id=person_id, day=day, days=days),
                start_to_close_timeout=SEND_TIMEOUT,
                schedule_to_close_timeout=DEADLINE,
                retry_policy=SEND_RETRY,
            )
            return result
        except Exception as error:  # ActivityError: every retry spent, or no retry helps
            reason = str(getattr(error, "cause", None) or error)
            workflow.logger.warning("digest for person %s not sent: %s", person_id, reason)
            return DigestResult(person_id=person_id, outcome=DigestOutcome.failed, error=reason)
