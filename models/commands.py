"""The decisions a coordinator (or a signature round) takes on an agreement, as the
agreement workflow's updates receive them, and the snapshot every update answers with.

One model in, one out, so that a field can be added without breaking a running agreement.
"""

from __future__ import annotations

import datetime as dt

from pydantic import Field

from models.agreement import Agreement
from models.lifecycle import RoundInfo, State
from models.plan import EndingKind, Frozen, MilestoneState, MilestoneStatus


class Actor(Frozen):
    by: str = Field(default="coordinator", max_length=200)


class EditDraft(Actor):
    agreement: Agreement
    # The terms the change was made from: refused when the draft has changed since (two
    # people, or two uploads, at once), so neither change is lost without a word.
    based_on: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class ConfirmPrerequisites(Actor):
    keys: list[str] = Field(max_length=50)


class StartSigning(Actor):
    pass


class ReportDecision(Actor):
    report: str = Field(max_length=200)
    occurrence: int
    submitted_on: dt.date | None = None  # default today
    new_due: dt.date | None = None  # a postponement instead of a submission


class RenewalRequest(Actor):
    party: str = Field(max_length=200)
    renew: bool  # opt-out: False is notice of non-renewal; opt-in: True is approval
    given_on: dt.date | None = None


class TerminationRequest(Actor):
    kind: EndingKind  # termination, withdrawal or rescission
    party: str | None = Field(default=None, max_length=200)  # who gives notice or withdraws
    reason: str = Field(min_length=1, max_length=2000)
    repayment: int | None = Field(default=None, ge=0)
    given_on: dt.date | None = None


class WithdrawalOutcome(Actor):
    end_all: bool  # the remaining parties end the agreement altogether (True) or go on


class MilestoneUpdate(Actor):
    """A status set on one milestone: an instalment invoiced (with its number) or paid, a
    meeting held, a received report approved or returned for completion (with what is
    missing)."""

    milestone: str = Field(max_length=200)  # its id, as the timeline shows it
    status: MilestoneStatus
    on: dt.date | None = None  # default today; never in the future
    number: str | None = Field(default=None, max_length=64)  # required for invoiced
    note: str | None = Field(default=None, max_length=2000)


class Amendment(Actor):
    agreement: Agreement


class RoundFinished(Frozen):
    """A signature round has ended: its outcome, or `failed` when the round itself broke
    (terminated, timed out, a bug): the agreement goes on either way."""

    info: RoundInfo
    error: str | None = None


Command = (
    EditDraft
    | ConfirmPrerequisites
    | StartSigning
    | ReportDecision
    | MilestoneUpdate
    | RenewalRequest
    | TerminationRequest
    | WithdrawalOutcome
    | Amendment
    | RoundFinished
)


class Snapshot(Frozen):
    """What a coordinator sees: the answer to every update and the `state` query. It
    carries no signer's token, IP address or user agent."""

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
    next: list[MilestoneState]  # statuses as of today
    withdrawn: dict[str, dt.date]
    withdrawal_pending: str | None = None  # the party whose withdrawal awaits a decision
    alert: str | None = None  # work the service could not do and keeps trying
