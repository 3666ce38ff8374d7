"""Email: render, outbox and send of M emails through the notification activity to a local
aiosmtpd sink, against raw aiosmtplib sending the same pre-rendered messages, in the same
run and with the same concurrency (8 at once).

Ours is measured twice: one email per activity (`send_email`, as a retry or a signing
round sends), and the emails of each moment of an agreement in one activity
(`send_emails`, as the agreement's workflow sends them), 8 batches at once, through a
worker's pool of 8 connections."""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
from temporalio.testing import ActivityEnvironment

from activities.notify import Notifier
from activities.store import SaveTerms, Store
from agreements.simulate import free_port
from bench.common import EXAMPLES, Clock
from emails.message import build, sender_address
from emails.render import render_email
from emails.sink import start_sink
from models.config import Settings
from models.db import migrate
from models.lifecycle import EmailSpec, terms_json, terms_sha256
from models.loader import load_agreement
from models.plan import Scenario
from models.schedule.engine import plan

CONCURRENCY = 8


class Timed(Clock):
    """Wall time and the process's CPU time of a block (the sink runs in this process too,
    for ours and raw alike): on a machine other work shares, CPU time varies less."""

    def __enter__(self) -> Timed:
        self.cpu_began = time.process_time()
        super().__enter__()
        return self

    def __exit__(self, *_: object) -> None:
        super().__exit__()
        self.cpu = time.process_time() - self.cpu_began


def specs(count: int) -> list[tuple[Any, EmailSpec]]:
    """`count` emails from the examples' plans, each under its own key."""
    found: list[tuple[Any, EmailSpec]] = []
    agreements = [load_agreement(path) for path in EXAMPLES]
    while len(found) < count:
        for agreement in agreements:
            promised = plan(
                agreement, dt.datetime(2000, 1, 1, tzinfo=dt.UTC), scenario=Scenario.plan
            )
            milestones = {m.id: m for m in promised.milestones}
            for email in promised.emails:
                found.append(
                    (
                        agreement,
                        EmailSpec(
                            key=f"{email.key}:{len(found)}",
                            agreement_id=agreement.id,
                            terms_sha256=terms_sha256(agreement),
                            template=email.template,
                            to=email.to,
                            milestone=milestones[email.milestone_id],
                            days_before=email.days_before,
                            planned_at=email.send_at,
                        ),
                    )
                )
                if len(found) == count:
                    return found
    return found


async def lanes(work: list[Any], run: Any) -> None:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for item in work:
        queue.put_nowait(item)

    async def lane() -> None:
        while not queue.empty():
            await run(queue.get_nowait())

    await asyncio.gather(*(lane() for _ in range(CONCURRENCY)))


def warm_up(emails: list[tuple[Any, EmailSpec]], tag: str) -> list[tuple[Any, EmailSpec]]:
    """The first few emails again, under keys of their own."""
    return [
        (agreement, spec.model_copy(update={"key": f"{spec.key}:{tag}"}))
        for agreement, spec in emails[:CONCURRENCY]
    ]


def moments(emails: list[tuple[Any, EmailSpec]]) -> list[list[EmailSpec]]:
    """The emails in batches as the workflow sends them: one per agreement and moment, each
    under a key of its own (the single sends have used the others)."""
    batches: dict[tuple[str, object], list[EmailSpec]] = {}
    for _, spec in emails:
        batch = batches.setdefault((spec.agreement_id, spec.planned_at), [])
        batch.append(spec.model_copy(update={"key": f"{spec.key}:batch"}))
    return list(batches.values())


async def run(count: int = 500, seconds: float = 120) -> dict[str, Any]:
    emails = specs(count)
    batches = moments(emails)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        port = free_port()
        sink = start_sink(folder / "mail", port=port)
        try:
            config = Settings(data_dir=folder, smtp_port=port)
            migrate(config.db_url())
            store = Store(config.db_url())
            for agreement in {a.id: a for a, _ in emails}.values():
                await store.save_terms(
                    SaveTerms(
                        agreement_id=agreement.id,
                        sha256=terms_sha256(agreement),
                        terms_json=terms_json(agreement),
                    )
                )
            notifier = Notifier(config)
            environment = ActivityEnvironment()

            async def ours_one(item: tuple[Any, EmailSpec]) -> None:
                await environment.run(notifier.send_email, item[1])

            # Each way is timed once warm (a worker sends for hours): a few emails first,
            # under keys of their own, so caches and first-use code paths are not timed.
            await lanes(warm_up(emails, "warm"), ours_one)
            with Timed() as ours:
                await asyncio.wait_for(lanes(emails, ours_one), seconds)
            await notifier.close()

            batched = Notifier(config)

            async def ours_batch(batch: list[EmailSpec]) -> None:
                await environment.run(batched.send_emails, batch)

            await ours_batch([spec for _, spec in warm_up(emails, "warm-batch")])
            with Timed() as ours_batched:
                await asyncio.wait_for(lanes(batches, ours_batch), seconds)
            await batched.close()

            # Raw: the same messages, rendered and built beforehand, each sent on a
            # connection of its own.
            now = dt.datetime.now(dt.UTC)
            messages = [
                build(a, spec, render_email(a, spec, None), config.mail_from, now)
                for a, spec in emails
            ]
            sender = sender_address(config.mail_from)

            async def raw_one(message: EmailMessage) -> None:
                await aiosmtplib.send(message, sender=sender, hostname="127.0.0.1", port=port)

            await lanes(messages[:CONCURRENCY], raw_one)
            with Timed() as raw:
                await asyncio.wait_for(lanes(messages, raw_one), seconds)

            # Raw with one open connection per lane: what reusing connections would give.
            async def reused(queue: list[EmailMessage]) -> None:

                async def lane() -> None:
                    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port) as client:
                        while queue:
                            await client.send_message(queue.pop(), sender=sender)

                await asyncio.gather(*(lane() for _ in range(CONCURRENCY)))

            await reused(messages[:CONCURRENCY])
            with Timed() as pooled:
                await asyncio.wait_for(reused(list(messages)), seconds)
        finally:
            sink.stop()
    return {
        "emails": count,
        "concurrency": CONCURRENCY,
        "batches": len(batches),
        "ours_per_s": round(count / ours.seconds, 1),
        "ours_batch_per_s": round(count / ours_batched.seconds, 1),
        "raw_per_s": round(count / raw.seconds, 1),
        "raw_reused_connection_per_s": round(count / pooled.seconds, 1),
        "ratio": round(raw.seconds / ours.seconds, 2),
        "ratio_vs_reused": round(pooled.seconds / ours.seconds, 2),
        "batch_ratio": round(raw.seconds / ours_batched.seconds, 2),
        "batch_ratio_vs_reused": round(pooled.seconds / ours_batched.seconds, 2),
        "cpu_ms_per_email": {
            "ours": round(1000 * ours.cpu / count, 2),
            "ours_batch": round(1000 * ours_batched.cpu / count, 2),
            "raw": round(1000 * raw.cpu / count, 2),
            "raw_reused_connection": round(1000 * pooled.cpu / count, 2),
        },
        "goal_ratio_at_least": 0.8,
        "goal_ratio_vs_reused_at_least": 0.5,
    }
