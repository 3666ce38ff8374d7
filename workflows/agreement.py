"""One durable workflow per agreement, from draft to its end.

Every date comes from the schedule engine, called with the workflow's clock and the
decisions recorded so far; the workflow sleeps until the next planned email or change of
state and wakes early when a decision arrives. Decisions are Temporal updates: a validator
checks each against the terms and the state and rejects it with a reason (nothing changes);
the handler applies it and answers with the new state.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from datetime import timedelta
from typing import Any

from pydantic import Field
from temporalio import workflow
from temporalio.exceptions import ApplicationError
from temporalio.workflow import ChildWorkflowHandle

with workflow.unsafe.imports_passed_through():
    from activities.store import EventIn, SaveTerms, Summary
    from models.agreement import Agreement, RenewalKind, Role
    from models.lifecycle import (
        EmailSpec,
        EndingInfo,
        FailedInfo,
        RoundInfo,
        RoundOutcome,
        SendOutcome,
        SendResult,
        Signer,
        SignerStatus,
        State,
        terms_json,
        terms_sha256,
    )
    from models.plan import (
        Decisions,
        Ending,
        EndingKind,
        Frozen,
        MilestoneKind,
        Plan,
        PlannedEmail,
        PlannedMilestone,
        Recipient,
        RenewalDecision,
        ReportPostponement,
        ReportSubmission,
    )
    from models.prerequisites import CHECKLIST
    from models.validation import check
    from schedule import dates
    from schedule.engine import coordinator, everyone, plan, recipients
    from workflows.common import (
        STORE_RETRY,
        STORE_TIMEOUT,
        Clock,
        record,
        record_all,
        send_email,
        send_emails,
        wait_until,
    )
    from workflows.signing import RoundInput, SignatureRoundWorkflow

# Agreements started (or continued as new) on code with this patch send the emails of one
# moment in one activity; runs recorded before it keep one activity per email on replay.
BATCHED_EMAILS = "emails-in-one-activity"
# Likewise the events a step writes to the event log: one activity for the lot.
BATCHED_EVENTS = "events-in-one-activity"

# Emails with a date the reader should put in a calendar carry an .ics attachment.
CALENDAR_TEMPLATES = {
    "invoice_reminder",
    "report_reminder",
    "meeting_reminder",
    "notice_deadline_reminder",
    "extension_deadline_reminder",
    "review_reminder",
    "milestone_notice",
}


def workflow_id(agreement_id: str) -> str:
    return f"agreement-{agreement_id}"


def round_workflow_id(agreement_id: str, number: int) -> str:
    return f"agreement-{agreement_id}-round-{number}"


class AgreementInput(Frozen):
    """The workflow's input, and the state it carries over a continue-as-new."""

    agreement: Agreement
    state: State = State.draft
    decisions: Decisions = Field(default_factory=Decisions)
    clock_offset_seconds: float = 0.0
    taken_on: dt.datetime | None = None
    # When the client started it (wall clock); emails due from then on are sent even if the
    # first task runs later. None: from the first task on (simulations, older clients).
    handed_over_at: dt.datetime | None = None
    sent_until: dt.datetime | None = None  # every planned email up to here has been handled
    prerequisites: list[str] = Field(default_factory=list)
    rounds: int = 0
    last_round: RoundInfo | None = None
    amendment: Agreement | None = None  # proposed terms while their round runs
    calendar_sequence: int = 0
    event_seq: int = 0
    withdrawal_pending: Ending | None = None
    withdrawn: dict[str, dt.date] = Field(default_factory=dict)  # party: its last day
    ending_told: dt.date | None = None  # the end every party has been told of
    run_periods: int = 0  # periods completed; continue-as-new at each boundary


class Snapshot(Frozen):
    """What a coordinator sees: the answer to every update and the `state` query."""

    agreement_id: str
    title: str
    state: State
    start: dt.date
    end: dt.date
    ending: str | None
    signed_on: dt.date | None
    terms_sha256: str
    round: RoundInfo | None
    round_workflow_id: str | None
    prerequisites_missing: list[str]
    next: list[PlannedMilestone]
    withdrawn: dict[str, dt.date]


class Actor(Frozen):
    by: str = Field(default="coordinator", max_length=200)


class EditDraft(Actor):
    agreement: Agreement


class ConfirmPrerequisites(Actor):
    keys: list[str]


class StartSigning(Actor):
    pass


class ReportDecision(Actor):
    report: str
    occurrence: int
    submitted_on: dt.date | None = None  # default today
    new_due: dt.date | None = None  # a postponement instead of a submission


class RenewalRequest(Actor):
    party: str
    renew: bool  # opt-out: False is notice of non-renewal; opt-in: True is approval
    given_on: dt.date | None = None


class TerminationRequest(Actor):
    kind: EndingKind  # termination, withdrawal or rescission
    party: str | None = None  # who gives notice or withdraws
    reason: str = Field(min_length=1, max_length=2000)
    repayment: int | None = Field(default=None, ge=0)
    given_on: dt.date | None = None


class WithdrawalOutcome(Actor):
    end_all: bool  # the remaining parties end the agreement altogether (True) or go on


class Amendment(Actor):
    agreement: Agreement


def reject(message: str) -> ApplicationError:
    return ApplicationError(message, type="Rejected", non_retryable=True)


@workflow.defn(name="Agreement")
class AgreementWorkflow:
    @workflow.init
    def __init__(self, data: AgreementInput) -> None:
        self.clock = Clock(data.clock_offset_seconds)
        self.agreement = data.agreement
        self.state = data.state
        self.decisions = data.decisions
        self.prerequisites = set(data.prerequisites) | {
            key for key, done in data.agreement.prerequisites.items() if done
        }
        self.rounds = data.rounds
        self.last_round = data.last_round
        self.amendment = data.amendment
        self.calendar_sequence = data.calendar_sequence
        self.event_seq = data.event_seq
        self.withdrawal_pending = data.withdrawal_pending
        self.withdrawn = dict(data.withdrawn)
        self.ending_told = data.ending_told
        self.taken_on = data.taken_on
        self.sent_until = data.sent_until
        self.run_periods = data.run_periods
        self.data = data
        self.changed = False
        self.round_task: asyncio.Task[RoundInfo] | None = None
        self.pending_events: list[EventIn] = []
        self.outbox: list[EmailSpec] = []  # emails decided by handlers, sent by the main loop
        self.sha = terms_sha256(self.agreement)
        self._plan: Plan | None = None

    # Reading the agreement ----------------------------------------------------------------

    def now(self) -> dt.datetime:
        return self.clock.now()

    def today(self) -> dt.date:
        return self.now().date()

    def plan(self, decisions: Decisions | None = None) -> Plan:
        # The engine is deterministic; the holiday library it calls reads locale data for
        # its translations the first time a year is asked for, which the sandbox forbids.
        with workflow.unsafe.sandbox_unrestricted():
            return plan(self.agreement, self.now(), decisions or self.decisions)

    def snapshot(self) -> Snapshot:
        p = self.plan()
        today = self.today()
        return Snapshot(
            agreement_id=self.agreement.id,
            title=self.agreement.title,
            state=self.state,
            start=p.start,
            end=p.end,
            ending=self.decisions.ending.kind.value if self.decisions.ending else None,
            signed_on=self.decisions.signed_on,
            terms_sha256=self.sha,
            round=self.last_round,
            round_workflow_id=(
                round_workflow_id(self.agreement.id, self.rounds) if self.rounds else None
            ),
            prerequisites_missing=self.missing_prerequisites(),
            next=[m for m in p.milestones if m.effective_date >= today][:10],
            withdrawn=self.withdrawn,
        )

    def missing_prerequisites(self) -> list[str]:
        if self.agreement.kind != "iop":
            return []
        return [key for key in CHECKLIST if key not in self.prerequisites]

    @workflow.query(name="state")
    def get_state(self) -> Snapshot:
        return self.snapshot()

    @workflow.query(name="upcoming")
    def get_upcoming(self, days: int = 90) -> list[PlannedMilestone]:
        today = self.today()
        horizon = today + timedelta(days=days)
        return [m for m in self.plan().milestones if today <= m.effective_date <= horizon]

    @workflow.query(name="timeline")
    def get_timeline(self) -> list[PlannedMilestone]:
        """Every milestone, past (`past`) and coming, with written and effective dates."""
        return self.plan().milestones

    @workflow.query(name="planned_emails")
    def get_planned_emails(self) -> list[PlannedEmail]:
        return [e for e in self.plan().emails if self.sendable(e)]

    # Decisions ------------------------------------------------------------------------------

    def log(self, kind: str, summary: str, by: str | None, **data: str | int | bool | None) -> None:
        self.event_seq += 1
        self.pending_events.append(
            EventIn(
                event_key=f"{workflow_id(self.agreement.id)}:{self.event_seq}",
                agreement_id=self.agreement.id,
                at=self.now(),
                kind=kind,
                actor=by,
                summary=summary,
                data=data,
            )
        )
        self.changed = True

    @workflow.update(name="edit_draft")
    def edit_draft(self, request: EditDraft) -> Snapshot:
        self.agreement = request.agreement
        self.sha = terms_sha256(self.agreement)
        self.log("draft.edited", "draft terms edited", request.by, sha256=self.sha)
        return self.snapshot()

    @edit_draft.validator
    def _validate_edit_draft(self, request: EditDraft) -> None:
        if self.state is not State.draft:
            raise reject(f"only a draft can be edited; this agreement is {self.state.value}")
        if request.agreement.id != self.agreement.id:
            raise reject(f"the terms are for {request.agreement.id}, not {self.agreement.id}")
        problems = check(request.agreement)
        if problems:
            raise reject("; ".join(f"{p.location}: {p.message}" for p in problems))

    @workflow.update(name="confirm_prerequisites")
    def confirm_prerequisites(self, request: ConfirmPrerequisites) -> Snapshot:
        self.prerequisites |= set(request.keys)
        self.log("prerequisites.confirmed", "confirmed: " + ", ".join(request.keys), request.by)
        return self.snapshot()

    @confirm_prerequisites.validator
    def _validate_prerequisites(self, request: ConfirmPrerequisites) -> None:
        unknown = [key for key in request.keys if key not in CHECKLIST]
        if unknown:
            raise reject(
                f"unknown prerequisite {', '.join(unknown)}; the checklist has "
                + ", ".join(CHECKLIST)
            )
        if self.state is not State.draft:
            raise reject("the prerequisites are confirmed before signing, in the draft")

    @workflow.update(name="start_signing")
    async def start_signing(self, request: StartSigning) -> Snapshot:
        await self.begin_round("signing", self.agreement, request.by)
        return self.snapshot()

    @start_signing.validator
    def _validate_start_signing(self, request: StartSigning) -> None:
        if self.state is not State.draft:
            raise reject(f"a signature round starts from a draft; this one is {self.state.value}")
        missing = self.missing_prerequisites()
        if missing:
            raise reject("confirm the IOP prerequisites first: " + ", ".join(missing))

    async def begin_round(self, purpose: str, terms: Agreement, by: str) -> None:
        """Start the round's child workflow; returns once it runs, so its links work."""
        self.rounds += 1
        number = self.rounds
        now = self.now()
        sha = terms_sha256(terms)
        signers = [
            Signer(
                email=r.email,
                name=r.name,
                party=key,
                party_name=terms.parties[key].name,
                language=r.language.value,
                token=f"{workflow.uuid4().hex}{workflow.uuid4().hex}",
                status=(
                    SignerStatus.waiting
                    if terms.signing.mode.value == "sequential" and index > 0
                    else SignerStatus.invited
                ),
            )
            for index, (key, r) in enumerate(
                (key, r)
                for key, party in terms.parties.items()
                if party.signs and key not in self.withdrawn
                for r in recipients(terms, key, Role.signatory)
            )
        ]
        info = RoundInfo(
            number=number,
            purpose=purpose,
            method=terms.signing.method.value,
            mode=terms.signing.mode.value,
            started_at=now,
            expires_at=now + timedelta(days=terms.signing.expires_days),
            terms_sha256=sha,
            signers=signers,
        )
        self.last_round = info
        if purpose == "signing":
            self.state = State.signing
        self.log(f"{purpose}.round_started", f"signature round {number} started", by, round=number)
        await self.save_terms(terms)
        signing = {s.email for s in info.signers}
        others = [r for r in everyone(terms) if r.email not in signing]
        child = await workflow.start_child_workflow(
            SignatureRoundWorkflow.run,
            RoundInput(
                agreement_id=terms.id,
                round=info,
                coordinator=coordinator(terms),
                others=others,
                reminder_every_days=terms.signing.reminder_every_days,
                max_reminders=terms.signing.max_reminders,
                clock_offset_seconds=self.data.clock_offset_seconds,
            ),
            id=round_workflow_id(terms.id, info.number),
        )
        self.round_task = asyncio.create_task(self.await_round(child))

    async def await_round(self, child: ChildWorkflowHandle[Any, RoundInfo]) -> RoundInfo:
        result = await child
        self.changed = True
        return result

    def round_finished(self, info: RoundInfo) -> None:
        self.last_round = info
        self.round_task = None
        if info.outcome is RoundOutcome.completed:
            if info.purpose == "amendment" and self.amendment is not None:
                self.agreement = self.amendment
                self.sha = terms_sha256(self.agreement)
                self.amendment = None
                self.calendar_sequence += 1
                self.log("amendment.signed", "amendment signed; every later date re-planned", None)
            else:
                self.decisions = self.decisions.model_copy(update={"signed_on": self.today()})
                self.state = State.signed
                # The engine sends nothing planned before the signing day.
                self.log("signed", "signed by every party", None, sha256=self.sha)
        else:
            if info.purpose == "amendment":
                self.amendment = None
            else:
                self.state = State.draft
            self.log(
                f"{info.purpose}.round_{info.outcome.value}",
                f"signature round {info.number} {info.outcome.value}",
                None,
            )

    @workflow.update(name="record_report")
    def record_report(self, request: ReportDecision) -> Snapshot:
        if request.new_due is not None:
            change = ReportPostponement(
                report=request.report, occurrence=request.occurrence, new_due=request.new_due
            )
            self.decisions = self.decisions.model_copy(
                update={"postponements": [*self.decisions.postponements, change]}
            )
            self.log(
                "report.postponed",
                f"{request.report} #{request.occurrence} postponed to {request.new_due}",
                request.by,
            )
        else:
            done = ReportSubmission(
                report=request.report,
                occurrence=request.occurrence,
                submitted_on=request.submitted_on or self.today(),
            )
            self.decisions = self.decisions.model_copy(
                update={"reports": [*self.decisions.reports, done]}
            )
            self.log(
                "report.submitted", f"{request.report} #{request.occurrence} submitted", request.by
            )
        return self.snapshot()

    @record_report.validator
    def _validate_report(self, request: ReportDecision) -> None:
        self.require_signed(after_end=True)  # the last report is due after the end
        due = [
            m
            for m in self.plan().milestones
            if m.kind is MilestoneKind.report_due
            and m.report == request.report
            and m.occurrence == request.occurrence
        ]
        if not due:
            known = sorted({r.key for r in self.agreement.reports})
            raise reject(
                f"there is no report {request.report} number {request.occurrence}"
                f" in this agreement (reports: {', '.join(known) or 'none'})"
            )
        for s in self.decisions.reports:
            if s.report == request.report and s.occurrence == request.occurrence:
                raise reject(f"{request.report} #{request.occurrence} is already recorded")
        if request.submitted_on is not None and request.submitted_on > self.today():
            raise reject("a report cannot be submitted in the future")
        if request.new_due is not None and request.new_due <= due[0].effective_date:
            raise reject(f"a postponement must move the due date after {due[0].effective_date}")

    @workflow.update(name="decide_renewal")
    def decide_renewal(self, request: RenewalRequest) -> Snapshot:
        term_end, _ = self.open_decision()
        decision = RenewalDecision(
            party=request.party,
            term_end=term_end,
            renew=request.renew,
            given_on=request.given_on or self.today(),
        )
        self.decisions = self.decisions.model_copy(
            update={"renewals": [*self.decisions.renewals, decision]}
        )
        word = "renews" if request.renew else "gives notice of non-renewal"
        self.log("renewal.decided", f"{request.party} {word} (term ending {term_end})", request.by)
        p = self.plan()
        if p.end == term_end and p.ending in (EndingKind.non_renewal,):
            self.announce_ending(EndingKind.non_renewal, term_end, request.party, None, None)
        return self.snapshot()

    def open_decision(self) -> tuple[dt.date, dt.date]:
        """The term end now open for decision and its deadline (effective date)."""
        today = self.today()
        kinds = (MilestoneKind.notice_deadline, MilestoneKind.extension_deadline)
        for m in self.plan().milestones:
            if m.kind in kinds and m.effective_date >= today:
                return dt.date.fromisoformat(m.id.split(":", 1)[1]), m.effective_date
        raise reject("no renewal decision is open: every deadline has passed or none applies")

    @decide_renewal.validator
    def _validate_renewal(self, request: RenewalRequest) -> None:
        self.require_signed()
        party = self.agreement.parties.get(request.party)
        if party is None or not party.signs:
            raise reject(f"{request.party} is not a signing party of this agreement")
        renewal = self.agreement.term.renewal
        if renewal is RenewalKind.fixed:
            raise reject("this agreement has a fixed term: there is nothing to renew")
        term_end, deadline = self.open_decision()
        given = request.given_on or self.today()
        if given > self.today():
            raise reject("a decision cannot be dated in the future")
        if given > deadline:
            raise reject(f"the deadline for the term ending {term_end} was {deadline}")
        if any(
            d.party == request.party and d.term_end == term_end for d in self.decisions.renewals
        ):
            raise reject(f"{request.party} has already decided about the term ending {term_end}")
        if renewal is RenewalKind.opt_out and request.renew:
            raise reject("this agreement renews unless a party gives notice: nothing to approve")

    @workflow.update(name="terminate")
    def terminate(self, request: TerminationRequest) -> Snapshot:
        given = request.given_on or self.today()
        end = self.termination_end(request, given)
        party_name = self.agreement.parties[request.party].name if request.party else None
        if request.kind is EndingKind.withdrawal:
            assert request.party is not None
            pending = Ending(
                kind=EndingKind.withdrawal,
                decided_on=given,
                end=end,
                party=request.party,
                reason=request.reason,
            )
            self.log("withdrawal.notice", f"{request.party} withdraws from {end}", request.by)
            w = self.agreement.withdrawal
            if w is not None and w.remaining_decide:
                self.withdrawal_pending = pending
                info = EndingInfo(
                    kind="withdrawal",
                    end=end,
                    party=request.party,
                    party_name=party_name,
                    reason=request.reason,
                )
                for key in self.agreement.parties:
                    if key != request.party and key not in self.withdrawn:
                        for r in recipients(self.agreement, key, Role.contact):
                            self.queue_event_email(r, "withdrawal_decide", f"{request.party}", info)
                self.queue_event_email(
                    coordinator(self.agreement), "withdrawal_decide", f"{request.party}", info
                )
            else:
                self.decide_ending(pending, request.by)
            return self.snapshot()
        ending = Ending(
            kind=request.kind,
            decided_on=given,
            end=end,
            party=request.party,
            reason=request.reason,
            repayment=request.repayment,
        )
        self.decide_ending(ending, request.by)
        return self.snapshot()

    def termination_end(self, request: TerminationRequest, given: dt.date) -> dt.date:
        if request.kind is EndingKind.rescission:
            return given
        if request.kind is EndingKind.withdrawal:
            assert self.agreement.withdrawal is not None
            months = self.agreement.withdrawal.notice_months
        else:
            months = self.agreement.termination.notice_months or 0
        return dates.add_months(given, months)

    @terminate.validator
    def _validate_terminate(self, request: TerminationRequest) -> None:
        self.require_signed()
        if self.decisions.ending is not None:
            raise reject(f"the agreement already ends ({self.decisions.ending.kind.value})")
        if request.party is not None and request.party not in self.agreement.parties:
            raise reject(f"{request.party} is not a party to this agreement")
        given = request.given_on or self.today()
        if given > self.today():
            raise reject("a notice cannot be dated in the future")
        match request.kind:
            case EndingKind.rescission:
                if not self.agreement.termination.rescission:
                    raise reject("this agreement does not provide for rescission (hävning)")
                if request.repayment and not self.agreement.termination.repayment:
                    raise reject("this agreement does not provide for a repayment claim")
            case EndingKind.withdrawal:
                w = self.agreement.withdrawal
                if w is None:
                    raise reject("this agreement has no withdrawal rule")
                if request.party is None:
                    raise reject("name the party that withdraws")
                if w.opens is not None and given < w.opens:
                    raise reject(f"a party may withdraw from {w.opens}, not before")
                if self.withdrawal_pending is not None:
                    raise reject("a withdrawal is already waiting for the remaining parties")
            case EndingKind.termination:
                if self.agreement.termination.notice_months is None:
                    raise reject("this agreement has no termination with notice; see its terms")
            case _:
                raise reject(f"{request.kind.value} is not decided with terminate")
        if request.repayment and request.kind is not EndingKind.rescission:
            raise reject("a repayment claim goes with a rescission only")
        end = self.termination_end(request, given)
        if end > self.plan().end:
            raise reject(f"the agreement ends {self.plan().end} anyway, before {end}")

    @workflow.update(name="withdrawal_outcome")
    def withdrawal_outcome(self, request: WithdrawalOutcome) -> Snapshot:
        pending = self.withdrawal_pending
        assert pending is not None and pending.party is not None
        self.withdrawal_pending = None
        if request.end_all:
            self.decide_ending(pending, request.by)
        else:
            self.withdrawn[pending.party] = pending.end
            self.log(
                "withdrawal.continues",
                f"the remaining parties go on without {pending.party} after {pending.end}",
                request.by,
            )
        return self.snapshot()

    @withdrawal_outcome.validator
    def _validate_withdrawal_outcome(self, request: WithdrawalOutcome) -> None:
        if self.withdrawal_pending is None:
            raise reject("no withdrawal is waiting for a decision")

    @workflow.update(name="amend")
    async def amend(self, request: Amendment) -> Snapshot:
        self.amendment = request.agreement
        await self.begin_round("amendment", request.agreement, request.by)
        return self.snapshot()

    @amend.validator
    def _validate_amend(self, request: Amendment) -> None:
        self.require_signed()
        if request.agreement.id != self.agreement.id:
            raise reject(f"the amendment is for {request.agreement.id}, not {self.agreement.id}")
        if self.round_task is not None:
            raise reject("a signature round is already running")
        if request.agreement.term.start != self.agreement.term.start:
            raise reject("an amendment cannot move the start of the agreement")
        problems = check(request.agreement)
        if problems:
            raise reject("; ".join(f"{p.location}: {p.message}" for p in problems))

    def require_signed(self, after_end: bool = False) -> None:
        if self.state in (State.draft, State.signing):
            raise reject(f"the agreement is not signed yet ({self.state.value})")
        if self.state is State.ended and not after_end:
            raise reject("the agreement has ended")

    def decide_ending(self, ending: Ending, by: str) -> None:
        self.decisions = self.decisions.model_copy(update={"ending": ending})
        self.state = State.ending
        self.log(
            f"ending.{ending.kind.value}",
            f"{ending.kind.value}: the agreement ends {ending.end}"
            + (f" ({ending.reason})" if ending.reason else ""),
            by,
            repayment=ending.repayment,
        )
        party_name = self.agreement.parties[ending.party].name if ending.party else None
        self.announce_ending(ending.kind, ending.end, ending.party, party_name, ending)

    def announce_ending(
        self,
        kind: EndingKind,
        end: dt.date,
        party: str | None,
        party_name: str | None,
        ending: Ending | None,
    ) -> None:
        """Every party is told; the calendar entries after the end are cancelled."""
        self.ending_told = end
        if party_name is None and party is not None:
            party_name = self.agreement.parties[party].name
        info = EndingInfo(
            kind=kind.value,
            end=end,
            party=party,
            party_name=party_name,
            reason=ending.reason if ending else None,
            repayment=ending.repayment if ending else None,
        )
        full = self.plan(self.decisions.model_copy(update={"ending": None}))
        cancelled = [m for m in full.milestones if m.effective_date > end]
        people = [*everyone(self.agreement), coordinator(self.agreement)]
        seen: set[str] = set()
        for person in people:
            if person.email not in seen:
                seen.add(person.email)
                self.queue_event_email(person, "agreement_ended", kind.value, info, cancelled)

    def queue_event_email(
        self,
        to: Recipient,
        template: str,
        suffix: str,
        ending: EndingInfo | None = None,
        cancel: list[PlannedMilestone] | None = None,
    ) -> None:
        self.outbox.append(
            EmailSpec(
                key=f"{self.agreement.id}:event:{template}:{suffix}:{to.email}",
                agreement_id=self.agreement.id,
                terms_sha256=self.sha,
                template=template,
                to=to,
                ending=ending,
                cancel=cancel or [],
                sequence=self.calendar_sequence,
                planned_at=self.now(),
            )
        )
        self.changed = True

    # The life -------------------------------------------------------------------------------

    def sendable(self, email: PlannedEmail) -> bool:
        if self.decisions.signed_on is None:
            return False
        left = self.withdrawn.get(email.to.party or "")
        if left is not None and email.send_at.date() > left:
            return False  # the party has left the agreement
        return self.sent_until is None or email.send_at > self.sent_until

    def next_change(self, p: Plan) -> dt.datetime | None:
        """When the state moves on by itself: the term starts, an extension deadline passes
        (unapproved, the agreement ends), or the agreement ends."""
        if self.state is State.signed:
            return dates.local_time(p.start, dt.time(0, 0))
        if self.state in (State.active, State.ending):
            today = self.today()
            deadlines = [
                m.effective_date
                for m in p.milestones
                if m.kind is MilestoneKind.extension_deadline and m.effective_date >= today
            ]
            after = [dates.local_time(d + timedelta(days=1), dt.time(0, 0)) for d in deadlines]
            return min([*after, dates.local_time(p.end + timedelta(days=1), dt.time(0, 0))])
        return None

    def tell_unextended(self, p: Plan) -> None:
        """Opt-in: once the last extension deadline has passed without every approval, every
        party is told the agreement ends."""
        if p.ending is not EndingKind.not_extended or self.ending_told == p.end:
            return
        today = self.today()
        if self.state not in (State.active, State.ending, State.signed):
            return
        if any(
            m.kind is MilestoneKind.extension_deadline and m.effective_date >= today
            for m in p.milestones
        ):
            return
        self.log(
            "ending.not_extended", f"not every party approved: the agreement ends {p.end}", None
        )
        self.announce_ending(EndingKind.not_extended, p.end, None, None, None)

    def advance_state(self, p: Plan) -> None:
        today = self.today()
        if self.state is State.signed and today >= p.start:
            self.state = State.active
            self.log("active", f"the agreement runs from {p.start}", None)
        if self.state is State.active and self.decisions.ending is not None:
            self.state = State.ending
        if self.state in (State.active, State.ending) and today > p.end:
            self.state = State.ended
            self.log("ended", f"the agreement ended {p.end} ({p.ending.value})", None)

    async def flush(self) -> None:
        """Write what the handlers decided: events first, then their emails."""
        if self.pending_events and workflow.patched(BATCHED_EVENTS):
            while self.pending_events:
                events, self.pending_events = self.pending_events, []
                await record_all(events)
        while self.pending_events:
            await record(self.pending_events.pop(0))
        outbox, self.outbox = self.outbox, []
        await self.deliver_all(outbox)

    async def deliver_all(self, specs: list[EmailSpec]) -> None:
        """Send the emails of one moment: in one activity for the lot (agreements started
        or continued on this code), then one by one for any that met a passing fault."""
        if not specs:
            return
        if not workflow.patched(BATCHED_EMAILS):
            await asyncio.gather(*(self.deliver(spec) for spec in specs))
            return
        results = await send_emails(specs)
        if results is None:  # the batch itself failed: every email goes alone
            results = [
                SendResult(key=s.key, outcome=SendOutcome.retry, message_id="", subject="")
                for s in specs
            ]
        alone = []
        for spec, result in zip(specs, results, strict=True):
            if result.outcome is SendOutcome.retry:
                alone.append(spec)
            else:
                self.handled(spec, result)
        await asyncio.gather(*(self.deliver(spec) for spec in alone))

    async def deliver(self, spec: EmailSpec) -> None:
        self.handled(spec, await send_email(spec))

    def handled(self, spec: EmailSpec, result: SendResult) -> None:
        if result.outcome is SendOutcome.failed:
            self.log("email.failed", f"{spec.template} to {spec.to.email}: {result.error}", None)
            if spec.template != "send_failed":
                # The coordinator is told once per address that cannot be reached.
                self.outbox.append(
                    EmailSpec(
                        key=f"{self.agreement.id}:event:send_failed:{spec.to.email}",
                        agreement_id=self.agreement.id,
                        terms_sha256=self.sha,
                        template="send_failed",
                        to=coordinator(self.agreement),
                        failed=FailedInfo(
                            to=spec.to.email, subject=result.subject, error=result.error or ""
                        ),
                        planned_at=self.now(),
                    )
                )

    def planned_spec(
        self, email: PlannedEmail, milestones: dict[str, PlannedMilestone]
    ) -> EmailSpec:
        return EmailSpec(
            key=email.key,
            agreement_id=self.agreement.id,
            terms_sha256=self.sha,
            template=email.template,
            to=email.to,
            milestone=milestones[email.milestone_id],
            days_before=email.days_before,
            calendar="REQUEST" if email.template in CALENDAR_TEMPLATES else None,
            sequence=self.calendar_sequence,
            planned_at=email.send_at,
        )

    async def save_terms(self, terms: Agreement) -> None:
        await workflow.execute_activity(
            "save_terms",
            SaveTerms(
                agreement_id=terms.id, sha256=terms_sha256(terms), terms_json=terms_json(terms)
            ),
            start_to_close_timeout=STORE_TIMEOUT,
            retry_policy=STORE_RETRY,
        )

    async def save_summary(self, p: Plan) -> None:
        today = self.today()
        coming = next((m for m in p.milestones if m.effective_date >= today), None)
        await workflow.execute_activity(
            "update_summary",
            Summary(
                id=self.agreement.id,
                title=self.agreement.title,
                reference=self.agreement.reference,
                language=self.agreement.language.value,
                state=self.state.value,
                terms_sha256=self.sha,
                workflow_id=workflow.info().workflow_id,
                round_workflow_id=(
                    round_workflow_id(self.agreement.id, self.rounds) if self.rounds else None
                ),
                start=p.start,
                end=p.end,
                ending=self.decisions.ending.kind.value if self.decisions.ending else None,
                next_date=coming.effective_date if coming else None,
                next_title=coming.title if coming else None,
            ),
            start_to_close_timeout=STORE_TIMEOUT,
            retry_policy=STORE_RETRY,
        )

    @workflow.run
    async def run(self, data: AgreementInput) -> Snapshot:
        first_run = self.taken_on is None
        if self.taken_on is None:
            self.taken_on = self.now()
            # An agreement taken on after it started sends nothing for what was already over
            # when it was handed over; what fell due while a busy worker had not yet run its
            # first task still goes out, late rather than never.
            self.sent_until = self.handed_over(data)
            signed = self.agreement.signing.signed
            if signed is not None and self.state is State.draft:
                self.decisions = self.decisions.model_copy(update={"signed_on": signed})
                self.state = State.signed
                self.log("signed", f"imported as signed on {signed}", None, sha256=self.sha)
        await self.save_terms(self.agreement)
        if first_run:
            self.log("created", f"taken on as {self.state.value}", None, sha256=self.sha)
        last_summary: tuple[State, dt.date, str, int] | None = None
        while True:
            # Cleared before the work, not before the wait: a decision that arrives while
            # this loop awaits an activity is never lost.
            self.changed = False
            if self.round_task is not None and self.round_task.done():
                self.round_finished(self.round_task.result())
            p = self.plan()
            self.advance_state(p)
            self.tell_unextended(p)
            await self.flush()
            summary_key = (self.state, p.end, self.sha, self.rounds)
            if last_summary is None or summary_key != last_summary:
                await self.save_summary(p)
                last_summary = summary_key
            due = [e for e in p.emails if self.sendable(e)]
            if self.state is State.ended and not due:
                break  # ended, and the last report after the end is in (or overdue and told)
            wake_at = [t for t in (due[0].send_at if due else None, self.next_change(p)) if t]
            if not wake_at:
                await workflow.wait_condition(lambda: self.changed or self.round_done())
                continue
            if await wait_until(
                self.clock, lambda: self.changed or self.round_done(), min(wake_at)
            ):
                continue
            now = self.now()
            p = self.plan()
            milestones = {m.id: m for m in p.milestones}
            batch = [e for e in p.emails if self.sendable(e) and e.send_at <= now]
            await self.deliver_all([self.planned_spec(e, milestones) for e in batch])
            self.sent_until = now
            if self.should_continue_as_new(p):
                await self.flush()
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self.carry_over(p))
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.snapshot()

    def handed_over(self, data: AgreementInput) -> dt.datetime:
        """When the coordinator handed the agreement over, on the workflow's clock: the
        client's word for it, trusted for at most a day before the first task."""
        now = self.now()
        if data.handed_over_at is None:
            return now
        moment = data.handed_over_at + self.clock.offset
        return max(min(moment, now), now - timedelta(days=1))

    def round_done(self) -> bool:
        return self.round_task is not None and self.round_task.done()

    def should_continue_as_new(self, p: Plan) -> bool:
        if self.round_task is not None:
            return False  # a running child stays with this run
        if workflow.info().is_continue_as_new_suggested():
            return True
        today = self.today()
        done = sum(1 for m in p.milestones if m.kind is MilestoneKind.period_end and m.date < today)
        return done > self.run_periods

    def carry_over(self, p: Plan) -> AgreementInput:
        today = self.today()
        done = sum(1 for m in p.milestones if m.kind is MilestoneKind.period_end and m.date < today)
        return AgreementInput(
            agreement=self.agreement,
            state=self.state,
            decisions=self.decisions,
            clock_offset_seconds=self.data.clock_offset_seconds,
            taken_on=self.taken_on,
            sent_until=self.sent_until,
            prerequisites=sorted(self.prerequisites),
            rounds=self.rounds,
            last_round=self.last_round,
            amendment=self.amendment,
            calendar_sequence=self.calendar_sequence,
            event_seq=self.event_seq,
            withdrawal_pending=self.withdrawal_pending,
            withdrawn=self.withdrawn,
            ending_told=self.ending_told,
            run_periods=done,
        )
