"""The Temporal worker: agreement workflows, signature rounds, persistence and email;
gallring (weeding) of the signers' IP addresses and user agents every night, the weekly
digest to coordinators and finance every Monday, and the finance export to a folder every
morning, each on a Temporal schedule; and the webhook deliveries, each its own workflow.

`python worker.py` runs it against the configured Temporal server (the embedded dev server
on localhost by default) until SIGTERM or Ctrl-C, then shuts down cleanly: activities that
are running finish (or are retried elsewhere), nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.plugin import SimplePlugin
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode, TLSConfig
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import i18n
from activities.archive import Archiver
from activities.digest import Digester
from activities.finance_export import FinanceExporter
from activities.notify import Notifier
from activities.provider import ProviderRounds
from activities.record import Recorder
from activities.steps import Steps
from activities.store import Store
from activities.webhooks import WebhookActivities
from activities.weeding import MessageWeeder, Weeder
from agreements import logs, telemetry
from models.codec import data_converter, keys_for
from models.config import Settings, settings
from models.digest import DigestInput
from models.schedule import dates
from webhooks import dispatch
from workflows.agreement import AgreementWorkflow
from workflows.digest import DigestWorkflow
from workflows.finance_export import FinanceExport, FinanceExportInput
from workflows.signing import SignatureRoundWorkflow
from workflows.webhook import WebhookDeliveryWorkflow
from workflows.weeding import WeedingInput, WeedingWorkflow

log = logging.getLogger("agreements.worker")

# Deterministic code shared by every workflow run is imported once, outside the sandbox: the
# schedule engine and models (pure by design), and the libraries they load lazily.
PASSTHROUGH = (
    "models",
    "activities.contracts",
    # The workflow modules too: imported once instead of once per agreement in the worker's
    # cache (279 rather than 652 KiB per cached agreement, bench/results.json). They keep
    # no state at module level; determinism is proved by the replay tests.
    "workflows",
    # The catalog: milestone titles are written in the agreement's language while planning.
    "i18n",
    "babel",
    "holidays",
    "dateutil",
    "email_validator",
    "idna",
    "pydantic",
    "pydantic_core",
)


def workflow_runner() -> SandboxedWorkflowRunner:
    i18n.warm()  # both catalogs, before any workflow plans a title in its language
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)
    )


WORKFLOWS = [
    AgreementWorkflow,
    SignatureRoundWorkflow,
    WeedingWorkflow,
    DigestWorkflow,
    WebhookDeliveryWorkflow,
    FinanceExport,
]


def build_worker(client: Client, config: Settings, watch: bool = False) -> Worker:
    """The worker with every workflow and activity; `watch`: a service's worker, which also
    reads the gauges and says its readiness in its log (agreements/telemetry.py)."""
    dates.warm()
    store = Store(config.db_url())
    notifier = Notifier(config)
    steps = Steps(store, notifier)
    weeder = Weeder(config.db_url(), config.signing_secret.get_secret_value())
    digester = Digester(config, notifier)
    recorder = Recorder(config)
    provider = ProviderRounds(config)
    hooks = WebhookActivities(config.db_url(), config.webhooks_allow_private)
    return Worker(
        client,
        task_queue=config.task_queue,
        workflows=WORKFLOWS,
        activities=[
            store.save_terms,
            store.record_event,
            store.record_events,
            store.update_summary,
            notifier.send_email,
            notifier.send_emails,
            steps.carry_out_step,
            weeder.weed_signer_traces,
            MessageWeeder(config).weed_outbox_messages,
            Archiver(config).write_archive,
            digester.digest_recipients,
            digester.send_digest,
            recorder.seal_record,
            provider.provider_start,
            provider.provider_status,
            provider.provider_remind,
            provider.provider_cancel,
            provider.provider_collect,
            FinanceExporter(config).export_finance,
            hooks.deliver_webhook,
            hooks.webhook_gave_up,
        ],
        activity_executor=ThreadPoolExecutor(max_workers=8),
        workflow_runner=workflow_runner(),
        max_cached_workflows=config.max_cached_workflows,
        # On SIGTERM (a rolling upgrade) an email being sent gets this long to finish
        # before it is cancelled and retried on another worker.
        graceful_shutdown_timeout=timedelta(seconds=config.shutdown_grace_seconds),
        plugins=[
            closing(notifier),
            scheduling(client, config),
            dispatching(client, config),
            *([watching(client, config)] if watch else []),
        ],
    )


def closing(notifier: Notifier) -> SimplePlugin:
    """Around the worker's run, however it is run (`serve`, `agreements up`, simulate): once
    it has stopped and its activities are done, the notifier says QUIT to the mail server
    on each pooled connection (rather than leaving them to be dropped with the process)."""

    @contextlib.asynccontextmanager
    async def running() -> AsyncIterator[None]:
        try:
            yield
        finally:
            await notifier.close()

    return SimplePlugin("agreements.notifier", run_context=running)


def dispatching(client: Client, config: Settings) -> SimplePlugin:
    """While the worker runs: the webhook deliveries written with their events are started
    (webhooks/dispatch.py), each as its own `WebhookDelivery` workflow."""
    return beside("agreements.webhooks", lambda: dispatch.keep_starting(client, config))


def watching(client: Client, config: Settings) -> SimplePlugin:
    """The gauges and the readiness read every few seconds beside the worker, the readiness
    said in the log at start and when it changes (agreements/telemetry.py)."""
    return beside("agreements.metrics", lambda: telemetry.keep_sampling(client, config))


def beside(name: str, work: Callable[[], Coroutine[Any, Any, None]]) -> SimplePlugin:
    """A plugin that runs `work` beside the worker, from its start until it stops."""

    @contextlib.asynccontextmanager
    async def running() -> AsyncIterator[None]:
        task = asyncio.create_task(work())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return SimplePlugin(name, run_context=running)


def scheduling(client: Client, config: Settings) -> SimplePlugin:
    """As the worker starts, however it is run: the daily weeding, the weekly digest and the
    daily finance export schedules as configured (`weeding_schedule`, `digest_schedule`,
    `finance_export_schedule`), set beside the worker's start so that a Temporal that is
    slow to answer never holds the worker up. A worker that cannot set one runs on and says
    so in its log: that work is only late, and the next worker to start sets it."""

    async def set_schedules() -> None:
        for name, keep in (
            (WEEDING_SCHEDULE, weeding_schedule),
            (DIGEST_SCHEDULE, digest_schedule),
            (FINANCE_EXPORT_SCHEDULE, finance_export_schedule),
        ):
            try:
                done = await keep(client, config)
            except Exception as error:  # RPCError, or a server that went away meanwhile
                log.warning("schedule %s not set: %s", name, error)
                continue
            log.info("schedule %s: %s", name, done)

    return beside("agreements.schedules", set_schedules)


TIME_ZONE = "Europe/Stockholm"  # the schedules' local times, daylight saving or not
WEEDING_SCHEDULE = "agreements-weeding"  # the schedule's id, and its workflows' id prefix
WEEDING_HOUR = 3  # daily at 03:00 in Stockholm
DIGEST_SCHEDULE = "agreements-digest"
DIGEST_WEEKDAY = 1  # Monday (Temporal counts the days of the week from Sunday, 0)
DIGEST_HOUR = 7  # at 07:00 in Stockholm


def weeding(config: Settings) -> Schedule:
    """The schedule that starts `Weeding` daily at 03:00 Europe/Stockholm on the task queue.
    Its note names the settings it was made with, so a worker knows whether to update it.
    A run still going when the next is due means that day's is skipped, and a server that
    was away makes up a missed day once it is back (within a day): each run weeds all that
    is due, so nothing is left behind."""
    return stockholm_schedule(
        config,
        WEEDING_SCHEDULE,
        WeedingWorkflow.run,
        WeedingInput(retention_days=config.retention_days),
        ScheduleCalendarSpec(hour=[ScheduleRange(WEEDING_HOUR)]),
        f"retention {config.retention_days} days",
    )


def stockholm_schedule(
    config: Settings,
    schedule_id: str,
    run: Any,
    argument: Any,
    when: ScheduleCalendarSpec,
    note: str,
) -> Schedule:
    """A schedule that starts `run(argument)` on the task queue at `when`, Europe/Stockholm
    time. A run still going when the next is due means that one is skipped; a server that
    was away makes up a missed run once it is back (within a day). Its note names the
    settings it was made with (and the task queue), so a worker knows whether to update it
    (`keep_schedule`)."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            run, argument, id=schedule_id, task_queue=config.task_queue
        ),
        spec=ScheduleSpec(calendars=[when], time_zone_name=TIME_ZONE),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timedelta(days=1)),
        state=ScheduleState(note=f"{note}, task queue {config.task_queue}"),
    )


def digest(config: Settings) -> Schedule:
    """The schedule that starts `Digest` every Monday at 07:00 Europe/Stockholm on the task
    queue, looking AGREEMENTS_DIGEST_DAYS ahead; its note names the settings, as weeding's
    does. A server that was away makes up a missed Monday once it is back (within a day):
    the digests are still this week's, and each goes once per person and week."""
    return stockholm_schedule(
        config,
        DIGEST_SCHEDULE,
        DigestWorkflow.run,
        DigestInput(days=config.digest_days),
        ScheduleCalendarSpec(
            day_of_week=[ScheduleRange(DIGEST_WEEKDAY)], hour=[ScheduleRange(DIGEST_HOUR)]
        ),
        f"digest {config.digest_days} days",
    )


async def weeding_schedule(client: Client, config: Settings) -> str:
    """The weeding schedule as configured (`keep_schedule`). With AGREEMENTS_RETENTION_DAYS=0
    and AGREEMENTS_MESSAGE_RETENTION_DAYS=0 nothing is weeded: an existing schedule is
    deleted. (The messages' retention is the worker's own setting, read by its activity.)"""
    weeds = config.retention_days > 0 or config.message_retention_days > 0
    wanted = weeding(config) if weeds else None
    return await keep_schedule(client, WEEDING_SCHEDULE, wanted)


async def digest_schedule(client: Client, config: Settings) -> str:
    """The digest schedule as configured (`keep_schedule`); AGREEMENTS_DIGEST_DAYS=0 sends
    no digest: an existing schedule is deleted."""
    wanted = digest(config) if config.digest_days > 0 else None
    return await keep_schedule(client, DIGEST_SCHEDULE, wanted)


FINANCE_EXPORT_SCHEDULE = "agreements-finance-export"


async def finance_export_schedule(client: Client, config: Settings) -> str:
    """The schedule that starts `FinanceExport` daily at AGREEMENTS_FINANCE_EXPORT_HOUR (06)
    Europe/Stockholm on the task queue, when AGREEMENTS_FINANCE_EXPORT_DIR is set
    (`keep_schedule`; its note names the settings, as weeding's does). Unset: no export, and
    an existing schedule is deleted. A run still going when the next is due means that
    day's is skipped; a server that was away makes up a missed day once it is back (within
    a day), writing that day's files."""
    folder = config.finance_export_dir
    wanted = None
    if folder is not None:
        wanted = stockholm_schedule(
            config,
            FINANCE_EXPORT_SCHEDULE,
            FinanceExport.run,
            FinanceExportInput(),
            ScheduleCalendarSpec(hour=[ScheduleRange(config.finance_export_hour)]),
            f"finance export to {folder} at {config.finance_export_hour}:00, "
            f"{config.finance_export_days} days ahead",
        )
    return await keep_schedule(client, FINANCE_EXPORT_SCHEDULE, wanted)


async def keep_schedule(client: Client, schedule_id: str, wanted: Schedule | None) -> str:
    """Create the schedule `schedule_id` as `wanted`, or bring an existing one up to it when
    its note differs (several workers starting at once: the first creates it, the others
    find it as it should be). None: the setting turns it off, and an existing one is
    deleted. Says what it did: created, updated, unchanged, deleted, off, or unsupported
    (the time-skipping test server has no schedules)."""
    handle = client.get_schedule_handle(schedule_id)
    try:
        if wanted is None:
            try:
                await handle.delete()
            except RPCError as error:
                if error.status is not RPCStatusCode.NOT_FOUND:
                    raise
                return "off"
            return "deleted"
        try:
            await client.create_schedule(schedule_id, wanted)
            return "created"
        except ScheduleAlreadyRunningError:
            pass
        changed = False

        def update(current: ScheduleUpdateInput) -> ScheduleUpdate | None:
            nonlocal changed
            if current.description.schedule.state.note == wanted.state.note:
                return None
            changed = True
            return ScheduleUpdate(schedule=wanted)

        await handle.update(update)
        return "updated" if changed else "unchanged"
    except RPCError as error:
        if error.status is RPCStatusCode.UNIMPLEMENTED:
            return "unsupported"
        raise


async def connect(config: Settings, runtime: Runtime | None = None) -> Client:
    """The one way this service reaches Temporal: the embedded dev server, or a remote
    cluster with mutual TLS (client certificate and key) or an API key. A process that
    runs a worker gives the `runtime` that serves its metrics (agreements/telemetry.py)."""
    tls: TLSConfig | bool = False
    if config.temporal_tls_cert or config.temporal_api_key:
        tls = TLSConfig(
            server_root_ca_cert=_read(config.temporal_tls_ca),
            client_cert=_read(config.temporal_tls_cert),
            client_private_key=_read(config.temporal_tls_key),
        )
    return await Client.connect(
        config.temporal_target(),
        namespace=config.temporal_namespace,
        data_converter=data_converter(pydantic_data_converter, payload_keys(config)),
        tls=tls,
        api_key=config.temporal_api_key.get_secret_value() if config.temporal_api_key else None,
        runtime=runtime,
    )


def payload_keys(config: Settings) -> list[bytes]:
    """The keys that seal what this service stores in Temporal (models/codec.py
    `keys_for`): the setting's, or the embedded default's own."""
    return keys_for(config)


def _read(path: Path | None) -> bytes | None:
    return path.read_bytes() if path is not None else None


async def serve(config: Settings) -> None:
    logs.configure(config)
    client = await connect(config, telemetry.runtime_for(config))
    worker = build_worker(client, config, watch=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(
        f"worker on {config.temporal_target()} ({config.temporal_namespace}), "
        f"task queue {config.task_queue}",
        flush=True,
    )
    async with worker:
        await stop.wait()
    print("worker stopped", flush=True)


def main() -> int:
    try:
        asyncio.run(serve(settings()))
    except RuntimeError as error:  # cannot reach the server
        print(f"worker: {error}", file=sys.stderr)
        return 1
    return 0


def leave(code: int) -> NoReturn:
    """End a process that used a Temporal client without the interpreter's shutdown: the
    client's Rust threads can abort it ("Fatal Python error: PyGILState_Release ...
    finalizing", temporalio/sdk-python#300), turning a command that did its work into exit
    code -6. Output is flushed first; nothing else is left to clean up by then."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    leave(main())
