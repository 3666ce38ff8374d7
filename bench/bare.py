"""The baselines: bare Temporal workflows doing the same number of timers, activities and
updates as an agreement, with no-op activities and no logic of their own; and one that
sends the same emails raw with the same timers."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import aiosmtplib
from temporalio import activity, workflow

NOOP_TIMEOUT = timedelta(seconds=60)


@activity.defn(name="bench_noop")
async def noop(value: str) -> str:
    return value


@workflow.defn(name="BenchBareLife")
class BareLife:
    """`timers` sleeps of a day; after each, its share of `activities` no-op activities."""

    @workflow.run
    async def run(self, timers: int, activities: int) -> int:
        done = 0
        for n in range(max(timers, 1)):
            if n < timers:
                await workflow.sleep(timedelta(days=1))
            share = activities // max(timers, 1) + (1 if n < activities % max(timers, 1) else 0)
            await asyncio.gather(
                *(
                    workflow.execute_activity(noop, "x", start_to_close_timeout=NOOP_TIMEOUT)
                    for _ in range(share)
                )
            )
            done += share
        return done


@workflow.defn(name="BenchBareWaiting")
class BareWaiting:
    """Waits on one long timer and answers a query, holding nothing else: the least a
    cached workflow run costs a worker (the memory benchmark's baseline)."""

    @workflow.run
    async def run(self) -> None:
        await workflow.sleep(timedelta(days=365))

    @workflow.query(name="state")
    def state(self) -> str:
        return "waiting"


@workflow.defn(name="BenchBareUpdates")
class BareUpdates:
    """Takes `updates` updates, each running its share of no-op activities, then ends."""

    def __init__(self) -> None:
        self.taken = 0
        self.expected = 0
        self.per_update = 0

    @workflow.run
    async def run(self, updates: int, per_update: int) -> int:
        self.expected = updates
        self.per_update = per_update
        await workflow.wait_condition(lambda: self.taken >= self.expected)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.taken

    @workflow.update(name="step")
    async def step(self) -> int:
        await asyncio.gather(
            *(
                workflow.execute_activity(noop, "x", start_to_close_timeout=NOOP_TIMEOUT)
                for _ in range(self.per_update)
            )
        )
        self.taken += 1
        return self.taken


class RawMail:
    """The raw-email baseline's activity: sends stored messages as they are, each on a fresh
    connection to the same kind of mail server, with nothing of ours in between (no
    rendering, no outbox)."""

    def __init__(self, port: int, messages: list[tuple[str, bytes]]) -> None:
        self.port = port
        self.messages = messages  # (recipient, the message as the relay received it)

    @activity.defn(name="bench_send_raw")
    async def send(self, indices: list[int]) -> int:
        for index in indices:
            recipient, content = self.messages[index]
            async with aiosmtplib.SMTP(hostname="127.0.0.1", port=self.port) as client:
                await client.sendmail("bench@example.se", [recipient], content)
        return len(indices)


@workflow.defn(name="BenchBareMailLife")
class BareMailLife:
    """`timers` sleeps of a day; after each, its share of `emails` sent raw in one
    activity: the same timers and the same emails as an agreement's life."""

    @workflow.run
    async def run(self, timers: int, emails: int) -> int:
        done = 0
        steps = max(timers, 1)
        for n in range(steps):
            if n < timers:
                await workflow.sleep(timedelta(days=1))
            share = emails // steps + (1 if n < emails % steps else 0)
            if share:
                await workflow.execute_activity(
                    "bench_send_raw",
                    list(range(done, done + share)),
                    start_to_close_timeout=NOOP_TIMEOUT,
                )
            done += share
        return done
