"""Is the service ready, and the figures an operator watches.

`readiness` checks what the service needs to do its work: the database answers, Temporal
answers, and at least one worker polls the task queue (Temporal remembers the pollers it
saw in the last minutes). `/readyz` answers it (503 with what is wrong), and the worker
says it in its log at start and whenever it changes (agreements/telemetry.py).
`figures` are the gauges read from the database: the outbox's backlog and its oldest
email's age, and the milestones that are overdue.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import func, text
from sqlmodel import Session, col, select
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from models.config import Settings
from models.db import engine
from models.plan import MilestoneStatus
from models.records import AgreementRecord, MilestoneRecord, OutboxRecord, utcnow
from models.schedule.dates import STOCKHOLM

PROBE_SECONDS = 3.0  # each check's bound: a probe that hangs is an answer too
POLLED_WITHIN = dt.timedelta(minutes=2)  # a poller seen this recently counts as polling
UNSENT = ("pending", "sending")  # an outbox row not yet handed to the relay
LATE = (MilestoneStatus.due.value, MilestoneStatus.postponed.value)


@dataclass
class Readiness:
    database: str | None = None  # what is wrong, or None
    temporal: str | None = None
    workers: str | None = None
    pollers: int = 0
    checked_at: dt.datetime = field(default_factory=utcnow)

    @property
    def ready(self) -> bool:
        return not (self.database or self.temporal or self.workers)

    def line(self) -> str:
        if self.ready:
            return f"ready: database, Temporal, {self.pollers} worker(s) polling"
        problems = (self.database, self.temporal, self.workers)
        return "not ready: " + "; ".join(p for p in problems if p)

    def answer(self) -> dict[str, object]:
        return {
            "ready": self.ready,
            "database": self.database or "ok",
            "temporal": self.temporal or "ok",
            "workers": self.workers or f"{self.pollers} polling",
        }


async def readiness(client: Client | None, config: Settings) -> Readiness:
    report = Readiness()
    try:
        await asyncio.wait_for(asyncio.to_thread(_database_answers, config), PROBE_SECONDS)
    except Exception as error:  # TimeoutError, or the database's own error
        report.database = f"the database does not answer: {_why(error)}"
    if client is None:
        report.temporal = "not connected to Temporal"
        return report
    try:
        pollers = await asyncio.wait_for(_pollers(client, config), PROBE_SECONDS)
    except Exception as error:  # RPCError, TimeoutError
        report.temporal = f"Temporal does not answer: {_why(error)}"
        return report
    report.pollers = pollers
    if not pollers:
        report.workers = f"no worker polls the task queue {config.task_queue}"
    return report


def _database_answers(config: Settings) -> None:
    with engine(config.db_url()).connect() as connection:
        connection.execute(text("SELECT 1"))


async def rounds_open(client: Client) -> int:
    """Signature rounds under way (amendments' included), as Temporal counts them."""
    counted = await client.count_workflows(
        "WorkflowType = 'SignatureRound' AND ExecutionStatus = 'Running'"
    )
    return counted.count


async def _pollers(client: Client, config: Settings) -> int:
    """The workers Temporal saw polling the task queue for workflow tasks lately."""
    answer = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=config.task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    since = Timestamp()
    since.FromDatetime(dt.datetime.now(dt.UTC) - POLLED_WITHIN)
    return sum(
        1
        for p in answer.pollers
        if p.last_access_time.seconds >= since.seconds or not p.HasField("last_access_time")
    )


def figures(config: Settings) -> dict[str, float]:
    """The gauges the database gives: the outbox's backlog, its oldest email's age in
    seconds (0 with none), and the milestones overdue in agreements that have not ended."""
    today = dt.datetime.now(STOCKHOLM).date()
    with Session(engine(config.db_url())) as session:
        unsent, oldest = session.exec(
            select(func.count(), func.min(OutboxRecord.created_at)).where(
                col(OutboxRecord.status).in_(UNSENT)
            )
        ).one()
        overdue = session.exec(
            select(func.count())
            .select_from(MilestoneRecord)
            .join(AgreementRecord, col(AgreementRecord.id) == col(MilestoneRecord.agreement_id))
            .where(
                col(MilestoneRecord.status).in_(LATE),
                col(MilestoneRecord.effective_date) < today,
                col(AgreementRecord.state) != "ended",
            )
        ).one()
    age = (utcnow() - _aware(oldest)).total_seconds() if oldest is not None else 0.0
    return {
        "agreements_outbox_unsent": float(unsent),
        "agreements_outbox_oldest_unsent_seconds": max(age, 0.0),
        "agreements_milestones_overdue": float(overdue),
    }


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _why(error: BaseException) -> str:
    """The error's first line, short: never a whole traceback or a connection string."""
    first = (str(getattr(error, "orig", None) or error) or type(error).__name__).splitlines()[0]
    return first[:200]
