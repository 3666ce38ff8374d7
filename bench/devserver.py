"""The real dev server: agreements driven through their signature rounds by the calls the
API makes (service.ops), against a bare workflow taking the same number of updates and
activities; worker memory with many agreements open, against as many bare workflows open in
a bare worker; and a burst of reminders that fall due in the same minute."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Worker

from agreements import ops
from agreements.simulate import collect_histories, free_port
from bench.bare import BareUpdates, BareWaiting, noop
from bench.common import ROOT, Clock, agreement_copy, dev_server, instants, rss_kib, start_due_soon
from emails.sink import start_sink
from models.config import Settings
from models.db import migrate
from models.loader import loads_agreement
from worker import build_worker
from workflows.agreement import ConfirmPrerequisites, StartSigning
from workflows.signing import PaperSignature

TERMS = """
id = "{id}"
title = "IOP Mätning {n}"
[coordinator]
name = "Malin Samordnare"
email = "malin@kommun.example.se"
[parties.kommun]
name = "Socialförvaltningen"
kind = "public"
org_number = "212000-1157"
contacts = [
  {{ name = "Maria Chef", email = "maria@kommun.example.se", roles = ["contact", "signatory"] }},
  {{ name = "Ekonomi", email = "ekonomi@kommun.example.se", roles = ["finance"] }},
]
[parties.forening]
name = "Föreningen"
kind = "nonprofit"
org_number = "802002-8638"
contacts = [
  {{ name = "Saul", email = "saul@forening.example.se", roles = ["contact", "signatory"] }},
]
[term]
start = 2030-01-01
end = 2030-12-31
[[contributions]]
payer = "kommun"
payee = "forening"
amount = 240000
[signing]
method = "paper"
"""
SIGNERS = ("maria@kommun.example.se", "saul@forening.example.se")
KEYS = [
    "no-market",
    "not-an-order",
    "budget-plan",
    "follow-up-plan",
    "idea-driven",
    "all-contribute",
    "trust",
]


def settings(address: str, folder: Path, smtp_port: int, **extra: Any) -> Settings:
    return Settings(
        temporal_address=address,
        data_dir=folder,
        smtp_port=smtp_port,
        task_queue=f"bench-{uuid.uuid4().hex[:8]}",
        **extra,
    )


async def timed(latencies: list[float], work: Awaitable[Any]) -> Any:
    """`work`, its wall time appended to `latencies` (seconds)."""
    began = time.perf_counter()
    result = await work
    latencies.append(time.perf_counter() - began)
    return result


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))] if ordered else 0.0


async def drive(client: Client, config: Settings, n: int, latencies: list[float]) -> int:
    """One agreement through its signing, as the API drives it; the number of updates. The
    time of each decision until it is answered goes to `latencies`."""
    agreement = loads_agreement(TERMS.format(id=f"matning-{n}", n=n), "bench.toml")
    await ops.create(client, config, agreement)
    confirm = ConfirmPrerequisites(keys=KEYS)
    await timed(latencies, ops.decide(client, agreement.id, "confirm_prerequisites", confirm))
    await timed(latencies, ops.decide(client, agreement.id, "start_signing", StartSigning()))
    for signer in SIGNERS:
        paper = PaperSignature(signer=signer, signed_on=dt.date.today(), recorded_by="b")
        await timed(latencies, ops.round_action(client, agreement.id, "sign_paper", paper))
    # Until the agreement list says signed, as the pages see it. Not by querying the
    # workflow: a hundred agreements asking twenty times a second would load the worker
    # with queries the bare baseline does not answer.
    for _ in range(600):
        if (await asyncio.to_thread(ops.agreement, config, agreement.id)).state == "signed":
            return 4
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{agreement.id} was not signed")


async def throughput(agreements: int = 100, seconds: float = 300) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        port = free_port()
        sink = start_sink(folder / "mail", port=port)
        try:
            with dev_server(folder) as address:
                config = settings(address, folder, port)
                migrate(config.db_url())
                client = await ops.connect(config)
                async with build_worker(client, config):
                    ours_ms: list[float] = []
                    with Clock() as ours:
                        steps = await asyncio.wait_for(
                            asyncio.gather(
                                *(drive(client, config, n, ours_ms) for n in range(agreements))
                            ),
                            seconds,
                        )
                    activities = 0
                    for n in range(agreements):
                        for history in await collect_histories(client, f"matning-{n}"):
                            activities += sum(
                                1
                                for e in history.events
                                if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                            )
                updates = sum(steps)
                per_update = max(round(activities / updates), 1)
                async with Worker(
                    client, task_queue="bare", workflows=[BareUpdates], activities=[noop]
                ):
                    bare_ms: list[float] = []
                    with Clock() as bare:
                        await asyncio.wait_for(
                            asyncio.gather(
                                *(
                                    bare_one(client, 4, per_update, bare_ms)
                                    for _ in range(agreements)
                                )
                            ),
                            seconds,
                        )
        finally:
            sink.stop()
    ours_rate = updates / ours.seconds
    bare_rate = updates / bare.seconds
    return {
        "agreements": agreements,
        "updates": updates,
        "activities": activities,
        "ours_steps_per_s": round(ours_rate, 1),
        "bare_steps_per_s": round(bare_rate, 1),
        "ratio": round(ours_rate / bare_rate, 2),
        "goal_ratio_at_least": 0.8,
        # A decision until it is answered, through ops as the API and CLI make it, beside
        # the bare update's (which runs its share of no-op activities before answering).
        "ours_decision_ms_p50": round(1000 * percentile(ours_ms, 0.5), 1),
        "ours_decision_ms_p95": round(1000 * percentile(ours_ms, 0.95), 1),
        "bare_update_ms_p50": round(1000 * percentile(bare_ms, 0.5), 1),
        "bare_update_ms_p95": round(1000 * percentile(bare_ms, 0.95), 1),
        "goal_p95_at_most_bare_times": 3,
    }


async def bare_one(client: Client, updates: int, per_update: int, latencies: list[float]) -> None:
    handle = await client.start_workflow(
        BareUpdates.run, args=[updates, per_update], id=f"bare-{uuid.uuid4()}", task_queue="bare"
    )
    for _ in range(updates):
        await timed(latencies, handle.execute_update("step", result_type=int))
    await handle.result()


class WorkerProcess:
    """`python worker.py`, or `python -m <module>` (a baseline's worker), with `config`."""

    def __init__(self, config: Settings, module: str | None = None) -> None:
        env = {
            **os.environ,
            "AGREEMENTS_TEMPORAL_ADDRESS": config.temporal_target(),
            "AGREEMENTS_DATA_DIR": str(config.data_dir),
            "AGREEMENTS_SMTP_PORT": str(config.smtp_port),
            "AGREEMENTS_TASK_QUEUE": config.task_queue,
            "AGREEMENTS_MAX_CACHED_WORKFLOWS": str(config.max_cached_workflows),
            "AGREEMENTS_SMTP_MAX_PER_SECOND": str(config.smtp_max_per_second),
        }
        command = ["-m", module] if module else [str(ROOT / "worker.py")]
        self.process = subprocess.Popen(
            [sys.executable, *command],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("worker on"):
            raise RuntimeError(f"the worker did not start: {line}")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.communicate(timeout=90)


async def memory(agreements: int = 1000, seconds: float = 300) -> dict[str, Any]:
    """Worker RSS per cached run: `agreements` imported-as-signed agreements open in our
    worker, then as many bare waiting workflows open in a bare worker (bench/bare_worker.py),
    each opened the same way (started, then queried once its first task has run), with the
    same number of cached workflows."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        with dev_server(folder) as address:
            config = settings(address, folder, free_port(), max_cached_workflows=agreements + 100)
            migrate(config.db_url())
            client = await ops.connect(config)
            template = agreement_copy(0)
            later = instants(template)[-1]  # nothing falls due while we measure

            async def open_agreement(n: int) -> None:
                agreement = agreement_copy(n, template)
                await start_due_soon(client, agreement, later, 3600, config.task_queue)
                await ops.state(client, agreement.id)  # its first task has run

            ours = await cached(WorkerProcess(config), open_agreement, agreements, seconds)
            bare_config = config.model_copy(update={"task_queue": f"{config.task_queue}-bare"})

            async def open_bare(n: int) -> None:
                handle = await client.start_workflow(
                    BareWaiting.run, id=f"bare-waiting-{n}", task_queue=bare_config.task_queue
                )
                await handle.query(BareWaiting.state)

            bare_worker = WorkerProcess(bare_config, module="bench.bare_worker")
            bare = await cached(bare_worker, open_bare, agreements, seconds)
    per_agreement = (ours.after - ours.before) / max(ours.count, 1)
    per_bare = (bare.after - bare.before) / max(bare.count, 1)
    return {
        "agreements": ours.count,
        "rss_before_mib": round(ours.before / 1024, 1),
        "rss_after_mib": round(ours.after / 1024, 1),
        "per_agreement_kib": round(per_agreement, 1),
        "bare_runs": bare.count,
        "bare_rss_before_mib": round(bare.before / 1024, 1),
        "bare_rss_after_mib": round(bare.after / 1024, 1),
        "bare_per_agreement_kib": round(per_bare, 1),
        "ratio_vs_bare": round(per_agreement / per_bare, 2) if per_bare > 0 else None,
        "goal_per_agreement_kib_at_most": 150,
        "goal_ratio_vs_bare_at_most": 2,
    }


@dataclass(frozen=True)
class Cached:
    count: int  # runs opened after the warm-up
    before: int  # the worker's RSS after the warm-up, KiB
    after: int  # and with every run open


async def cached(
    worker: WorkerProcess,
    open_one: Callable[[int], Awaitable[None]],
    count: int,
    seconds: float,
) -> Cached:
    """The worker's RSS before and after `count` runs are opened (50 at a time, within
    `seconds`), after a warm-up of 20 that fills its one-off caches; then it stops."""
    try:
        warm = 20
        await asyncio.gather(*(open_one(n) for n in range(warm)))
        await asyncio.sleep(1)
        before = rss_kib(worker.process.pid)
        deadline = time.monotonic() + seconds
        opened = warm
        while opened < warm + count and time.monotonic() < deadline:
            batch = range(opened, min(opened + 50, warm + count))
            await asyncio.gather(*(open_one(n) for n in batch))
            opened = batch[-1] + 1
        await asyncio.sleep(2)
        after = rss_kib(worker.process.pid)
    finally:
        worker.stop()
    return Cached(opened - warm, before, after)


async def burst(agreements: int = 1000, rate: float = 0.0, seconds: float = 600) -> dict[str, Any]:
    """`agreements` whose instalment reminders all fall due in the same minute: from that
    minute until the last email is at the mail server, sending at most `rate` a second."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        port = free_port()
        sink = start_sink(folder / "mail", port=port)
        try:
            with dev_server(folder) as address:
                config = settings(
                    address,
                    folder,
                    port,
                    smtp_max_per_second=rate,
                    max_cached_workflows=agreements + 100,
                )
                migrate(config.db_url())
                client = await ops.connect(config)
                worker = WorkerProcess(config)
                try:
                    template = agreement_copy(0)
                    instant = instants(template)[0]  # two instalment reminders each
                    # All of them due at the same moment, once every one has started and
                    # run its first steps (recorded, summary written): what is measured is
                    # running agreements whose timers fire together, as on the first of a
                    # month, not the taking on of a thousand agreements.
                    lead = 10 + agreements * 0.1
                    due_at = time.monotonic() + lead
                    started = time.monotonic()

                    async def start(n: int) -> None:
                        remaining = due_at - time.monotonic()
                        await start_due_soon(
                            client,
                            agreement_copy(n, template),
                            instant,
                            remaining,
                            config.task_queue,
                        )

                    for first in range(0, agreements, 50):
                        await asyncio.gather(
                            *(start(n) for n in range(first, min(first + 50, agreements)))
                        )
                    start_seconds = time.monotonic() - started
                    if time.monotonic() > due_at:
                        raise RuntimeError("starting took longer than the lead; raise it")
                    while time.monotonic() < due_at and len(ops.agreements(config)) < agreements:
                        await asyncio.sleep(0.5)
                    ready = len(ops.agreements(config))
                    ready_s = time.monotonic() - started
                    expected = 2 * agreements
                    mail = folder / "mail"
                    deadline = due_at + seconds
                    while len(list(mail.glob("*.eml"))) < expected:
                        if time.monotonic() > deadline:
                            break
                        await asyncio.sleep(0.2)
                    last = time.monotonic() - due_at
                    delivered = len(list(mail.glob("*.eml")))
                finally:
                    worker.stop()
        finally:
            sink.stop()
    return {
        "agreements": agreements,
        "emails": delivered,
        "expected": expected,
        "rate_limit_per_s": rate or "none",
        "start_all_s": round(start_seconds, 1),
        "ready_before_due": ready,
        "all_ready_s": round(ready_s, 1),
        "lead_s": round(lead, 1),
        "due_to_last_email_s": round(last, 1),
        "emails_per_s": round(delivered / last, 1) if last > 0 else 0.0,
    }
