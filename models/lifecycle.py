"""What the agreement workflow, its signature rounds and its activities pass to each other.

Plain frozen pydantic models (never `table=True` rows): they travel through Temporal's
pydantic data converter and stay small, because every one of them is written to history.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from enum import StrEnum

from pydantic import Field

from models.agreement import Agreement
from models.plan import Frozen, PlannedMilestone, Recipient
from signing.provider import ProviderDocument


def terms_json(agreement: Agreement) -> str:
    """The canonical text of the terms: what is hashed, stored and signed. An agreement
    without documents is written as before documents existed, so its hash stays the one
    it has always had."""
    if not agreement.documents:
        return agreement.model_dump_json(exclude={"documents"})
    return agreement.model_dump_json()


def terms_sha256(agreement: Agreement) -> str:
    return hashlib.sha256(terms_json(agreement).encode()).hexdigest()


class State(StrEnum):
    draft = "draft"
    signing = "signing"
    signed = "signed"  # every signature in, the term not started yet
    active = "active"
    ending = "ending"  # an ending is decided; the last day is still ahead
    ended = "ended"


class SignerStatus(StrEnum):
    waiting = "waiting"  # sequential mode: not their turn yet
    invited = "invited"
    opened = "opened"
    signed = "signed"
    declined = "declined"


class RoundOutcome(StrEnum):
    open = "open"
    completed = "completed"
    declined = "declined"
    cancelled = "cancelled"
    expired = "expired"
    failed = "failed"  # the round broke (terminated, a fault): the agreement goes on


class SignatureEvent(Frozen):
    """One line of the verification record.

    `ip` is kept inside the round for the verification record (the completion email) and
    the event log; every query, snapshot and answer shows the round without it. A
    signer's user agent is never part of an event (it stays in the update's input in the
    round's history)."""

    at: dt.datetime  # aware; shown with its time zone. Paper: the day on the paper
    signer: str | None  # signer email; None for the round itself
    name: str | None = None
    what: str  # sent, reminded, opened, signed, declined, cancelled, expired, completed
    method: str | None = None  # link or paper
    ip: str | None = None
    reason: str | None = None
    signed_on: dt.date | None = None  # paper: the date written on the paper
    recorded_by: str | None = None  # paper, cancel: who entered it
    scan_sha256: str | None = None  # paper: the scanned signed copy in the document store


class Signer(Frozen):
    email: str
    name: str
    party: str
    party_name: str
    language: str = "sv"
    # No token: a signer's personal token lives only in the round (RoundInput.tokens) and
    # in their signing link, so nothing that shows a round can carry one.
    status: SignerStatus = SignerStatus.invited
    signed_at: dt.datetime | None = None  # paper: the start of the day on the paper
    signed_on: dt.date | None = None  # paper: the date written on the paper
    reminders: int = 0


class RoundInfo(Frozen):
    """A signature round as the emails and the timeline show it."""

    number: int
    purpose: str = "signing"  # signing (the first) or amendment
    method: str = "link"
    mode: str = "parallel"
    started_at: dt.datetime
    expires_at: dt.datetime
    terms_sha256: str
    signers: list[Signer] = Field(default_factory=list)
    events: list[SignatureEvent] = Field(default_factory=list)
    outcome: RoundOutcome = RoundOutcome.open
    reason: str | None = None
    # A round signed through a signing provider: its document there, and once complete
    # what the provider gave (its sealed file and evidence).
    document: ProviderDocument | None = None
    provider: ProviderEvidence | None = None

    def public(self) -> RoundInfo:
        """The round as queries, snapshots and answers show it: no IP of any event."""
        if not any(e.ip for e in self.events):
            return self
        events = [e.model_copy(update={"ip": None}) if e.ip else e for e in self.events]
        return self.model_copy(update={"events": events})


class RoundAnswer(Frozen):
    """What an action on a round answers (open, sign, decline, sign_paper, cancel): small
    on purpose, because every answer is written to the round's history."""

    number: int
    purpose: str = "signing"
    outcome: RoundOutcome  # as the action leaves the round (open while others are awaited)
    signer: str | None = None  # the signer the action was about (email); None for cancel
    status: SignerStatus | None = None  # that signer's status after it


class EndingInfo(Frozen):
    kind: str  # models.plan.EndingKind value
    end: dt.date
    party: str | None = None
    party_name: str | None = None
    reason: str | None = None
    repayment: int | None = None  # kronor claimed back (rescission)
    repayment_due: dt.date | None = None  # to be repaid at the latest (rule: forward)
    repaid_by: str | None = None  # the party (or parties) that repay, by name
    repaid_to: str | None = None  # the party (or parties) repaid, by name


class FailedInfo(Frozen):
    """An email that could not be delivered, as the coordinator is told of it."""

    to: str
    subject: str
    error: str


class ProviderEvidence(Frozen):
    """What a signing provider gave for a completed round: its signed and sealed file and
    its evidence, kept in the document store by their hashes."""

    provider: str
    document_id: str
    sealed_sha256: str
    evidence_sha256: str | None = None
    collected_at: dt.datetime


class ProviderStart(Frozen):
    """A round to send to the signing provider."""

    agreement_id: str
    round: RoundInfo


class ProviderCollect(Frozen):
    agreement_id: str
    round_number: int
    document: ProviderDocument


class Attachment(Frozen):
    """A file an email carries, kept in the document store by its SHA-256 (the sealed
    signing record)."""

    sha256: str
    filename: str
    size: int

    @property
    def attachable(self) -> bool:
        """Small enough for the mail servers along the way (most take 25 MB or more, with
        base64 adding a third)."""
        return self.size <= ATTACH_LIMIT


ATTACH_LIMIT = 15_000_000


class RecordRequest(Frozen):
    """What the sealed signing record of a completed round is made from."""

    agreement_id: str
    round: RoundInfo


class EmailSpec(Frozen):
    """One email the workflow asks the notification activity to send, exactly once per key."""

    key: str  # the outbox key: unique per (agreement, milestone, recipient, kind, offset)
    agreement_id: str
    terms_sha256: str  # which version of the terms to render from (stored by persistence)
    template: str
    to: Recipient
    milestone: PlannedMilestone | None = None
    days_before: int = 0
    link_token: str | None = None
    round: RoundInfo | None = None
    reason: str | None = None
    ending: EndingInfo | None = None
    failed: FailedInfo | None = None
    calendar: str | None = None  # REQUEST (add or update) or CANCEL for the milestone's entry
    sequence: int = 0  # iCalendar SEQUENCE: rises each time the entry changes
    cancel: list[PlannedMilestone] = Field(default_factory=list)  # entries an ending cancels
    planned_at: dt.datetime | None = None  # when the workflow sent it, on its own clock
    attachment: Attachment | None = None  # the sealed signing record, on the completion email


class SendOutcome(StrEnum):
    sent = "sent"
    already_sent = "already_sent"
    failed = "failed"  # permanent (5xx, refused recipient): recorded, not retried
    retry = "retry"  # a passing fault in a batch: not sent yet, the workflow sends it alone


class SendResult(Frozen):
    key: str
    outcome: SendOutcome
    message_id: str
    subject: str
    error: str | None = None
