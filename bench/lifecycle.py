"""Whole lives on the time-skipping server, ours against a bare workflow with the same
number of timers and activities (no-op), and against one with the same timers that sends
the same emails raw to the same kind of mail server, in the same run; and the histories
they leave.

Both sides pay the same fixed costs: a fresh time-skipping server and a worker each time.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from agreements.simulate import free_port, simulate
from bench.bare import BareLife, BareMailLife, RawMail, noop
from bench.common import EXAMPLES, Clock
from emails.sink import start_sink
from models.config import binary
from models.loader import load_agreement


def counts(histories: list[WorkflowHistory]) -> tuple[int, int, int]:
    """Timers, activities and events over every run."""
    timers = activities = events = 0
    for history in histories:
        for event in history.events:
            events += 1
            if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
                timers += 1
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                activities += 1
    return timers, activities, events


async def bare_life(timers: int, activities: int) -> float:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=binary("temporal-test-server"),
    )
    with Clock() as clock:
        async with (
            env,
            Worker(env.client, task_queue="bare", workflows=[BareLife], activities=[noop]),
        ):
            await env.client.execute_workflow(
                BareLife.run,
                args=[timers, activities],
                id=f"bare-{uuid.uuid4()}",
                task_queue="bare",
            )
    return clock.seconds


async def raw_mail_life(timers: int, messages: list[tuple[str, bytes]], folder: Path) -> float:
    """The same timers and the same emails, sent raw to a mail sink of the same kind."""
    port = free_port()
    sink = start_sink(folder, port=port)
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=binary("temporal-test-server"),
    )
    mail = RawMail(port, messages)
    try:
        with Clock() as clock:
            async with (
                env,
                Worker(
                    env.client, task_queue="raw", workflows=[BareMailLife], activities=[mail.send]
                ),
            ):
                await env.client.execute_workflow(
                    BareMailLife.run,
                    args=[timers, len(messages)],
                    id=f"raw-{uuid.uuid4()}",
                    task_queue="raw",
                )
    finally:
        sink.stop()
    delivered = len(list(folder.glob("*.eml")))
    if delivered != len(messages):
        raise RuntimeError(f"the raw baseline delivered {delivered} of {len(messages)} emails")
    return clock.seconds


def received(folder: Path) -> list[tuple[str, bytes]]:
    """(recipient, message) of every email the sink in `folder` received, in order."""
    found = []
    for path in sorted(folder.glob("*.eml")):
        head, _, content = path.read_bytes().partition(b"\r\n")
        recipient = head.decode().removeprefix("X-Sink-Recipient: ")
        found.append((recipient, content))
    return found


async def run(examples: list[Path] | None = None, seconds: float = 300) -> dict[str, object]:
    rows = []
    ours_total = bare_total = raw_total = 0.0
    largest_events = largest_bytes = 0
    events_per_year: list[float] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    for path in examples or EXAMPLES:
        if loop.time() > deadline:
            break
        agreement = load_agreement(path)
        histories: list[WorkflowHistory] = []
        with tempfile.TemporaryDirectory() as scratch:
            work = Path(scratch)
            port = free_port()
            sink = start_sink(work / "mail", port=port)
            try:
                with Clock() as ours:
                    sent, _ = await simulate(
                        agreement, workdir=work, smtp_port=port, histories=histories
                    )
            finally:
                sink.stop()
            timers, activities, events = counts(histories)
            bare = await bare_life(timers, activities)
            raw = await raw_mail_life(timers, received(work / "mail"), work / "raw")
        years = max((agreement.term.end - agreement.term.start).days / 365.25, 1 / 12)
        rows.append(
            {
                "agreement": agreement.id,
                "emails": len(sent),
                "timers": timers,
                "activities": activities,
                "ours_s": round(ours.seconds, 2),
                "bare_s": round(bare, 2),
                "raw_mail_s": round(raw, 2),
                "ratio": round(ours.seconds / bare, 2),
                "ratio_vs_raw_mail": round(ours.seconds / raw, 2),
                "runs": len(histories),
                "events": events,
                "events_per_year": round(events / years),
            }
        )
        ours_total += ours.seconds
        bare_total += bare
        raw_total += raw
        events_per_year.append(events / years)
        for history in histories:
            largest_events = max(largest_events, len(history.events))
            largest_bytes = max(largest_bytes, len(history.to_json()))
    return {
        "examples": rows,
        "ratio": round(ours_total / bare_total, 2) if bare_total else 0.0,
        "ratio_vs_raw_mail": round(ours_total / raw_total, 2) if raw_total else 0.0,
        "goal_ratio_vs_raw_mail_at_most": 1.5,
        "history": {
            "events_per_agreement_year_max": round(max(events_per_year, default=0)),
            "largest_run_events": largest_events,
            "largest_run_kib": round(largest_bytes / 1024),
            "goal_events_per_year_under": 1000,
        },
    }
