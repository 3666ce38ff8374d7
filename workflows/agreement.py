"""One durable workflow per agreement, from draft to its end: a thin shell around the decider.

Everything the agreement decides is in `workflows.decider` (plain code, no Temporal): given
the state and a command it returns the new state and the effects, or a refusal. This shell

- takes each decision (a Temporal update) in one synchronous step: the validator asks the
  decider and rejects with its reason (nothing changes, nothing is written to history); the
  handler applies the decision and answers with the snapshot. No handler awaits between
  reading and writing the state, so decisions are taken one at a time, in order, without a
  lock; one that starts a signature round waits for the round to run, so its links work;
- carries out the effects in order in the main loop (terms, event log, round, emails). They
  stay in the state until done, so a worker that dies in between loses nothing, and they are
  drained (with every handler finished) before a continue-as-new and before the end; while
  it closes, decisions are refused with a reason to try again;
- never fails: a signature round that breaks becomes a round outcome, work that fails after
  every retry becomes an alert to the coordinator and is tried again an hour later.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from models.commands import (
        Actor,
        Amendment,
        Command,
        ConfirmPrerequisites,
        EditDraft,
        MilestoneUpdate,
        RenewalRequest,
        ReportDecision,
        RoundFinished,
        Snapshot,
        StartSigning,
        TerminationRequest,
        WithdrawalOutcome,
    )
    from models.core import AgreementInput, Core
    from models.effects import STEP_FAILED, Effects, RoundStart, SaveTerms, Step, Summary
    from models.lifecycle import (
        EmailSpec,
        SendOutcome,
        SendResult,
        terms_json,
        terms_sha256,
    )
    from models.plan import MilestoneState, PlannedEmail
    from workflows import decider
    from workflows.common import (
        Clock,
        carry_out_step,
        count_decision,
        record_all,
        save_summary,
        save_terms,
        send_email,
        send_emails,
        wait_until,
    )
    from workflows.decider import Decision, Outlook, Refusal, round_workflow_id, workflow_id
    from workflows.signing import RoundInput, SignatureRoundWorkflow

__all__ = [
    "Actor",
    "AgreementInput",
    "AgreementWorkflow",
    "Amendment",
    "ConfirmPrerequisites",
    "EditDraft",
    "MilestoneUpdate",
    "RenewalRequest",
    "ReportDecision",
    "Snapshot",
    "StartSigning",
    "TerminationRequest",
    "WithdrawalOutcome",
    "round_workflow_id",
    "workflow_id",
]

T = TypeVar("T")
RETRY_LATER = timedelta(hours=1)  # work that failed after every retry is tried again then
# Runs started before it carry out each kind of work in its own activity, and keep doing so
# until they continue as new (their histories replay that way); runs after it, one per step.
ONE_ACTIVITY_PER_STEP = "one-activity-per-step"
# Runs that reach their end write the archive package (activities/archive.py); runs that
# ended before this replay without it.
ARCHIVE_ON_END = "archive-on-end"
ARCHIVE_TIMEOUT = timedelta(minutes=10)
ARCHIVE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=10),
    maximum_interval=timedelta(minutes=10),
    non_retryable_error_types=["ArchiveIncomplete", "NoAgreement"],
)  # otherwise retried until the folder is there again


def reject(code: str, message: str, params: dict[str, Any] | None = None) -> ApplicationError:
    """A refusal for the client: the English message, then in the details its stable code
    and what it names (i18n/refusals.py says it in the reader's language)."""
    count_decision("refused")
    return ApplicationError(message, code, params or {}, type="Rejected", non_retryable=True)


def summary_of(
    outlook: Outlook, last: Summary | None, written: dict[str, bytes] | None
) -> Summary | None:
    """What the read model needs written after the `last` summary and the milestone rows
    `written` so far in this run; None if nothing changed. The first summary of a run
    writes every row (and removes any other), as does one after the plan's milestones
    changed; then only the rows that did."""
    if written is None or {m.id for m in outlook.milestones} != written.keys():
        changed, complete = outlook.milestones, True
    else:
        changed = [m for m in outlook.milestones if written[m.id] != decider.fingerprint(m)]
        complete = False
    if outlook.summary == last and not changed:
        return None
    return outlook.summary.model_copy(
        update={"milestones": changed, "milestones_complete": complete}
    )


class Failed(Exception):
    """Work that could not be done after every retry: what it was, and why."""

    def __init__(self, what: str, error: BaseException) -> None:
        cause = getattr(error, "cause", None) or error
        if isinstance(cause, ApplicationError) and cause.type == STEP_FAILED and cause.details:
            what = str(cause.details[0])  # the part of a step that failed
        super().__init__(f"{what}: {cause}")
        self.what = what
        self.error = str(cause)


@workflow.defn(name="Agreement")
class AgreementWorkflow:
    @workflow.init
    def __init__(self, data: AgreementInput) -> None:
        self.data = data
        self.clock = Clock(data.clock_offset_seconds)
        self.core: Core = data.core()
        self.pending: Effects = data.pending
        self.closing: str | None = None  # why decisions are refused while the run closes
        self.closing_code = "closing"  # its code: "ended" once the agreement has ended
        self.changed = False
        self.round_task: asyncio.Task[None] | None = None
        self.rounds_started = self.core.rounds if not self.core.round_open else 0
        self.alert: str | None = None  # work that failed and is tried again at `retry_at`
        self.retry_at: dt.datetime | None = None
        self._checked: tuple[Core, Any, Decision] | None = None
        self.one_step = False  # one activity per step (ONE_ACTIVITY_PER_STEP)

    # The decider, called with the workflow's clock ------------------------------------------

    def now(self) -> dt.datetime:
        return self.clock.now()

    def pure(self, step: Any, *args: Any) -> Any:
        # The decider is deterministic; the holiday library it calls reads locale data for
        # its translations the first time a year is asked for, which the sandbox forbids.
        with workflow.unsafe.sandbox_unrestricted():
            return step(self.core, *args)

    def apply(self, decision: Decision, wake: bool = True) -> None:
        """Take a decision's state and queue its effects; `wake` the main loop unless it is
        the main loop's own step."""
        self.core = decision.core
        if decision.effects:
            self.pending = self.pending + decision.effects
        self.changed = self.changed or wake

    def check(self, command: Command) -> Decision:
        """The decision a command would bring; the validator's verdict is kept for the
        handler that follows it on the same state."""
        if self.closing is not None:
            raise reject(self.closing_code, self.closing)
        if self._checked is not None:
            core, checked, known = self._checked
            if core is self.core and checked is command:
                return known
        try:
            decision: Decision = self.pure(decider.decide, command, self.now())
        except Refusal as refusal:
            raise reject(refusal.code, refusal.message, refusal.params) from None
        self._checked = (self.core, command, decision)
        return decision

    def take(self, command: Command) -> Snapshot:
        self.apply(self.check(command))
        self._checked = None
        count_decision("applied")
        return self.snapshot()

    def snapshot(self) -> Snapshot:
        result: Snapshot = self.pure(decider.snapshot, self.now(), self.alert)
        return result

    # Queries --------------------------------------------------------------------------------

    @workflow.query(name="state")
    def get_state(self) -> Snapshot:
        return self.snapshot()

    @workflow.query(name="upcoming")
    def get_upcoming(self, days: int = 90) -> list[MilestoneState]:
        result: list[MilestoneState] = self.pure(decider.upcoming, self.now(), days)
        return result

    @workflow.query(name="timeline")
    def get_timeline(self) -> list[MilestoneState]:
        """Every milestone, past (`past`) and coming, with written and effective dates and
        its status as of today."""
        result: list[MilestoneState] = self.pure(decider.timeline, self.now())
        return result

    @workflow.query(name="planned_emails")
    def get_planned_emails(self) -> list[PlannedEmail]:
        result: list[PlannedEmail] = self.pure(decider.planned_emails, self.now())
        return result

    # Decisions ------------------------------------------------------------------------------

    @workflow.update(name="edit_draft")
    def edit_draft(self, request: EditDraft) -> Snapshot:
        return self.take(request)

    @edit_draft.validator
    def _validate_edit_draft(self, request: EditDraft) -> None:
        self.check(request)

    @workflow.update(name="confirm_prerequisites")
    def confirm_prerequisites(self, request: ConfirmPrerequisites) -> Snapshot:
        return self.take(request)

    @confirm_prerequisites.validator
    def _validate_prerequisites(self, request: ConfirmPrerequisites) -> None:
        self.check(request)

    @workflow.update(name="start_signing")
    async def start_signing(self, request: StartSigning) -> Snapshot:
        self.take(request)
        await self.round_running(self.core.rounds)
        return self.snapshot()

    @start_signing.validator
    def _validate_start_signing(self, request: StartSigning) -> None:
        self.check(request)

    @workflow.update(name="record_report")
    def record_report(self, request: ReportDecision) -> Snapshot:
        return self.take(request)

    @record_report.validator
    def _validate_report(self, request: ReportDecision) -> None:
        self.check(request)

    @workflow.update(name="record_milestone")
    def record_milestone(self, request: MilestoneUpdate) -> Snapshot:
        return self.take(request)

    @record_milestone.validator
    def _validate_milestone(self, request: MilestoneUpdate) -> None:
        self.check(request)

    @workflow.update(name="decide_renewal")
    def decide_renewal(self, request: RenewalRequest) -> Snapshot:
        return self.take(request)

    @decide_renewal.validator
    def _validate_renewal(self, request: RenewalRequest) -> None:
        self.check(request)

    @workflow.update(name="terminate")
    def terminate(self, request: TerminationRequest) -> Snapshot:
        return self.take(request)

    @terminate.validator
    def _validate_terminate(self, request: TerminationRequest) -> None:
        self.check(request)

    @workflow.update(name="withdrawal_outcome")
    def withdrawal_outcome(self, request: WithdrawalOutcome) -> Snapshot:
        return self.take(request)

    @withdrawal_outcome.validator
    def _validate_withdrawal_outcome(self, request: WithdrawalOutcome) -> None:
        self.check(request)

    @workflow.update(name="amend")
    async def amend(self, request: Amendment) -> Snapshot:
        self.take(request)
        await self.round_running(self.core.rounds)
        return self.snapshot()

    @amend.validator
    def _validate_amend(self, request: Amendment) -> None:
        self.check(request)

    async def round_running(self, number: int) -> None:
        """Until the round's child workflow runs (or could not be started); not while the
        service is in trouble (the snapshot then carries the alert)."""
        await workflow.wait_condition(
            lambda: self.rounds_started >= number or self.alert is not None
        )

    # Carrying out the effects -----------------------------------------------------------------

    async def carry_out(self) -> None:
        """Do what was decided, in order, until nothing is left; raises Failed (with the
        undone work back in `pending`) when a step fails after every retry."""
        while self.pending:
            work, self.pending = self.pending, Effects()
            try:
                for terms in work.terms:
                    await self.run_store(
                        "the agreement's terms",
                        save_terms(
                            SaveTerms(
                                agreement_id=terms.id,
                                sha256=terms_sha256(terms),
                                terms_json=terms_json(terms),
                            )
                        ),
                    )
                if work.events:
                    await self.run_store("the event log", record_all(work.events))
            except Failed:
                self.pending = work + self.pending
                raise
            if work.round is not None:
                await self.start_round(work.round)
            if work.emails:
                await self.deliver(work.emails)

    async def carry_out_steps(self, summary: Summary | None) -> None:
        """Do what was decided and write the `summary`, one activity per step (terms,
        events, summary and the moment's emails together), until nothing is left; raises
        Failed (with the undone work back in `pending`) when a step fails after every
        retry. A step that starts a round sends its emails after the round has started."""
        while self.pending or summary is not None:
            work, self.pending = self.pending, Effects()
            emails = [] if work.round is not None else work.emails
            step = Step(
                terms=[
                    SaveTerms(agreement_id=t.id, sha256=terms_sha256(t), terms_json=terms_json(t))
                    for t in work.terms
                ],
                events=work.events,
                summary=summary,
                emails=emails,
            )
            try:
                results = await self.run_store("the agreement's step", carry_out_step(step))
            except Failed:
                self.pending = work + self.pending
                raise
            summary = None
            if work.round is not None:
                await self.start_round(work.round)
                if work.emails:
                    await self.deliver(work.emails)
            elif emails:
                await self.deliver(emails, results)

    async def run_store(self, what: str, job: Any) -> Any:
        try:
            return await job
        except Exception as error:  # ActivityError: every retry spent
            raise Failed(what, error) from None

    async def deliver(self, specs: list[EmailSpec], sent: list[SendResult] | None = None) -> None:
        """Send the emails of one moment in one activity (unless the step `sent` them
        already), then one by one any that met a passing fault (each with the whole retry
        policy)."""
        results = sent if sent is not None else await send_emails(specs)
        if results is None:  # the batch itself failed: every email goes alone
            results = [
                SendResult(key=s.key, outcome=SendOutcome.retry, message_id="", subject="")
                for s in specs
            ]
        alone = [s for s, r in zip(specs, results, strict=True) if r.outcome is SendOutcome.retry]
        for spec, result in zip(specs, results, strict=True):
            if result.outcome is not SendOutcome.retry:
                self.handled(spec, result)
        for spec, result in zip(
            alone, await asyncio.gather(*(send_email(s) for s in alone)), strict=True
        ):
            self.handled(spec, result)

    def handled(self, spec: EmailSpec, result: SendResult) -> None:
        if result.outcome is SendOutcome.failed:
            self.apply(self.pure(decider.email_handled, spec, result, self.now()), wake=False)

    async def start_round(self, start: RoundStart) -> None:
        terms = start.terms
        tokens = {s.email: f"{workflow.uuid4().hex}{workflow.uuid4().hex}" for s in start.signers}
        info = self.core.last_round
        try:
            assert info is not None and info.number == start.number
            child = await workflow.start_child_workflow(
                SignatureRoundWorkflow.run,
                RoundInput(
                    agreement_id=terms.id,
                    round=info,
                    tokens=tokens,
                    coordinator=start.coordinator,
                    others=start.others,
                    reminder_every_days=terms.signing.reminder_every_days,
                    max_reminders=terms.signing.max_reminders,
                    clock_offset_seconds=self.data.clock_offset_seconds,
                ),
                id=round_workflow_id(terms.id, start.number),
            )
        except Exception as error:  # the round could not start: the coordinator is told
            self.round_over(decider.round_failed(self.core, str(error), self.now()))
            self.rounds_started = max(self.rounds_started, start.number)
            return
        self.rounds_started = max(self.rounds_started, start.number)
        self.round_task = asyncio.create_task(self.await_round(child))

    async def await_round(self, child: Any) -> None:
        try:
            info = await child
            finished = RoundFinished(info=info)
        except Exception as error:  # ChildWorkflowError: terminated, timed out, failed
            cause = getattr(error, "cause", None) or error
            why = f"{type(cause).__name__}: {cause}"
            finished = decider.round_failed(self.core, why, self.now())
        self.round_over(finished)

    def round_over(self, finished: RoundFinished) -> None:
        try:
            self.apply(self.pure(decider.decide, finished, self.now()))
        except Refusal:  # not the running round (cannot happen; nothing to do if it does)
            workflow.logger.warning("round %s ended but was not running", finished.info.number)
        self.round_task = None

    # The life -------------------------------------------------------------------------------

    async def work(self, summary: Summary | None = None) -> bool:
        """Carry out what is pending (and write the `summary`); False (and an alert) if it
        failed after every retry."""
        if self.retry_at is not None and self.now() < self.retry_at:
            return False
        try:
            if self.one_step:
                await self.carry_out_steps(summary)
            else:
                await self.carry_out()
        except Failed as failed:
            await self.raise_alert(failed)
            return False
        self.alert = None
        self.retry_at = None
        return True

    async def raise_alert(self, failed: Failed) -> None:
        """The coordinator is told (at most once a day per kind of work), straight away:
        the event log may be what fails. Then the work waits an hour."""
        self.alert = f"{failed.what} could not be stored; tried again hourly"
        self.retry_at = self.now() + RETRY_LATER
        workflow.logger.warning("agreement work failed, retrying later: %s", failed)
        alert = self.pure(decider.alert, failed.what, failed.error, self.now())
        for spec in alert.effects.emails:
            await send_email(spec)

    @workflow.run
    async def run(self, data: AgreementInput) -> Snapshot:
        if self.core.taken_on is None:
            first = self.pure(decider.take_on, self.now(), self.handed_over(data), data.created_by)
            self.apply(first, wake=False)
        if workflow.patched(ONE_ACTIVITY_PER_STEP):
            self.one_step = True
            return await self.live()
        last_summary = None
        written: dict[str, bytes] | None = None  # the milestone rows written so far
        while True:
            # Cleared before the work, not before the wait: a decision that arrives while
            # this loop awaits an activity is never lost.
            self.changed = False
            if not await self.work():
                await self.sleep_until(self.retry_at)
                continue
            self.apply(self.pure(decider.tick, self.now()), wake=False)
            if self.pending:
                continue
            outlook = self.pure(decider.outlook, self.now())
            rows = {m.id: decider.fingerprint(m) for m in outlook.milestones}
            summary = summary_of(outlook, last_summary, written)
            if summary is not None:
                try:
                    await self.run_store("the agreement list", save_summary(summary))
                    last_summary, written = outlook.summary, rows
                except Failed as failed:
                    await self.raise_alert(failed)
                    continue
            if outlook.over:
                break
            await self.next_run_if_due(outlook)
            await self.sleep_until(outlook.wake)
        await self.close("the agreement has ended", final=True)
        return self.snapshot()

    async def live(self) -> Snapshot:
        """The life, one activity per step: what is due is decided, the summary of the
        state that follows is worked out, and both are carried out together; then the
        workflow sleeps until the next thing falls due or a decision wakes it."""
        last_summary = None
        written: dict[str, bytes] | None = None  # the milestone rows written so far
        while True:
            # Cleared before the work, not before the wait: a decision that arrives while
            # this loop awaits an activity is never lost.
            self.changed = False
            self.apply(self.pure(decider.tick, self.now()), wake=False)
            outlook = self.pure(decider.outlook, self.now())
            rows = {m.id: decider.fingerprint(m) for m in outlook.milestones}
            summary = summary_of(outlook, last_summary, written)
            if not await self.work(summary):
                await self.sleep_until(self.retry_at)
                continue
            if summary is not None:
                last_summary, written = outlook.summary, rows
            if self.pending or self.changed:
                continue  # decided meanwhile, or an email failed: the summary is behind
            if outlook.over:
                break
            await self.next_run_if_due(outlook)
            wake = outlook.wake
            del outlook, rows, summary
            await self.sleep_until(wake)
        await self.close("the agreement has ended", final=True)
        if workflow.patched(ARCHIVE_ON_END):
            await self.archive()
        return self.snapshot()

    async def archive(self) -> None:
        """The archive package, once everything is written and sent, put in the archive
        folder when the settings name one (activities/archive.py). A folder that is away is
        waited for; a package that cannot be made whole (a document the store lost) is said
        in the worker's log, and the agreement ends all the same: its package can still be
        downloaded from its page once the document is restored."""
        try:
            await workflow.execute_activity(
                "write_archive",
                self.core.agreement.id,
                result_type=str | None,  # type: ignore[arg-type]
                start_to_close_timeout=ARCHIVE_TIMEOUT,
                retry_policy=ARCHIVE_RETRY,
            )
        except Exception as error:  # ActivityError: ArchiveIncomplete or NoAgreement
            cause = getattr(error, "cause", None) or error
            workflow.logger.error("the archive package was not written: %s", cause)

    async def next_run_if_due(self, outlook: Outlook) -> None:
        """Go on as a new run at a period's end, or when the history has grown long; never
        while a signature round is open (it is this run's child)."""
        if not self.core.round_open and (
            workflow.info().is_continue_as_new_suggested()
            or outlook.periods_done > self.core.run_periods
        ):
            await self.close("the agreement is moving on to its next run; try again")
            workflow.continue_as_new(self.carry_over(outlook.periods_done))

    async def sleep_until(self, moment: dt.datetime | None) -> None:
        if moment is None:
            await workflow.wait_condition(lambda: self.changed)
        else:
            await wait_until(self.clock, lambda: self.changed, moment)

    async def close(self, why: str, final: bool = False) -> None:
        """Refuse new decisions, let running handlers finish and carry out everything
        decided. Before a continue-as-new, work that cannot be done now goes along with it;
        at the end, the run waits until it is done."""
        self.closing = why
        self.closing_code = "ended" if final else "closing"
        while True:
            await workflow.wait_condition(workflow.all_handlers_finished)
            if await self.work():
                if not self.pending and workflow.all_handlers_finished():
                    return
                continue
            if not final:
                return  # the pending work is carried over
            await self.sleep_until(self.retry_at)

    def handed_over(self, data: AgreementInput) -> dt.datetime:
        """When the coordinator handed the agreement over, on the workflow's clock: the
        client's word for it, trusted for at most a day before the first task."""
        now = self.now()
        if data.handed_over_at is None:
            return now
        moment = data.handed_over_at + self.clock.offset
        return max(min(moment, now), now - timedelta(days=1))

    def carry_over(self, periods_done: int) -> AgreementInput:
        values = dict(self.core)
        values["run_periods"] = periods_done
        return AgreementInput(
            **values,
            clock_offset_seconds=self.data.clock_offset_seconds,
            pending=self.pending,
        )
