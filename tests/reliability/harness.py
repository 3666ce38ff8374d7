"""What the reliability tests share: worker processes that can be killed, what a workflow
says it will send, and the counts each test reports. Agreements whose emails fall due
within seconds on the real clock come from bench.common (the burst benchmark uses them)."""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import inspect
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from email.message import Message
from pathlib import Path
from typing import Any

from sqlmodel import Session, select
from temporalio.client import Client, ScheduleHandle
from temporalio.service import RPCError, RPCStatusCode

from agreements import ops
from bench.common import agreement_copy, instants, start_due_soon
from models.agreement import Agreement
from models.config import Settings
from models.core import AgreementInput
from models.db import engine
from models.plan import PlannedEmail
from models.records import OutboxRecord
from workflows import decider
from workflows.agreement import AgreementWorkflow, workflow_id

__all__ = ["agreement_copy", "instants", "start_due_soon"]

ROOT = Path(__file__).resolve().parent.parent.parent
RESULTS = ROOT / "build" / "reliability.json"


def worker_env(temporal: str, folder: Path, smtp_port: int, **more: str) -> dict[str, str]:
    """The settings of a worker process: its Temporal, its data folder, its mail server."""
    return {
        "AGREEMENTS_TEMPORAL_ADDRESS": temporal,
        "AGREEMENTS_DATA_DIR": str(folder),
        "AGREEMENTS_SMTP_PORT": str(smtp_port),
        **more,
    }


class WorkerProcess:
    """`python worker.py` with the given settings; started, killed and restarted at will."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = {**os.environ, **env}
        self.process: subprocess.Popen[str] | None = None
        self.starts = 0
        self.kills = 0

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "worker.py")],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("worker on"):
            raise AssertionError(line + (self.process.stderr.read() if self.process.stderr else ""))
        self.starts += 1

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup, as a crash or a lost machine."""
        assert self.process is not None
        self.process.kill()
        self.process.communicate(timeout=30)
        self.kills += 1

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.communicate(timeout=90)


async def due_by(client: Client, agreement_id: str, instant: dt.datetime) -> list[PlannedEmail]:
    """What the agreement's workflow itself says it will send up to `instant`."""
    handle = client.get_workflow_handle(workflow_id(agreement_id))
    emails: list[PlannedEmail] = await handle.query(AgreementWorkflow.get_planned_emails)
    return [e for e in emails if e.send_at <= instant]


def promised_by(agreement: Agreement, instant: dt.datetime, lead_seconds: float) -> list[str]:
    """The keys of the emails an agreement started by `start_due_soon` promises up to
    `instant`, worked out by the decider itself, as the workflow's first step would, for a
    test that must know them before any worker has run the agreement."""
    handed_over = instant - dt.timedelta(seconds=lead_seconds)
    core = AgreementInput(agreement=agreement).core()
    core = decider.take_on(core, handed_over, handed_over).core
    return [e.key for e in decider.planned_emails(core, handed_over) if e.send_at <= instant]


def delivered(messages: list[Message]) -> Counter[str]:
    """How many copies of each outbox key reached the mail server."""
    return Counter(str(m["X-Agreement-Email-Key"]).strip() for m in messages)


def wait_until(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"gave up after {seconds:.0f} s waiting for {what}")


async def until(check: Callable[[], Any], seconds: float, what: str) -> None:
    """Poll `check` (plain or async) until it says yes; after `seconds`, fail naming `what`.
    Never a fixed sleep standing in for a condition: the test goes on the moment it holds."""
    deadline = time.monotonic() + seconds
    while True:
        answer = check()
        if inspect.isawaitable(answer):
            answer = await answer
        if answer:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"gave up after {seconds:.0f} s waiting for {what}")
        await asyncio.sleep(0.2)


async def schedule_exists(handle: ScheduleHandle) -> bool:
    """Does the Temporal schedule exist (yet, or still)?"""
    try:
        await handle.describe()
    except RPCError as error:
        assert error.status is RPCStatusCode.NOT_FOUND, error
        return False
    return True


async def busy(client: Client, workflow_ids: Iterable[str]) -> list[str]:
    """The workflows among these that still have something in flight: an activity (an email
    being sent or retried) or a workflow task. When none has, no attempt exists that could
    send another copy until a timer fires, so what reached the mail server once the workers
    have stopped is final."""
    found = []
    for wid in workflow_ids:
        raw = (await client.get_workflow_handle(wid).describe()).raw_description
        if raw.pending_activities or raw.HasField("pending_workflow_task"):
            found.append(wid)
    return found


def idle(config: Settings, workflow_ids: Iterable[str]) -> bool:
    """From plain (not async) code: none of these workflows has anything in flight, so what
    they decided so far has been carried out, and a count of what they wrote is final."""

    async def check() -> bool:
        return not await busy(await ops.connect(config), workflow_ids)

    return asyncio.run(check())


def unsettled(url: str, keys: Iterable[str]) -> dict[str, str]:
    """The outbox keys among these whose row is missing or not yet `sent`, with their status."""
    with Session(engine(url)) as session:
        rows = {r.key: r.status for r in session.exec(select(OutboxRecord))}
    return {k: rows.get(k, "missing") for k in keys if rows.get(k) != "sent"}


async def all_sent_and_idle(
    client: Client,
    url: str,
    mail: Path,
    planned: list[str],
    workflow_ids: Iterable[str],
    seconds: float,
) -> None:
    """Until every planned email reached the mail server, its outbox row says `sent`, and
    none of the workflows has an activity or a workflow task pending (bounded)."""
    from emails.sink import read_mail

    ids = list(workflow_ids)
    left: dict[str, Any] = {}

    async def done() -> bool:
        copies = delivered(read_mail(mail))
        left["not delivered"] = [k for k in planned if copies[k] == 0]
        left["outbox not sent"] = unsettled(url, planned)
        left["busy"] = await busy(client, ids)
        return not any(left.values())

    try:
        await until(done, seconds, f"{len(planned)} emails sent and {len(ids)} workflows idle")
    except AssertionError as error:
        raise AssertionError(f"{error}; still {left}") from None


def report(name: str, **figures: Any) -> None:
    """Keep the figures of this run for the README's table (build/reliability.json)."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    # Tests run in parallel processes (pytest-xdist): one at a time reads and rewrites the
    # file, and a reader never sees it half-written.
    with (RESULTS.parent / (RESULTS.name + ".lock")).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        results[name] = {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **figures}
        scratch = RESULTS.with_suffix(f".{os.getpid()}.tmp")
        scratch.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
        os.replace(scratch, RESULTS)


def tally(name: str, folder: Path, planned: list[str] | int, **more: Any) -> Counter[str]:
    """Count what reached the mail server in `folder` against what was planned (the outbox
    keys, or just how many), report it under `name`, and return the copies per key."""
    from emails.sink import read_mail

    copies = delivered(read_mail(folder))
    if isinstance(planned, int):
        count, lost = planned, planned - len(copies)
    else:
        count, lost = len(planned), sum(1 for k in planned if copies[k] == 0)
    report(
        name,
        planned=count,
        delivered=sum(copies.values()),
        duplicated=sum(1 for n in copies.values() if n > 1),
        lost=lost,
        **more,
    )
    return copies


def table() -> str:
    """The README's table of faults, from the last run's figures."""
    results = json.loads(RESULTS.read_text())
    columns = ["planned", "delivered", "duplicated", "lost"]
    lines = [
        "| fault | " + " | ".join(columns) + " | also |",
        "|---|" + "---:|" * len(columns) + "---|",
    ]
    for name, figures in results.items():
        cells = [str(figures.get(c, "")) for c in columns]
        rest = ", ".join(
            f"{k.replace('_', ' ')} {v}" for k, v in figures.items() if k not in [*columns, "at"]
        )
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {rest} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
