"""What an agreement decides, as plain code: no Temporal, no I/O, no clock of its own.

Given the agreement's state (`Core`), a command and the time, `decide` returns the new state
and the effects to carry out (events for the log, emails, terms to store, a signature round
to start), or raises `Refusal` with a stable code and a reason a coordinator can read.
`take_on` is the first step of a new agreement, `tick` the step when time has come (a term
starts, a deadline passes, emails fall due). The workflow (workflows/agreement.py) is a thin
shell around these: it runs one step at a time, carries out the effects and sleeps until
`next_wake`. The schedule engine computes every date from the terms and the decisions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from models.agreement import Agreement, ContributionKind, RenewalKind, Role
from models.commands import (
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
from models.core import Core
from models.effects import Effects, EventIn, RoundStart, Summary
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
    terms_sha256,
)
from models.plan import (
    SETTABLE,
    Decisions,
    Ending,
    EndingKind,
    MilestoneKind,
    MilestoneMark,
    MilestoneState,
    MilestoneStatus,
    Plan,
    PlannedEmail,
    PlannedMilestone,
    Recipient,
    RenewalDecision,
    ReportPostponement,
    ReportSubmission,
)
from models.prerequisites import CHECKLIST
from models.schedule import dates
from models.schedule.engine import END_MILESTONE, coordinator, everyone, plan, recipients
from models.validation import check

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

USER_AGENT_MAX = 300

# A repayment claimed with a rescission is due this many days after the claim is sent (the
# day the rescission is recorded), on the next business day if that is a day off (§ 2).
REPAYMENT_DAYS = 30


def workflow_id(agreement_id: str) -> str:
    return f"agreement-{agreement_id}"


def round_workflow_id(agreement_id: str, number: int) -> str:
    return f"agreement-{agreement_id}-round-{number}"


# A refusal's parameter: what the reason names (a state, a date, a party's name, a list of
# keys), plain JSON for the ApplicationError's details.
Param = str | int | list[str] | None


class Refusal(Exception):
    """A command the agreement does not take: nothing changes. `code` is stable, for
    programs; `message` is the reason, in English; `params` what the reason names, for the
    interfaces to say it in the reader's language (i18n/refusals.py)."""

    def __init__(self, code: str, message: str, **params: Param) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.params = params


@dataclass(frozen=True)
class Decision:
    core: Core
    effects: Effects = field(default_factory=Effects)


# The steps ----------------------------------------------------------------------------------


def decide(core: Core, command: Command, now: dt.datetime) -> Decision:
    """Apply one command; raises Refusal when the agreement does not take it."""
    step = _Step(core, now)
    match command:
        case EditDraft():
            step.edit_draft(command)
        case ConfirmPrerequisites():
            step.confirm_prerequisites(command)
        case StartSigning():
            step.start_signing(command)
        case ReportDecision():
            step.record_report(command)
        case MilestoneUpdate():
            step.record_milestone(command)
        case RenewalRequest():
            step.decide_renewal(command)
        case TerminationRequest():
            step.terminate(command)
        case WithdrawalOutcome():
            step.withdrawal_outcome(command)
        case Amendment():
            step.amend(command)
        case RoundFinished():
            step.round_finished(command)
        case _:  # pragma: no cover - the type says it cannot happen
            raise Refusal(
                "unknown",
                f"unknown command {type(command).__name__}",
                command=type(command).__name__,
            )
    return step.done()


def take_on(
    core: Core, now: dt.datetime, handed_over: dt.datetime, by: str | None = None
) -> Decision:
    """The first step of a new agreement: from when emails are due, signed on import;
    `by` is who handed it over."""
    step = _Step(core, now)
    step.taken_on = now
    step.sent_until = handed_over
    signed = step.agreement.signing.signed
    if signed is not None and step.state is State.draft:
        step.decisions = step.decisions.model_copy(update={"signed_on": signed})
        step.state = State.signed
        step.log(
            "signed",
            f"imported as signed on {signed}",
            by,
            sha256=step.sha,
            signed_on=signed.isoformat(),
            imported=True,
        )
    step.save_terms(step.agreement)
    step.log(
        "created", f"taken on as {step.state.value}", by, sha256=step.sha, state=step.state.value
    )
    return step.done()


def tick(core: Core, now: dt.datetime) -> Decision:
    """Time has come: the state moves on by itself and every email due by now goes out."""
    step = _Step(core, now)
    p = step.plan()
    step.advance_state(p)
    step.tell_unextended(p)
    step.send_due()
    return step.done()


def email_handled(core: Core, spec: EmailSpec, result: SendResult, now: dt.datetime) -> Decision:
    """An email the mail server refused for good: logged, and the coordinator is told once
    per address that cannot be reached."""
    step = _Step(core, now)
    if result.outcome is SendOutcome.failed:
        step.log(
            "email.failed",
            f"{spec.template} to {spec.to.email}: {result.error}",
            None,
            template=spec.template,
            to=spec.to.email,
            to_name=spec.to.name,
            error=result.error,
        )
        if spec.template not in ("send_failed", "service_alert"):
            step.emails.append(
                EmailSpec(
                    key=f"{step.agreement.id}:event:send_failed:{spec.to.email}",
                    agreement_id=step.agreement.id,
                    terms_sha256=step.sha,
                    template="send_failed",
                    to=coordinator(step.agreement),
                    failed=FailedInfo(
                        to=spec.to.email, subject=result.subject, error=result.error or ""
                    ),
                    planned_at=now,
                )
            )
    return step.done()


def alert(core: Core, what: str, error: str, now: dt.datetime) -> Decision:
    """Work that failed after every retry: the coordinator is told (once per kind of work
    and day) and the shell tries again later."""
    step = _Step(core, now)
    step.log(
        "service.alert",
        f"{what} failed and will be tried again: {error}",
        None,
        what=what,
        error=error,
    )
    step.emails.append(
        EmailSpec(
            key=f"{step.agreement.id}:event:service_alert:{what}:{now.date().isoformat()}",
            agreement_id=step.agreement.id,
            terms_sha256=step.sha,
            template="service_alert",
            to=coordinator(step.agreement),
            failed=FailedInfo(to=coordinator(step.agreement).email, subject=what, error=error),
            planned_at=now,
        )
    )
    return step.done()


def round_failed(core: Core, error: str, now: dt.datetime) -> RoundFinished:
    """The command for a round that broke instead of ending: its last known state, failed."""
    info = core.last_round
    assert info is not None
    return RoundFinished(
        info=info.model_copy(update={"outcome": RoundOutcome.failed, "reason": error[:500]}),
        error=error[:500],
    )


# Reading the agreement --------------------------------------------------------------------------


def planned(core: Core, now: dt.datetime, decisions: Decisions | None = None) -> Plan:
    return plan(core.agreement, now, decisions or core.decisions)


def missing_prerequisites(core: Core) -> list[str]:
    return _missing(core.agreement, core.prerequisites)


def _missing(agreement: Agreement, confirmed: list[str]) -> list[str]:
    """The IOP checklist keys neither the file nor a coordinator has confirmed."""
    if agreement.kind != "iop":
        return []
    have = set(confirmed) | {k for k, done in agreement.prerequisites.items() if done}
    return [key for key in CHECKLIST if key not in have]


def statuses(core: Core, now: dt.datetime, p: Plan | None = None) -> list[MilestoneState]:
    """Every milestone with its status as set (before `as_of`), in the plan's order."""
    p = p or planned(core, now)
    last: dict[str, MilestoneMark] = {}
    for mark in core.decisions.marks:
        last[mark.milestone] = mark
    return [_state(core, m, last.get(m.id)) for m in p.milestones]


def _state(core: Core, m: PlannedMilestone, mark: MilestoneMark | None) -> MilestoneState:
    values = m.model_dump()
    if mark is not None:
        return MilestoneState(
            **values,
            status=mark.status,
            status_on=mark.on,
            status_by=mark.by,
            number=_number(core, m.id) if mark.status is MilestoneStatus.paid else mark.number,
            note=mark.note,
        )
    if core.taken_on is not None and m.effective_date < core.taken_on.date():
        # Before the service took the agreement on (one under way, imported as signed):
        # whatever happened then was handled outside it; nothing is outstanding.
        return MilestoneState(**values, status=MilestoneStatus.passed)
    if m.kind in (MilestoneKind.notice_deadline, MilestoneKind.extension_deadline):
        return _deadline(core, m, values)
    return unrecorded(m)


# Where a milestone stands while nothing is recorded for it (a deadline: open until the
# parties decide).
FIRST_STATUS = {
    MilestoneKind.report_due: MilestoneStatus.due,
    MilestoneKind.invoice: MilestoneStatus.to_invoice,
    MilestoneKind.notice_deadline: MilestoneStatus.open,
    MilestoneKind.extension_deadline: MilestoneStatus.open,
}


def unrecorded(m: PlannedMilestone) -> MilestoneState:
    """The milestone as it stands with nothing recorded: a new agreement's, a draft's."""
    return MilestoneState(
        **m.model_dump(), status=FIRST_STATUS.get(m.kind, MilestoneStatus.planned)
    )


def _number(core: Core, milestone: str) -> str | None:
    """A paid instalment keeps the number it was invoiced with."""
    for mark in core.decisions.marks:
        if mark.milestone == milestone and mark.status is MilestoneStatus.invoiced:
            return mark.number
    return None


def _deadline(core: Core, m: PlannedMilestone, values: dict[str, object]) -> MilestoneState:
    """Decided once every signing party has decided about the term ending, or once a notice
    of non-renewal ends it; open until then."""
    term_end = dt.date.fromisoformat(m.id.split(":", 1)[1])
    made = [d for d in core.decisions.renewals if d.term_end == term_end]
    signing = [key for key, party in core.agreement.parties.items() if party.signs]
    notice = core.agreement.term.renewal is RenewalKind.opt_out and any(not d.renew for d in made)
    if made and (notice or {d.party for d in made} >= set(signing)):
        last = made[-1]
        names = ", ".join(core.agreement.parties[d.party].name for d in made)
        return MilestoneState(
            **values,
            status=MilestoneStatus.decided,
            status_on=last.given_on,
            status_by=last.by or last.party,
            note=names,
        )
    return MilestoneState(**values, status=MilestoneStatus.open)


def snapshot(core: Core, now: dt.datetime, alert: str | None = None) -> Snapshot:
    p = planned(core, now)
    today = now.date()
    return Snapshot(
        agreement_id=core.agreement.id,
        title=core.agreement.title,
        state=core.state,
        start=p.start,
        end=p.end,
        ending=core.decisions.ending.kind.value if core.decisions.ending else None,
        signed_on=core.decisions.signed_on,
        terms_sha256=terms_sha256(core.agreement),
        round=core.last_round.public() if core.last_round else None,
        round_workflow_id=(
            round_workflow_id(core.agreement.id, core.rounds) if core.rounds else None
        ),
        prerequisites_missing=missing_prerequisites(core),
        next=[m.as_of(today) for m in statuses(core, now, p) if m.effective_date >= today][:10],
        withdrawn=core.withdrawn,
        withdrawal_pending=core.withdrawal_pending.party if core.withdrawal_pending else None,
        alert=alert,
    )


def upcoming(core: Core, now: dt.datetime, days: int) -> list[MilestoneState]:
    today = now.date()
    horizon = today + timedelta(days=max(0, min(days, 36600)))
    return [m.as_of(today) for m in statuses(core, now) if today <= m.effective_date <= horizon]


def timeline(core: Core, now: dt.datetime) -> list[MilestoneState]:
    """Every milestone, past and coming, with its status as of today."""
    today = now.date()
    return [m.as_of(today) for m in statuses(core, now)]


def planned_emails(core: Core, now: dt.datetime) -> list[PlannedEmail]:
    step = _Step(core, now)
    return [e for e in step.plan().emails if step.sendable(e)]


def summary(core: Core, now: dt.datetime, p: Plan | None = None) -> Summary:
    p = p or planned(core, now)
    today = now.date()
    coming = next((m for m in p.milestones if m.effective_date >= today), None)
    return Summary(
        id=core.agreement.id,
        title=core.agreement.title,
        reference=core.agreement.reference,
        language=core.agreement.language.value,
        state=core.state.value,
        terms_sha256=terms_sha256(core.agreement),
        workflow_id=workflow_id(core.agreement.id),
        round_workflow_id=(
            round_workflow_id(core.agreement.id, core.rounds) if core.rounds else None
        ),
        start=p.start,
        end=p.end,
        ending=core.decisions.ending.kind.value if core.decisions.ending else None,
        next_date=coming.effective_date if coming else None,
        next_title=coming.title if coming else None,
    )


@dataclass(frozen=True)
class Outlook:
    """What the shell needs between steps, from one plan."""

    summary: Summary  # the agreement's row in the read model
    milestones: list[MilestoneState]  # its milestone rows, as set (before `as_of`)
    wake: dt.datetime | None  # the first email still to send, or the next change of state
    over: bool  # ended, and the last report after the end is in (or overdue and told)
    periods_done: int  # periods completed: a new run starts at each boundary


def outlook(core: Core, now: dt.datetime) -> Outlook:
    step = _Step(core, now)
    p = step.plan()
    due = next((e.send_at for e in p.emails if step.sendable(e)), None)
    moments = [t for t in (due, step.next_change(p)) if t is not None]
    today = now.date()
    return Outlook(
        summary=summary(core, now, p),
        milestones=[m.model_copy(update={"past": False}) for m in statuses(core, now, p)],
        wake=min(moments) if moments else None,
        over=core.state is State.ended and not core.round_open and due is None,
        periods_done=sum(
            1 for m in p.milestones if m.kind is MilestoneKind.period_end and m.date < today
        ),
    )


def fingerprint(row: MilestoneState) -> bytes:
    """A milestone row in 16 bytes: what the shell keeps of the rows it wrote, to write only
    those that changed since. The rows themselves, kept between steps, were the largest
    part of what a cached agreement holds in Python."""
    return hashlib.blake2b(row.model_dump_json().encode(), digest_size=16).digest()


# One step ---------------------------------------------------------------------------------------


class _Step:
    """A working copy of the state for one step; `done()` freezes it with its effects."""

    def __init__(self, core: Core, now: dt.datetime) -> None:
        self.core = core
        self.now = now
        self.agreement = core.agreement
        self.state = core.state
        self.decisions = core.decisions
        self.taken_on = core.taken_on
        self.sent_until = core.sent_until
        self.prerequisites = list(core.prerequisites)
        self.rounds = core.rounds
        self.round_open = core.round_open
        self.last_round = core.last_round
        self.amendment = core.amendment
        self.calendar_sequence = core.calendar_sequence
        self.event_seq = core.event_seq
        self.withdrawal_pending = core.withdrawal_pending
        self.withdrawn = dict(core.withdrawn)
        self.ending_told = core.ending_told
        self.sha = terms_sha256(core.agreement)
        self.terms: list[Agreement] = []
        self.events: list[EventIn] = []
        self.emails: list[EmailSpec] = []
        self.round: RoundStart | None = None
        self._plans: dict[str, Plan] = {}

    def done(self) -> Decision:
        core = self.core.model_copy(
            update={
                "agreement": self.agreement,
                "state": self.state,
                "decisions": self.decisions,
                "taken_on": self.taken_on,
                "sent_until": self.sent_until,
                "prerequisites": sorted(set(self.prerequisites)),
                "rounds": self.rounds,
                "round_open": self.round_open,
                "last_round": self.last_round,
                "amendment": self.amendment,
                "calendar_sequence": self.calendar_sequence,
                "event_seq": self.event_seq,
                "withdrawal_pending": self.withdrawal_pending,
                "withdrawn": self.withdrawn,
                "ending_told": self.ending_told,
            }
        )
        return Decision(
            core,
            Effects(terms=self.terms, events=self.events, round=self.round, emails=self.emails),
        )

    # Reading ------------------------------------------------------------------------------

    def today(self) -> dt.date:
        return self.now.date()

    def plan(self, decisions: Decisions | None = None) -> Plan:
        decisions = decisions or self.decisions
        key = f"{self.sha}:{decisions.model_dump_json()}"
        if key not in self._plans:
            self._plans[key] = plan(self.agreement, self.now, decisions)
        return self._plans[key]

    def sendable(self, email: PlannedEmail) -> bool:
        if self.decisions.signed_on is None:
            return False
        left = self.withdrawn.get(email.to.party or "")
        if left is not None and email.send_at.date() > left:
            return False  # the party has left the agreement
        ending = self.decisions.ending
        if (
            ending is not None
            and email.milestone_id == END_MILESTONE
            and email.send_at.astimezone(dates.STOCKHOLM).date() <= ending.decided_on
        ):
            # Announcing an end on the day it was decided, or before: the ending email did.
            return False
        return self.sent_until is None or email.send_at > self.sent_until

    def send_due(self, announcing: bool = False) -> None:
        """Every planned email due by now and not yet handled goes out; then everything up
        to now is handled. When an ending is being announced, the reminders of the end whose
        time has passed are dropped: the announcement says more, and comes first."""
        if self.decisions.signed_on is None:
            return
        p = self.plan()
        milestones = {m.id: m for m in p.milestones}
        for email in p.emails:
            if announcing and email.milestone_id == END_MILESTONE:
                continue
            if self.sendable(email) and email.send_at <= self.now:
                self.emails.append(self.planned_spec(email, milestones))
        self.sent_until = max(self.now, self.sent_until or self.now)

    def missing_prerequisites(self) -> list[str]:
        return _missing(self.agreement, self.prerequisites)

    def party_name(self, key: str | None) -> str | None:
        """A party's name, as people read it (its key when the terms no longer have it)."""
        if key is None:
            return None
        party = self.agreement.parties.get(key)
        return party.name if party is not None else key

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

    # Writing ------------------------------------------------------------------------------

    def log(self, kind: str, summary: str, by: str | None, **data: str | int | bool | None) -> None:
        self.event_seq += 1
        self.events.append(
            EventIn(
                event_key=f"{workflow_id(self.agreement.id)}:{self.event_seq}",
                agreement_id=self.agreement.id,
                at=self.now,
                kind=kind,
                actor=by,
                summary=summary,
                data=data,
            )
        )

    def save_terms(self, terms: Agreement) -> None:
        self.terms.append(terms)

    def event_email(
        self,
        to: Recipient,
        template: str,
        suffix: str,
        ending: EndingInfo | None = None,
        cancel: list[PlannedMilestone] | None = None,
    ) -> None:
        self.emails.append(
            EmailSpec(
                key=f"{self.agreement.id}:event:{template}:{suffix}:{to.email}",
                agreement_id=self.agreement.id,
                terms_sha256=self.sha,
                template=template,
                to=to,
                ending=ending,
                cancel=cancel or [],
                sequence=self.calendar_sequence,
                planned_at=self.now,
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

    # Checks -------------------------------------------------------------------------------

    def require_signed(self, after_end: bool = False) -> None:
        if self.state in (State.draft, State.signing):
            raise Refusal(
                "not-signed",
                f"the agreement is not signed yet ({self.state.value})",
                state=self.state.value,
            )
        if self.state is State.ended and not after_end:
            raise Refusal("ended", "the agreement has ended")

    def require_valid(self, terms: Agreement, what: str) -> None:
        if terms.id != self.agreement.id:
            raise Refusal(
                "other-agreement",
                f"{what} for {terms.id}, not {self.agreement.id}",
                other=terms.id,
                agreement=self.agreement.id,
            )
        problems = check(terms)
        if problems:
            reason = "; ".join(f"{p.location}: {p.message}" for p in problems)
            raise Refusal("invalid-terms", reason, problems=reason)

    # Drafting and signing ---------------------------------------------------------------------

    def edit_draft(self, request: EditDraft) -> None:
        if self.state is not State.draft:
            raise Refusal(
                "not-draft",
                f"only a draft can be edited; this agreement is {self.state.value}",
                state=self.state.value,
            )
        if request.based_on is not None and request.based_on != self.sha:
            raise Refusal(
                "draft-changed",
                "the draft has changed since it was read; read it again and redo the change",
            )
        self.require_valid(request.agreement, "the terms are")
        self.agreement = request.agreement
        self.sha = terms_sha256(self.agreement)
        self.save_terms(self.agreement)
        self.log("draft.edited", "draft terms edited", request.by, sha256=self.sha)

    def confirm_prerequisites(self, request: ConfirmPrerequisites) -> None:
        unknown = [key for key in request.keys if key not in CHECKLIST]
        if unknown:
            raise Refusal(
                "unknown-prerequisite",
                f"unknown prerequisite {', '.join(unknown)}; the checklist has "
                + ", ".join(CHECKLIST),
                unknown=unknown,
                checklist=list(CHECKLIST),
            )
        if self.state is not State.draft:
            raise Refusal(
                "not-draft",
                "the prerequisites are confirmed before signing, in the draft",
                state=self.state.value,
            )
        self.prerequisites.extend(request.keys)
        self.log(
            "prerequisites.confirmed",
            "confirmed: " + ", ".join(request.keys),
            request.by,
            prerequisites=",".join(request.keys),
        )

    def start_signing(self, request: StartSigning) -> None:
        if self.state is not State.draft:
            raise Refusal(
                "not-draft",
                f"a signature round starts from a draft; this one is {self.state.value}",
                state=self.state.value,
            )
        missing = self.missing_prerequisites()
        if missing:
            raise Refusal(
                "prerequisites-missing",
                "confirm the IOP prerequisites first: " + ", ".join(missing),
                prerequisites=missing,
            )
        self.begin_round("signing", self.agreement, request.by)

    def amend(self, request: Amendment) -> None:
        self.require_signed()
        self.require_valid(request.agreement, "the amendment is")
        if self.round_open:
            raise Refusal("round-open", "a signature round is already running", round=self.rounds)
        if request.agreement.term.start != self.agreement.term.start:
            raise Refusal(
                "start-moved",
                "an amendment cannot move the start of the agreement",
                start=self.agreement.term.start.isoformat(),
            )
        self.amendment = request.agreement
        self.begin_round("amendment", request.agreement, request.by)

    def begin_round(self, purpose: str, terms: Agreement, by: str) -> None:
        if self.round_open:
            raise Refusal("round-open", "a signature round is already running", round=self.rounds)
        self.rounds += 1
        number = self.rounds
        sha = terms_sha256(terms)
        sequential = terms.signing.mode.value == "sequential"
        signers = [
            Signer(
                email=r.email,
                name=r.name,
                party=key,
                party_name=terms.parties[key].name,
                language=r.language.value,
                status=(SignerStatus.waiting if sequential and index > 0 else SignerStatus.invited),
            )
            for index, (key, r) in enumerate(
                (key, r)
                for key, party in terms.parties.items()
                if party.signs and key not in self.withdrawn
                for r in recipients(terms, key, Role.signatory)
            )
        ]
        expires = self.now + timedelta(days=terms.signing.expires_days)
        self.last_round = RoundInfo(
            number=number,
            purpose=purpose,
            method=terms.signing.method.value,
            mode=terms.signing.mode.value,
            started_at=self.now,
            expires_at=expires,
            terms_sha256=sha,
            signers=signers,
        )
        self.round_open = True
        if purpose == "signing":
            self.state = State.signing
        self.log(f"{purpose}.round_started", f"signature round {number} started", by, round=number)
        self.save_terms(terms)
        signing = {s.email for s in signers}
        self.round = RoundStart(
            number=number,
            purpose=purpose,
            terms=terms,
            signers=signers,
            started_at=self.now,
            expires_at=expires,
            coordinator=coordinator(terms),
            others=[r for r in everyone(terms) if r.email not in signing],
        )

    def round_finished(self, finished: RoundFinished) -> None:
        info = finished.info
        if not self.round_open or info.number != self.rounds:
            raise Refusal(
                "no-round", f"signature round {info.number} is not running", round=info.number
            )
        self.last_round = info
        self.round_open = False
        if info.outcome is RoundOutcome.completed:
            if info.purpose == "amendment" and self.amendment is not None:
                self.agreement = self.amendment
                self.sha = terms_sha256(self.agreement)
                self.amendment = None
                self.calendar_sequence += 1
                self.log(
                    "amendment.signed",
                    "amendment signed; every later date re-planned",
                    None,
                    round=info.number,
                )
            else:
                # Signed the day the last signature was given: on paper, the paper's date.
                days = [s.signed_on for s in info.signers if s.signed_on] + [
                    s.signed_at.astimezone(dates.STOCKHOLM).date()
                    for s in info.signers
                    if s.signed_at and not s.signed_on
                ]
                signed_on = min(max(days, default=self.today()), self.today())
                self.decisions = self.decisions.model_copy(update={"signed_on": signed_on})
                self.state = State.signed
                # The engine sends nothing planned before the signing day.
                self.log(
                    "signed",
                    "signed by every party",
                    None,
                    sha256=self.sha,
                    signed_on=signed_on.isoformat(),
                    round=info.number,
                )
            return
        if info.purpose == "amendment":
            self.amendment = None
        else:
            self.state = State.draft
        self.log(
            f"{info.purpose}.round_{info.outcome.value}",
            f"signature round {info.number} {info.outcome.value}"
            + (f": {finished.error}" if finished.error else ""),
            None,
            round=info.number,
            outcome=info.outcome.value,
            error=finished.error,
        )
        if info.outcome is RoundOutcome.failed:
            # The round broke (terminated, a fault): the coordinator can start a new one.
            self.emails.append(
                EmailSpec(
                    key=f"{self.agreement.id}:round-{info.number}:signature_failed:0:"
                    + coordinator(self.agreement).email,
                    agreement_id=self.agreement.id,
                    terms_sha256=self.sha,
                    template="signature_failed",
                    to=coordinator(self.agreement),
                    round=info,
                    reason=finished.error,
                    planned_at=self.now,
                )
            )

    # Reports and renewals -------------------------------------------------------------------

    def record_report(self, request: ReportDecision) -> None:
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
            raise Refusal(
                "unknown-report",
                f"there is no report {request.report} number {request.occurrence}"
                f" in this agreement (reports: {', '.join(known) or 'none'})",
                report=request.report,
                occurrence=request.occurrence,
                reports=known,
            )
        current = self.status_of(due[0].id)
        if request.new_due is None and current in (
            MilestoneStatus.received,
            MilestoneStatus.approved,
        ):
            what = f"{request.report} #{request.occurrence}"
            raise Refusal(
                "already-recorded",
                f"{what} is already recorded",
                milestone=due[0].title,
                status=current.value,
            )
        if request.new_due is not None and current is not None:
            what = f"{request.report} #{request.occurrence}"
            raise Refusal(
                "already-recorded",
                f"{what} is already received ({current.value})",
                milestone=due[0].title,
                status=current.value,
            )
        if request.submitted_on is not None and request.submitted_on > self.today():
            raise Refusal(
                "future-date",
                "a report cannot be submitted in the future",
                on=request.submitted_on.isoformat(),
            )
        if request.new_due is not None and request.new_due <= due[0].effective_date:
            raise Refusal(
                "postpone-earlier",
                f"a postponement must move the due date after {due[0].effective_date}",
                due=due[0].effective_date.isoformat(),
            )
        if request.new_due is not None:
            change = ReportPostponement(
                report=request.report, occurrence=request.occurrence, new_due=request.new_due
            )
            self.decisions = self.decisions.model_copy(
                update={"postponements": [*self.decisions.postponements, change]}
            )
            self.mark(
                due[0].id,
                MilestoneStatus.postponed,
                self.today(),
                request.by,
                note=request.new_due.isoformat(),
            )
            self.log(
                "report.postponed",
                f"{request.report} #{request.occurrence} postponed to {request.new_due}",
                request.by,
                milestone=due[0].id,
                milestone_title=due[0].title,
                new_due=request.new_due.isoformat(),
            )
            return
        done = ReportSubmission(
            report=request.report,
            occurrence=request.occurrence,
            submitted_on=request.submitted_on or self.today(),
        )
        if current is None:  # the first submission is the one reminders stop at
            self.decisions = self.decisions.model_copy(
                update={"reports": [*self.decisions.reports, done]}
            )
        self.mark(due[0].id, MilestoneStatus.received, done.submitted_on, request.by)
        what = f"{request.report} #{request.occurrence}"
        self.log(
            "report.submitted",
            f"{what} submitted",
            request.by,
            milestone=due[0].id,
            milestone_title=due[0].title,
            on=done.submitted_on.isoformat(),
        )

    def status_of(self, milestone: str) -> MilestoneStatus | None:
        """The status last set on a milestone (None: nobody has set one)."""
        found = None
        for mark in self.decisions.marks:
            if mark.milestone == milestone:
                found = mark.status
        return found

    def mark(
        self,
        milestone: str,
        status: MilestoneStatus,
        on: dt.date,
        by: str | None,
        number: str | None = None,
        note: str | None = None,
    ) -> None:
        done = MilestoneMark(
            milestone=milestone, status=status, on=on, by=by, number=number, note=note
        )
        self.decisions = self.decisions.model_copy(update={"marks": [*self.decisions.marks, done]})

    def record_milestone(self, request: MilestoneUpdate) -> None:
        """An instalment invoiced or paid, a meeting held, a received report approved or
        returned for completion."""
        self.require_signed(after_end=True)
        found = [m for m in self.plan().milestones if m.id == request.milestone]
        if not found:
            raise Refusal(
                "unknown-milestone",
                f"there is no milestone {request.milestone} in this agreement",
                milestone=request.milestone,
            )
        m = found[0]
        allowed = SETTABLE.get(m.kind, ())
        if request.status not in allowed:
            can = ", ".join(s.value for s in allowed) or "nothing: it follows from the dates"
            raise Refusal(
                "not-settable",
                f"a {m.kind.value} cannot be marked {request.status.value} (it can be: {can})",
                milestone=m.title,
                milestone_kind=m.kind.value,
                status=request.status.value,
                allowed=[s.value for s in allowed],
            )
        on = request.on or self.today()
        if on > self.today():
            raise Refusal(
                "future-date", "a status cannot be dated in the future", on=on.isoformat()
            )
        current = self.status_of(m.id)
        status = request.status
        if current is status or (
            status is MilestoneStatus.invoiced and current is MilestoneStatus.paid
        ):
            raise Refusal(
                "already-recorded",
                f"{m.id} is already {current.value}",
                milestone=m.title,
                status=(current or status).value,
            )
        if status is MilestoneStatus.invoiced and not (request.number or "").strip():
            raise Refusal("number-missing", "give the invoice's number", milestone=m.title)
        if status is MilestoneStatus.paid and current is not MilestoneStatus.invoiced:
            raise Refusal(
                "not-invoiced", f"{m.id} has not been recorded as invoiced", milestone=m.title
            )
        if status in (MilestoneStatus.approved, MilestoneStatus.returned):
            if current is not MilestoneStatus.received:
                raise Refusal("not-received", f"{m.id} has not been received", milestone=m.title)
            if status is MilestoneStatus.returned and not (request.note or "").strip():
                raise Refusal(
                    "note-missing", "say what is missing from the report", milestone=m.title
                )
        number = (request.number or "").strip() or None
        note = (request.note or "").strip() or None
        self.mark(m.id, status, on, request.by, number=number, note=note)
        extra = f" ({number})" if number else f": {note}" if note else ""
        self.log(
            f"milestone.{status.value}",
            f"{m.id} {status.value} {on}{extra}",
            request.by,
            milestone=m.id,
            milestone_title=m.title,
            on=on.isoformat(),
            number=number,
            note=note,
        )

    def open_decision(self) -> tuple[dt.date, dt.date]:
        """The term end now open for decision and its deadline (effective date)."""
        today = self.today()
        kinds = (MilestoneKind.notice_deadline, MilestoneKind.extension_deadline)
        for m in self.plan().milestones:
            if m.kind in kinds and m.effective_date >= today:
                return dt.date.fromisoformat(m.id.split(":", 1)[1]), m.effective_date
        raise Refusal(
            "no-decision-open",
            "no renewal decision is open: every deadline has passed or none applies",
        )

    def decide_renewal(self, request: RenewalRequest) -> None:
        self.require_signed()
        party = self.agreement.parties.get(request.party)
        if party is None or not party.signs:
            raise Refusal(
                "unknown-party",
                f"{request.party} is not a signing party of this agreement",
                party=request.party,
            )
        renewal = self.agreement.term.renewal
        if renewal is RenewalKind.fixed:
            raise Refusal(
                "fixed-term", "this agreement has a fixed term: there is nothing to renew"
            )
        term_end, _ = self.open_decision()  # the first deadline not passed
        given = request.given_on or self.today()
        if given > self.today():
            raise Refusal(
                "future-date", "a decision cannot be dated in the future", on=given.isoformat()
            )
        if any(
            d.party == request.party and d.term_end == term_end for d in self.decisions.renewals
        ):
            raise Refusal(
                "already-decided",
                f"{request.party} has already decided about the term ending {term_end}",
                party=request.party,
                party_name=party.name,
                term_end=term_end.isoformat(),
            )
        if renewal is RenewalKind.opt_out and request.renew:
            raise Refusal(
                "nothing-to-approve",
                "this agreement renews unless a party gives notice: nothing to approve",
            )
        decision = RenewalDecision(
            party=request.party,
            term_end=term_end,
            renew=request.renew,
            given_on=given,
            by=request.by,
        )
        self.decisions = self.decisions.model_copy(
            update={"renewals": [*self.decisions.renewals, decision]}
        )
        word = "renews" if request.renew else "gives notice of non-renewal"
        self.log(
            "renewal.decided",
            f"{request.party} {word} (term ending {term_end})",
            request.by,
            party=request.party,
            party_name=party.name,
            renew=request.renew,
            term_end=term_end.isoformat(),
        )
        p = self.plan()
        if p.end == term_end and p.ending is EndingKind.non_renewal:
            self.announce_ending(EndingKind.non_renewal, term_end, request.party, None)

    # Endings -------------------------------------------------------------------------------

    def termination_end(self, request: TerminationRequest, given: dt.date) -> dt.date:
        if request.kind is EndingKind.rescission:
            return given
        if request.kind is EndingKind.withdrawal:
            assert self.agreement.withdrawal is not None
            months = self.agreement.withdrawal.notice_months
        else:
            months = self.agreement.termination.notice_months or 0
        return dates.add_months(given, months)

    def check_termination(self, request: TerminationRequest, given: dt.date) -> dt.date:
        self.require_signed()
        if self.decisions.ending is not None:
            raise Refusal(
                "already-ending",
                f"the agreement already ends ({self.decisions.ending.kind.value})",
                ending=self.decisions.ending.kind.value,
                end=self.decisions.ending.end.isoformat(),
            )
        if request.party is not None and request.party not in self.agreement.parties:
            raise Refusal(
                "unknown-party",
                f"{request.party} is not a party to this agreement",
                party=request.party,
            )
        if given > self.today():
            raise Refusal(
                "future-date", "a notice cannot be dated in the future", on=given.isoformat()
            )
        match request.kind:
            case EndingKind.rescission:
                if not self.agreement.termination.rescission:
                    raise Refusal(
                        "no-rescission", "this agreement does not provide for rescission (hävning)"
                    )
                if request.repayment and not self.agreement.termination.repayment:
                    raise Refusal(
                        "no-repayment", "this agreement does not provide for a repayment claim"
                    )
            case EndingKind.withdrawal:
                w = self.agreement.withdrawal
                if w is None:
                    raise Refusal("no-withdrawal", "this agreement has no withdrawal rule")
                if request.party is None:
                    raise Refusal("party-missing", "name the party that withdraws")
                if request.party in self.withdrawn:
                    raise Refusal(
                        "withdrawn",
                        f"{request.party} has already withdrawn",
                        party=request.party,
                        party_name=self.agreement.parties[request.party].name,
                    )
                if w.opens is not None and given < w.opens:
                    raise Refusal(
                        "too-early",
                        f"a party may withdraw from {w.opens}, not before",
                        opens=w.opens.isoformat(),
                    )
                if self.withdrawal_pending is not None:
                    raise Refusal(
                        "withdrawal-pending",
                        "a withdrawal is already waiting for the remaining parties",
                        party=self.withdrawal_pending.party,
                        party_name=self.party_name(self.withdrawal_pending.party),
                    )
            case EndingKind.termination:
                if self.agreement.termination.notice_months is None:
                    raise Refusal(
                        "no-termination",
                        "this agreement has no termination with notice; see its terms",
                    )
            case _:
                raise Refusal(
                    "not-terminate",
                    f"{request.kind.value} is not decided with terminate",
                    ending=request.kind.value,
                )
        if request.repayment and request.kind is not EndingKind.rescission:
            raise Refusal(
                "repayment-not-rescission", "a repayment claim goes with a rescission only"
            )
        end = self.termination_end(request, given)
        if end > self.plan().end:
            last = self.plan().end
            raise Refusal(
                "ends-anyway",
                f"the agreement ends {last} anyway, before {end}",
                end=last.isoformat(),
                notice_end=end.isoformat(),
            )
        return end

    def terminate(self, request: TerminationRequest) -> None:
        given = request.given_on or self.today()
        end = self.check_termination(request, given)
        if request.kind is EndingKind.withdrawal:
            assert request.party is not None
            pending = Ending(
                kind=EndingKind.withdrawal,
                decided_on=given,
                end=end,
                party=request.party,
                reason=request.reason,
            )
            self.log(
                "withdrawal.notice",
                f"{request.party} withdraws from {end}",
                request.by,
                party=request.party,
                party_name=self.party_name(request.party),
                end=end.isoformat(),
            )
            w = self.agreement.withdrawal
            if w is not None and w.remaining_decide:
                self.withdrawal_pending = pending
                info = EndingInfo(
                    kind="withdrawal",
                    end=end,
                    party=request.party,
                    party_name=self.agreement.parties[request.party].name,
                    reason=request.reason,
                )
                for key in self.agreement.parties:
                    if key != request.party and key not in self.withdrawn:
                        for r in recipients(self.agreement, key, Role.contact):
                            self.event_email(r, "withdrawal_decide", request.party, info)
                self.event_email(
                    coordinator(self.agreement), "withdrawal_decide", request.party, info
                )
            else:
                self.decide_ending(pending, request.by)
            return
        ending = Ending(
            kind=request.kind,
            decided_on=given,
            end=end,
            party=request.party,
            reason=request.reason,
            repayment=request.repayment,
        )
        self.decide_ending(ending, request.by)

    def withdrawal_outcome(self, request: WithdrawalOutcome) -> None:
        pending = self.withdrawal_pending
        if pending is None or pending.party is None:
            raise Refusal("no-withdrawal-pending", "no withdrawal is waiting for a decision")
        self.withdrawal_pending = None
        if request.end_all:
            if self.decisions.ending is not None:
                raise Refusal(
                    "already-ending",
                    f"the agreement already ends ({self.decisions.ending.kind.value})",
                    ending=self.decisions.ending.kind.value,
                    end=self.decisions.ending.end.isoformat(),
                )
            self.decide_ending(pending, request.by)
        else:
            self.withdrawn[pending.party] = pending.end
            self.log(
                "withdrawal.continues",
                f"the remaining parties go on without {pending.party} after {pending.end}",
                request.by,
                party=pending.party,
                party_name=self.party_name(pending.party),
                end=pending.end.isoformat(),
            )

    def decide_ending(self, ending: Ending, by: str | None) -> None:
        self.decisions = self.decisions.model_copy(update={"ending": ending})
        self.state = State.ending
        self.log(
            f"ending.{ending.kind.value}",
            f"{ending.kind.value}: the agreement ends {ending.end}"
            + (f" ({ending.reason})" if ending.reason else ""),
            by,
            repayment=ending.repayment,
            end=ending.end.isoformat(),
            reason=ending.reason,
            party=ending.party,
            party_name=self.party_name(ending.party),
        )
        self.announce_ending(ending.kind, ending.end, ending.party, ending)

    def announce_ending(
        self, kind: EndingKind, end: dt.date, party: str | None, ending: Ending | None
    ) -> None:
        """Every party is told; the calendar entries after the end are cancelled. What fell
        due before goes out first, except the reminders of the end: nothing announces an end
        after it was decided. A repayment claim also goes to finance on both sides."""
        self.send_due(announcing=True)
        self.ending_told = end
        info = EndingInfo(
            kind=kind.value,
            end=end,
            party=party,
            party_name=self.agreement.parties[party].name if party else None,
            reason=ending.reason if ending else None,
            repayment=ending.repayment if ending else None,
        )
        people = [*everyone(self.agreement), coordinator(self.agreement)]
        if ending is not None and ending.repayment:
            flows = self.repayment_flows(party)
            due = self.now.astimezone(dates.STOCKHOLM).date() + timedelta(days=REPAYMENT_DAYS)
            info = info.model_copy(
                update={
                    "repayment_due": dates.next_business_day(due),
                    "repaid_by": self.names(by for by, _ in flows) or None,
                    "repaid_to": self.names(to for _, to in flows) or None,
                }
            )
            for key in dict.fromkeys(k for flow in flows for k in flow):
                people.extend(recipients(self.agreement, key, Role.finance))
        full = self.plan(self.decisions.model_copy(update={"ending": None}))
        cancelled = [m for m in full.milestones if m.effective_date > end]
        seen: set[str] = set()
        for person in people:
            if person.email not in seen:
                seen.add(person.email)
                self.event_email(person, "agreement_ended", kind.value, info, cancelled)

    def repayment_flows(self, claimant: str | None) -> list[tuple[str, str]]:
        """Who repays whom (party keys): the money goes back the way it came, along the
        money contributions the claiming party paid; along every money contribution when it
        paid none or no party is named."""
        money = [
            (c.payee, c.payer)
            for c in self.agreement.contributions
            if c.kind is ContributionKind.money and c.payee is not None
        ]
        own = [(by, to) for by, to in money if to == claimant]
        return list(dict.fromkeys(own or money))

    def names(self, keys: Iterable[str]) -> str:
        return ", ".join(self.agreement.parties[key].name for key in dict.fromkeys(keys))

    # Time -------------------------------------------------------------------------------------

    def advance_state(self, p: Plan) -> None:
        today = self.today()
        if self.state is State.signed and today >= p.start:
            self.state = State.active
            self.log(
                "active", f"the agreement runs from {p.start}", None, start=p.start.isoformat()
            )
        if self.state is State.active and self.decisions.ending is not None:
            self.state = State.ending
        if self.state in (State.active, State.ending) and today > p.end:
            self.state = State.ended
            self.log(
                "ended",
                f"the agreement ended {p.end} ({p.ending.value})",
                None,
                end=p.end.isoformat(),
                ending=p.ending.value,
            )

    def tell_unextended(self, p: Plan) -> None:
        """Opt-in: once the last extension deadline has passed without every approval, every
        party is told the agreement ends."""
        if p.ending is not EndingKind.not_extended or self.ending_told == p.end:
            return
        if self.state not in (State.active, State.ending, State.signed):
            return
        today = self.today()
        if any(
            m.kind is MilestoneKind.extension_deadline and m.effective_date >= today
            for m in p.milestones
        ):
            return
        self.log(
            "ending.not_extended",
            f"not every party approved: the agreement ends {p.end}",
            None,
            end=p.end.isoformat(),
        )
        self.announce_ending(EndingKind.not_extended, p.end, None, None)
