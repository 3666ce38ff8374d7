"""Run an agreement's whole life through the real workflow code on Temporal's time-skipping
test server, with a real SMTP sink, and report every email that reached the sink.

The test server's clock starts today and cannot go back, while the seed agreements lie in
the past: the workflow input carries a clock offset (zero in production) that puts the
workflow's "now" on the agreement's own dates. One agreement per environment: the test
server stalls with several time-skipping workflows at once.

With no scenario, the driver plays the plan scenario that `agreements preview` shows:
everyone signs the day the round starts, reports arrive on their due day, every party
approves an opt-in extension on its deadline. A scenario file scripts other decisions; a
step the workflow refuses is listed with its reason (`refused`) and the life goes on.

`taken_on_day` (`--from`): the agreement comes to the service that day already signed, as
`agreements create FILE --signed D` takes it on: no signing round, nothing sent for what
lies before that day (its reports count as received on their due day, as in the plan).

The SDK core logs to the Python logger `temporalio.core` (standard error when nothing is
configured), never to standard output, which is the command's JSON.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from email.message import Message
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowHistory,
    WorkflowUpdateFailedError,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from agreements import telemetry
from agreements.ops import OperationError, refusal, round_tokens, taken_on
from emails.sink import read_mail, start_sink
from models.agreement import Agreement, RenewalKind
from models.config import Settings, binary
from models.db import migrate
from models.lifecycle import RoundInfo, State
from models.plan import EndingKind, MilestoneKind, MilestoneStatus, Scenario
from models.prerequisites import CHECKLIST
from models.schedule import dates
from models.schedule.engine import plan
from worker import build_worker
from workflows.agreement import (
    AgreementInput,
    AgreementWorkflow,
    ConfirmPrerequisites,
    MilestoneUpdate,
    RenewalRequest,
    ReportDecision,
    Snapshot,
    StartSigning,
    TerminationRequest,
    WithdrawalOutcome,
    workflow_id,
)
from workflows.signing import (
    DeclineRequest,
    PaperSignature,
    SignatureRoundWorkflow,
    SignRequest,
)

COORDINATOR = "coordinator"
MILESTONE_ACTIONS = ("invoiced", "paid", "held", "approved", "returned")
# What each action needs besides `at`.
NEEDS: dict[str, tuple[str, ...]] = {
    "sign": (),
    "decline": (),
    "report": ("report", "occurrence"),
    "postpone": ("report", "occurrence", "new_due"),
    "renew": ("party",),
    "notice": ("party",),
    "approve": ("party",),
    "terminate": (),
    "withdraw": ("party",),
    "rescind": (),
    "withdrawal_end_all": (),
    "withdrawal_continue": (),
    "none": (),
    **{status: ("milestone",) for status in MILESTONE_ACTIONS},
}


class Step(BaseModel):
    """One scripted decision, at a local time on the agreement's own dates."""

    model_config = ConfigDict(extra="forbid")

    at: dt.datetime  # naive = Europe/Stockholm
    action: str  # sign, decline, report, postpone, renew, notice, approve, terminate,
    #              withdraw, rescind, withdrawal_end_all, withdrawal_continue, none, or a
    #              milestone's status: invoiced, paid, held, approved, returned
    milestone: str | None = None  # the milestone's id, for a status
    number: str | None = None  # an invoice's number
    note: str | None = None  # what a returned report lacks
    party: str | None = None
    signer: str | None = None  # email; default every signer
    report: str | None = None
    occurrence: int | None = None
    new_due: dt.date | None = None
    reason: str = "enligt scenariot"
    repayment: int | None = None
    planned: bool = False  # added by the plan scenario, not by the script

    @model_validator(mode="after")
    def _complete(self) -> Step:
        """An unknown action, or one without what it needs, is an error in the file, found
        before the simulation starts."""
        if self.action not in NEEDS:
            raise ValueError(f"action {self.action!r} is not one of {', '.join(NEEDS)}")
        missing = [name for name in NEEDS[self.action] if getattr(self, name) is None]
        if missing:
            raise ValueError(f"action {self.action!r} needs {', '.join(missing)}")
        return self

    def describe(self) -> str:
        """What the step asks, as a person reads it: "withdraw (party forening)"."""
        details = [
            f"{name} {value}"
            for name in ("party", "signer", "report", "occurrence", "milestone", "new_due")
            if (value := getattr(self, name)) is not None
        ]
        return self.action + (f" ({', '.join(details)})" if details else "")

    def label(self) -> str:
        """The step with its time: "2023-03-15 10:00 withdraw (party forening)"."""
        return f"{local(self.at).strftime('%Y-%m-%d %H:%M')} {self.describe()}"


class RefusedStep(BaseModel):
    """A scripted decision that was not taken, and why: the workflow's own reason."""

    at: str  # local time, ISO
    action: str
    step: str  # what it asked, as a person reads it: "withdraw (party forening)"
    reason: str  # in English; `code` and `params` word it in the reader's language
    code: str = ""
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def message(self) -> str:
        return self.reason


class ScenarioFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: list[Step] = Field(default_factory=list)
    plan_reports: bool = True  # submit every report on its due day unless a step says else
    plan_renewals: bool = True  # approve opt-in extensions on their deadline
    sign: bool = True  # everyone signs when the round starts


class ScenarioError(Exception):
    """A scripted decision the workflow rejected (when the caller collects no refusals), or
    a simulation that cannot be run as asked: the reason is in words a person can act on."""


class _NotTaken(Exception):
    """A scripted decision the driver could not put to the workflow (no signature round)."""


_runtime: Runtime | None = None


def _test_server_notice(record: logging.LogRecord) -> bool:
    """Drops the one warning every simulation would print: the time-skipping test server
    does not advertise a capability of newer servers (heartbeat details kept on failure),
    which the agreement's activities do not use."""
    return "activity_failure_include_heartbeat" not in record.getMessage()


def quiet_runtime(metrics: str | None = None) -> Runtime:
    """A Temporal runtime whose SDK core logs go to the Python logger `temporalio.core`
    (standard error when nothing is configured): by default the core writes them to
    standard output, before a command's JSON. One per process; the first call may ask it
    to serve the metrics at the address `metrics` (`simulate --metrics`)."""
    global _runtime
    if _runtime is None:
        logger = logging.getLogger("temporalio.core")
        logger.addFilter(_test_server_notice)
        logging_config = LoggingConfig(
            filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
            forwarding=LogForwardingConfig(logger=logger),
        )
        exporter = (
            PrometheusConfig(
                bind_address=metrics, counters_total_suffix=True, durations_as_seconds=True
            )
            if metrics
            else None
        )
        _runtime = Runtime(telemetry=TelemetryConfig(logging=logging_config, metrics=exporter))
        if metrics:
            telemetry.adopt(_runtime)  # the service's own metrics on the same exporter
    return _runtime


class SentEmail(BaseModel):
    send_at: str
    template: str
    to: str
    subject: str
    key: str
    message_id: str
    calendar: str | None


def free_port() -> int:
    """A free loopback port below the kernel's ephemeral range. A port the kernel hands out
    for `bind(0)` may be handed out again before we bind it: the Temporal dev server takes
    random free ports for its own services, and once took the Web UI port chosen for it.
    Ports below the range are never handed out that way."""
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(10_000, low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ephemeral_low() -> int:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32_768
    return max(low, 10_001)


@contextmanager
def mail_sink(folder: Path, external: int | None = None) -> Iterator[int]:
    if external is not None:
        yield external
        return
    port = free_port()
    controller = start_sink(folder, port=port)
    try:
        yield port
    finally:
        controller.stop()


def local(at: dt.datetime) -> dt.datetime:
    return at if at.tzinfo else at.replace(tzinfo=dates.STOCKHOLM)


def plan_steps(agreement: Agreement, script: ScenarioFile) -> list[Step]:
    """The decisions of the plan scenario, plus the script's own."""
    steps = list(script.steps)
    scripted = {(s.report, s.occurrence) for s in steps if s.report}
    full = plan(agreement, dt.datetime(1900, 1, 1, tzinfo=dt.UTC), scenario=Scenario.plan)
    noon = dt.time(12, 0)
    for m in full.milestones:
        if (
            script.plan_reports
            and m.kind is MilestoneKind.report_due
            and (m.report, m.occurrence) not in scripted
        ):
            steps.append(
                Step(
                    at=dt.datetime.combine(m.effective_date, noon),
                    action="report",
                    report=m.report,
                    occurrence=m.occurrence,
                    planned=True,
                )
            )
        if (
            script.plan_renewals
            and m.kind is MilestoneKind.extension_deadline
            and agreement.term.renewal is RenewalKind.opt_in
        ):
            for key, party in agreement.parties.items():
                if party.signs:
                    at = dt.datetime.combine(m.effective_date, noon)
                    steps.append(Step(at=at, action="approve", party=key, planned=True))
    return sorted(steps, key=lambda s: local(s.at))


async def simulate(
    agreement: Agreement,
    script: ScenarioFile | None = None,
    workdir: Path | None = None,
    smtp_port: int | None = None,
    histories: list[WorkflowHistory] | None = None,
    refused: list[RefusedStep] | None = None,
    taken_on_day: dt.date | None = None,
) -> tuple[list[SentEmail], Snapshot]:
    """`smtp_port`: send to a mail server the caller runs (writing to `workdir/mail`)
    instead of the simulation's own sink. `histories`: filled with the history of every
    run (each continue-as-new, each signature round), for replay tests. `refused`: filled
    with every scripted step the workflow refused, and the life goes on; without it a
    refusal raises ScenarioError. `taken_on_day`: the agreement comes to the service that
    day, already signed (the file's `signing.signed`, else the day its round was planned
    or its term started, if earlier): no round, nothing sent before that day. ScenarioError
    when the service would not take it on then (its term is over)."""
    script = script or ScenarioFile()
    if taken_on_day is not None:
        on = agreement.signing.signed or min(
            agreement.signing.planned or agreement.term.start, taken_on_day
        )
        try:
            live = taken_on(agreement, on, today=taken_on_day, flag="signing.signed")
        except OperationError as error:
            raise ScenarioError(f"--from {taken_on_day}: {error}") from None
        start_at = dates.local_time(taken_on_day, dt.time(0, 0))
    else:
        begin = agreement.signing.planned or agreement.term.start
        start_at = dates.local_time(begin, agreement.reminders.send_time)
        # The simulation plays the signing, even of an agreement imported as signed.
        live = agreement.model_copy(
            update={"signing": agreement.signing.model_copy(update={"signed": None})}
        )
    with tempfile.TemporaryDirectory(prefix="simulate-") as scratch:
        folder = workdir or Path(scratch)
        async with started(live, start_at, folder, smtp_port) as (env, handle, offset):
            snapshot = await _drive(env, handle, offset, live, script, refused, taken_on_day)
            if histories is not None:
                histories.extend(await collect_histories(env.client, agreement.id))
        return _sent(read_mail(folder / "mail")), snapshot


@asynccontextmanager
async def started(
    agreement: Agreement,
    at: dt.datetime,
    folder: Path,
    smtp_port: int | None = None,
) -> AsyncIterator[tuple[WorkflowEnvironment, WorkflowHandle[Any, Any], float]]:
    """A time-skipping Temporal server, a worker (database and mail under `folder`), and
    the agreement's workflow started at `at` on the agreement's own dates. Yields the
    environment, the workflow's handle and the clock offset in seconds."""
    with mail_sink(folder / "mail", smtp_port) as port:
        config = Settings(
            data_dir=folder,
            database_url=f"sqlite:///{folder / 'simulate.db'}",
            smtp_port=port,
            task_queue="simulate",
        )
        migrate(config.db_url())
        env = await WorkflowEnvironment.start_time_skipping(
            data_converter=pydantic_data_converter,
            test_server_existing_path=binary("temporal-test-server"),
            runtime=quiet_runtime(),
        )
        async with env, build_worker(env.client, config):
            offset = (at - await env.get_current_time()).total_seconds()
            handle = await env.client.start_workflow(
                AgreementWorkflow.run,
                AgreementInput(agreement=agreement, clock_offset_seconds=offset),
                id=workflow_id(agreement.id),
                task_queue=config.task_queue,
            )
            yield env, handle, offset
            status = (await handle.describe()).status
            if status == WorkflowExecutionStatus.RUNNING:
                await handle.terminate("simulation over")
            # An agreement runs for years: a simulation that ends it FAILED is a bug.
            if status == WorkflowExecutionStatus.FAILED:
                raise RuntimeError(f"the workflow of {agreement.id} ended FAILED")


async def _drive(
    env: WorkflowEnvironment,
    handle: WorkflowHandle[Any, Any],
    offset: float,
    agreement: Agreement,
    script: ScenarioFile,
    refused: list[RefusedStep] | None = None,
    taken_on_day: dt.date | None = None,
) -> Snapshot:
    client = env.client
    begin = agreement.signing.planned or agreement.term.start

    async def now() -> dt.datetime:
        moment = await env.get_current_time() + dt.timedelta(seconds=offset)
        return moment.astimezone(dates.STOCKHOLM)

    def refuse(step: Step, reason: str, code: str = "", **params: Any) -> None:
        if refused is None:
            raise ScenarioError(f"{step.label()}: {reason}")
        at = local(step.at).isoformat()
        refused.append(
            RefusedStep(
                at=at,
                action=step.action,
                step=step.describe(),
                reason=reason,
                code=code,
                params=params,
            )
        )

    steps = plan_steps(agreement, script)
    if taken_on_day is None:
        await handle.execute_update(
            AgreementWorkflow.confirm_prerequisites,
            ConfirmPrerequisites(keys=list(CHECKLIST), by=COORDINATOR),
        )
        snap = await handle.execute_update(
            "start_signing", StartSigning(by=COORDINATOR), result_type=Snapshot
        )
        if script.sign:
            await _sign_all(client, snap, begin)
    else:
        taken = dates.local_time(taken_on_day, dt.time(0, 0))
        earlier, steps = (
            [s for s in steps if local(s.at) < taken],
            [s for s in steps if local(s.at) >= taken],
        )
        for step in earlier:
            if not step.planned:
                refuse(
                    step,
                    f"it lies before the agreement came to the service ({taken_on_day})",
                    "before-taken-on",
                    day=taken_on_day.isoformat(),
                )
            elif step.action == "report":
                # As in the plan, a report before the hand-over came in on its due day: the
                # coordinator records it when taking the agreement on.
                with suppress(WorkflowUpdateFailedError):  # moot, as below
                    await _apply(client, handle, step, local(step.at).date())
    for index, step in enumerate(steps):
        wait = local(step.at) - await now()
        if wait > dt.timedelta(0):
            await env.sleep(wait)
        if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
            # The agreement has ended: what the plan expected later will not come.
            for later in steps[index:]:
                if not later.planned:
                    refuse(later, "the agreement had already ended")
            break
        try:
            await _apply(client, handle, step)
        except (WorkflowUpdateFailedError, RPCError, _NotTaken) as error:
            if not step.planned:
                reason, code, params = refusal(error)
                refuse(step, reason, code, **params)
            # A step of the plan scenario that a scripted decision made moot (a report for a
            # period that no longer exists after an early ending): skipped, as in life.
    state: Snapshot = await handle.query(AgreementWorkflow.get_state)
    for _ in range(50):  # a round that just ended reaches the agreement within moments
        if state.state is not State.signing:
            break
        await asyncio.sleep(0.1)
        state = await handle.query(AgreementWorkflow.get_state)
    if state.state in (State.draft, State.signing):
        # Not signed (declined, cancelled, expired): nothing more will happen on its own.
        await handle.terminate("simulation over: the agreement was never signed")
        return state
    result: Snapshot = await handle.result()
    return result


async def _round(client: Client, snap: Snapshot) -> tuple[WorkflowHandle[Any, Any], RoundInfo]:
    assert snap.round_workflow_id is not None
    round_handle = client.get_workflow_handle(snap.round_workflow_id)
    info: RoundInfo = await round_handle.query(SignatureRoundWorkflow.get_round)
    return round_handle, info


async def _sign_all(client: Client, snap: Snapshot, day: dt.date) -> None:
    round_handle, info = await _round(client, snap)
    tokens = await round_tokens(client, round_handle.id)
    for signer in info.signers:
        if info.method == "link":
            await round_handle.execute_update(
                SignatureRoundWorkflow.sign,
                SignRequest(token=tokens[signer.email], ip="127.0.0.1"),
            )
        else:
            await round_handle.execute_update(
                SignatureRoundWorkflow.sign_paper,
                PaperSignature(signer=signer.email, signed_on=day, recorded_by=COORDINATOR),
            )
    await _round_result(round_handle)


async def _round_result(round_handle: WorkflowHandle[Any, Any]) -> None:
    """Wait for the round to announce its outcome and end. Time skips while waiting, so a
    mail server's retry backoff passes in virtual time; when it skips far, the test server's
    history long-poll can come back empty ("No completion event found"): ask again."""
    for _ in range(100):
        try:
            await round_handle.result()
            return
        except RuntimeError as error:
            if "No completion event" not in str(error):
                raise
    raise RuntimeError("the signature round did not end")


async def _apply(
    client: Client,
    handle: WorkflowHandle[Any, Any],
    step: Step,
    submitted_on: dt.date | None = None,
) -> None:
    wf = AgreementWorkflow
    match step.action:
        case "report" | "postpone":
            assert step.report and step.occurrence
            await handle.execute_update(
                wf.record_report,
                ReportDecision(
                    report=step.report,
                    occurrence=step.occurrence,
                    submitted_on=submitted_on,
                    new_due=step.new_due if step.action == "postpone" else None,
                    by=COORDINATOR,
                ),
            )
        case "renew" | "notice" | "approve":
            assert step.party
            await handle.execute_update(
                wf.decide_renewal,
                RenewalRequest(party=step.party, renew=step.action != "notice", by=COORDINATOR),
            )
        case "terminate" | "withdraw" | "rescind":
            kind = {
                "terminate": EndingKind.termination,
                "withdraw": EndingKind.withdrawal,
                "rescind": EndingKind.rescission,
            }[step.action]
            await handle.execute_update(
                wf.terminate,
                TerminationRequest(
                    kind=kind,
                    party=step.party,
                    reason=step.reason,
                    repayment=step.repayment,
                    by=COORDINATOR,
                ),
            )
        case "withdrawal_end_all" | "withdrawal_continue":
            await handle.execute_update(
                wf.withdrawal_outcome,
                WithdrawalOutcome(end_all=step.action == "withdrawal_end_all", by=COORDINATOR),
            )
        case "decline" | "sign":
            snap: Snapshot = await handle.query(wf.get_state)
            if snap.round_workflow_id is None:
                raise _NotTaken("the agreement has no signature round")
            round_handle, info = await _round(client, snap)
            tokens = await round_tokens(client, round_handle.id)
            if step.signer is not None and step.signer not in tokens:
                raise _NotTaken(f"{step.signer} is not a signer of round {info.number}")
            for signer in info.signers:
                if step.signer not in (None, signer.email):
                    continue
                if step.action == "decline":
                    await round_handle.execute_update(
                        SignatureRoundWorkflow.decline,
                        DeclineRequest(token=tokens[signer.email], reason=step.reason),
                    )
                    await _round_result(round_handle)
                    break
                await round_handle.execute_update(
                    SignatureRoundWorkflow.sign, SignRequest(token=tokens[signer.email])
                )
        case "invoiced" | "paid" | "held" | "approved" | "returned":
            assert step.milestone
            await handle.execute_update(
                wf.record_milestone,
                MilestoneUpdate(
                    milestone=step.milestone,
                    status=MilestoneStatus(step.action),
                    number=step.number,
                    note=step.note,
                    by=COORDINATOR,
                ),
            )
        case "none":
            pass
        case other:
            raise ValueError(f"unknown scenario action {other!r}")


async def collect_histories(client: Client, agreement_id: str) -> list[WorkflowHistory]:
    """Every run of the agreement's workflow, first to last, and its signature rounds."""
    found: list[WorkflowHistory] = []
    handle = client.get_workflow_handle(workflow_id(agreement_id))
    run_id = (await handle.describe()).raw_description.workflow_execution_info.first_run_id
    pending = [(workflow_id(agreement_id), run_id)]
    while pending:
        wid, rid = pending.pop(0)
        history = await client.get_workflow_handle(wid, run_id=rid).fetch_history()
        found.append(history)
        for event in history.events:
            if event.HasField("child_workflow_execution_started_event_attributes"):
                child = event.child_workflow_execution_started_event_attributes.workflow_execution
                pending.append((child.workflow_id, child.run_id))
            if event.HasField("workflow_execution_continued_as_new_event_attributes"):
                attrs = event.workflow_execution_continued_as_new_event_attributes
                pending.append((wid, attrs.new_execution_run_id))
    return found


def _sent(messages: list[Message]) -> list[SentEmail]:
    out = []
    for msg in messages:
        calendar = None
        for part in msg.walk():
            if part.get_content_type() == "text/calendar":
                calendar = str(part.get_param("method") or "")
        key = str(msg["X-Agreement-Email-Key"])
        out.append(
            SentEmail(
                send_at=str(msg["X-Agreement-Planned-At"]),
                template=str(msg["X-Agreement-Template"]),
                to=str(msg["X-Sink-Recipient"]),
                subject=str(msg["Subject"]),
                key=key,
                message_id=str(msg["Message-ID"]),
                calendar=calendar,
            )
        )
    return sorted(out, key=lambda e: (e.send_at, e.key))
