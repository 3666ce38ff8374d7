"""What the schedule engine returns, and the decisions it takes into account.

Plain pydantic models (never table rows), so that workflows can pass them and the
command line can print them as JSON.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from models.agreement import DateRule, Language, Lean


class Frozen(Lean):
    model_config = ConfigDict(frozen=True)


class Compact(Frozen):
    """A payload that a worker keeps while its run is cached (a workflow's input, an
    activity's argument): as JSON without the values that are the defaults anyway, which
    is about half of it. The SDK keeps such a payload several times over for as long as the
    run is cached, so its size is memory per agreement. Read back, it is the same value."""

    @model_serializer(mode="wrap")
    def _compact(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        plain = info.include is None and info.exclude is None and not info.exclude_defaults
        if info.mode_is_json() and plain:
            return self.model_dump(mode="json", exclude_defaults=True, by_alias=info.by_alias)
        return handler(self)


class Drafted(Frozen):
    """What the schedule engine makes by the hundred for every plan and drops after it: it
    keeps pydantic's own set of names (quicker to make than `Lean`'s shared one), and
    pydantic calls nothing after making one."""

    model_post_init: ClassVar[Any] = BaseModel.model_post_init


class MilestoneKind(StrEnum):
    signing = "signing"
    invoice = "invoice"
    in_kind = "in_kind"
    report_due = "report_due"
    meeting = "meeting"
    notice_deadline = "notice_deadline"
    extension_deadline = "extension_deadline"
    review_deadline = "review_deadline"
    withdrawal_opens = "withdrawal_opens"
    milestone = "milestone"
    period_end = "period_end"
    agreement_end = "agreement_end"


class Scenario(StrEnum):
    """Which future the engine plans for.

    plan: everyone signs the day the round starts, reports arrive on their due day,
          every extension is approved on its deadline, up to the maximum term.
    recorded: only what the decisions say; an opt-in agreement that nobody has approved
          ends on its date, and a report not submitted is escalated when overdue.
    """

    plan = "plan"
    recorded = "recorded"


class PlannedMilestone(Drafted):
    id: str  # stable across re-plans: the calendar UID and the outbox key are built from it
    kind: MilestoneKind
    date: dt.date  # as written (or as derived from the written terms)
    effective_date: dt.date  # after the date rule
    rule: DateRule
    title: str
    period: int | None = None
    party: str | None = None  # the party responsible (reports) or concerned
    payer: str | None = None
    payee: str | None = None
    amount: int | None = None  # whole kronor
    report: str | None = None
    occurrence: int | None = None  # the nth report or meeting of its kind
    past: bool = False  # before `now`: already over when the service took the agreement on


class MilestoneStatus(StrEnum):
    """Where a milestone stands. Someone sets received, postponed, approved, returned,
    invoiced, paid and held (a decision, with who and when); decided follows from the
    renewal decisions; overdue and passed follow from the date (`MilestoneState.as_of`)."""

    due = "due"  # a report not yet received
    postponed = "postponed"  # a report whose due date was moved (the new date is its date)
    received = "received"
    approved = "approved"
    returned = "returned"  # returned for completion: due again
    overdue = "overdue"  # a report past its due date, not received
    to_invoice = "to_invoice"
    invoiced = "invoiced"
    paid = "paid"
    planned = "planned"  # a meeting, a period end, any other date still to come
    held = "held"
    open = "open"  # a notice or extension deadline still to come
    decided = "decided"  # every signing party has decided (or a notice ends the agreement)
    passed = "passed"  # the date has passed with nothing recorded


# The statuses someone sets on a milestone of each kind through `record_milestone`
# (reports are received and postponed through `record_report`).
SETTABLE: dict[MilestoneKind, tuple[MilestoneStatus, ...]] = {
    MilestoneKind.invoice: (MilestoneStatus.invoiced, MilestoneStatus.paid),
    MilestoneKind.meeting: (MilestoneStatus.held,),
    MilestoneKind.report_due: (MilestoneStatus.approved, MilestoneStatus.returned),
}
# Statuses that turn with the date: still waiting on the day after -> overdue or passed.
_LATE = {
    MilestoneStatus.due: MilestoneStatus.overdue,
    MilestoneStatus.postponed: MilestoneStatus.overdue,
    MilestoneStatus.planned: MilestoneStatus.passed,
    MilestoneStatus.open: MilestoneStatus.passed,
}


class MilestoneMark(Frozen):
    """A status someone set on a milestone: the milestone's history is the list of these."""

    milestone: str  # PlannedMilestone.id
    status: MilestoneStatus
    on: dt.date  # the day it happened (an invoice's date, the day a report came in)
    by: str | None = None
    number: str | None = None  # an invoice's number
    note: str | None = None  # returned: what is missing; postponed: the new due date


class Recipient(Drafted):
    email: str
    name: str
    party: str | None  # None for the coordinator
    role: str  # contact, finance, signatory, convener, coordinator
    language: Language


class MilestoneState(PlannedMilestone):
    """A milestone with where it stands: a row of the read model's milestone table, and what
    the pages, the API, `upcoming`, the finance CSV and the calendar feed show."""

    # Kept by the workflow between steps (the rows it wrote last): lean again.
    model_post_init: ClassVar[Any] = Lean.model_post_init

    status: MilestoneStatus
    status_on: dt.date | None = None  # when it was set (None: nobody set it)
    status_by: str | None = None
    number: str | None = None  # an invoice's number
    note: str | None = None

    def as_of(self, today: dt.date) -> MilestoneState:
        """The status as it reads on `today`: a report still due after its date is overdue,
        a meeting or deadline with nothing recorded after its date has passed."""
        late = _LATE.get(self.status)
        if late is None or self.effective_date >= today:
            return self
        return self.model_copy(update={"status": late})

    @property
    def done(self) -> bool:
        return self.status in (
            MilestoneStatus.received,
            MilestoneStatus.approved,
            MilestoneStatus.paid,
            MilestoneStatus.held,
            MilestoneStatus.decided,
        )


class PlannedEmail(Drafted):
    key: str  # unique per (agreement, milestone, recipient, template, offset): the outbox key
    milestone_id: str
    template: str
    send_at: dt.datetime  # aware, Europe/Stockholm
    to: Recipient
    days_before: int  # 0 on the day; negative after it (overdue escalations)
    past: bool = False


class RenewalDecision(Frozen):
    """A party's decision about the term ending on `term_end`.

    Opt-out: `renew=False` is a notice of non-renewal; silence renews.
    Opt-in: `renew=True` is a written approval; it extends only when every party approves.
    """

    party: str
    term_end: dt.date
    renew: bool
    given_on: dt.date
    by: str | None = None


class ReportSubmission(Frozen):
    report: str
    occurrence: int
    submitted_on: dt.date


class ReportPostponement(Frozen):
    report: str
    occurrence: int
    new_due: dt.date


class EndingKind(StrEnum):
    expiry = "expiry"
    non_renewal = "non_renewal"
    not_extended = "not_extended"
    termination = "termination"
    withdrawal = "withdrawal"
    rescission = "rescission"


class Ending(Frozen):
    kind: EndingKind
    decided_on: dt.date
    end: dt.date  # last day of the agreement
    party: str | None = None
    reason: str | None = None
    repayment: int | None = None


class Decisions(Frozen):
    """Everything recorded so far that changes the plan."""

    signed_on: dt.date | None = None
    renewals: list[RenewalDecision] = Field(default_factory=list)
    reports: list[ReportSubmission] = Field(default_factory=list)
    postponements: list[ReportPostponement] = Field(default_factory=list)
    ending: Ending | None = None
    marks: list[MilestoneMark] = Field(default_factory=list)  # in the order they were set


class Plan(Frozen):
    agreement: str
    start: dt.date
    end: dt.date  # the end this plan arrives at (after renewals, or an ending)
    ending: EndingKind  # how it ends in this plan
    periods: int
    milestones: list[PlannedMilestone]
    emails: list[PlannedEmail]
