"""The finance export written to a folder for an ERP: one run writes the day's files
(activities/finance_export.py: every agreement's instalments and each organisation's, as
CSV and JSON). Started daily at 06:00 Europe/Stockholm by the Temporal schedule
`agreements-finance-export` that the worker creates when AGREEMENTS_FINANCE_EXPORT_DIR is set
(worker.py `finance_export_schedule`).

It never fails: the activity is retried with backoff for up to half a day (a share that is
away, a database that is away); after that the run completes with the reason in its result
and a warning in the worker's log, and the next day's run writes that day's files. The
activity is idempotent, so a retry or a second run the same day only finishes the work.
"""

from __future__ import annotations

import datetime as dt
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from pydantic import Field

    from models.plan import Frozen
    from models.schedule.dates import STOCKHOLM

EXPORT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=10)
)
EXPORT_TIMEOUT = timedelta(minutes=5)
DEADLINE = timedelta(hours=12)  # the day's files late, but before the next day's


class FinanceExportInput(Frozen):
    day: dt.date | None = None  # the export's day; None: the day it runs, in Stockholm


class FinanceExportResult(Frozen):
    day: dt.date
    files: list[str] = Field(default_factory=list)  # relative to the folder
    error: str | None = None  # why no file was written, once every retry was spent


@workflow.defn(name="FinanceExport")
class FinanceExport:
    @workflow.run
    async def run(self, data: FinanceExportInput) -> FinanceExportResult:
        """The files written (or kept, when unchanged); never raises."""
        day = data.day or workflow.now().astimezone(STOCKHOLM).date()
        try:
            files: list[str] = await workflow.execute_activity(
                "export_finance",
                day,
                result_type=list[str],
                start_to_close_timeout=EXPORT_TIMEOUT,
                schedule_to_close_timeout=DEADLINE,
                retry_policy=EXPORT_RETRY,
            )
        except Exception as error:  # ActivityError once every retry is spent
            reason = str(getattr(error, "cause", None) or error)
            workflow.logger.warning("no finance export for %s: %s", day, reason)
            return FinanceExportResult(day=day, error=reason)
        return FinanceExportResult(day=day, files=files)
