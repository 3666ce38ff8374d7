"""What the agreement's decider asks the world to do, and the payloads of the persistence
activities that do it.

Plain frozen pydantic models: they travel through Temporal's pydantic data converter and
stay in the workflow's state until they are carried out, so a worker that dies between a
decision and its writes loses nothing.
"""

from __future__ import annotations

import datetime as dt

from pydantic import Field

from models.agreement import Agreement
from models.lifecycle import EmailSpec, Signer
from models.plan import Compact, Frozen, MilestoneState, Recipient


class SaveTerms(Frozen):
    agreement_id: str
    sha256: str
    terms_json: str


class EventIn(Frozen):
    event_key: str  # unique: workflow id + a sequence number the workflow keeps
    agreement_id: str
    at: dt.datetime
    kind: str
    actor: str | None = None
    summary: str
    data: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class Summary(Frozen):
    id: str
    title: str
    reference: str | None
    language: str
    state: str
    terms_sha256: str
    workflow_id: str
    round_workflow_id: str | None
    start: dt.date
    end: dt.date
    ending: str | None
    next_date: dt.date | None
    next_title: str | None
    # The milestone table's rows that changed since the last summary of this run (as set,
    # before `as_of`); `milestones_complete`: these are all of them, delete any other row.
    milestones: list[MilestoneState] = Field(default_factory=list)
    milestones_complete: bool = False


class RoundStart(Frozen):
    """A signature round to start as a child workflow. The shell gives each signer a
    personal token when it starts the round; the decider never sees one."""

    number: int
    purpose: str  # signing or amendment
    terms: Agreement
    signers: list[Signer]
    started_at: dt.datetime
    expires_at: dt.datetime
    coordinator: Recipient
    others: list[Recipient] = Field(default_factory=list)


class Effects(Frozen):
    """Work decided and not yet done, in the order it is carried out: terms stored first
    (emails render from them), then the event log, then a round, then emails."""

    terms: list[Agreement] = Field(default_factory=list)
    events: list[EventIn] = Field(default_factory=list)
    round: RoundStart | None = None
    emails: list[EmailSpec] = Field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.terms or self.events or self.round or self.emails)

    def __add__(self, other: Effects) -> Effects:
        return Effects(
            terms=[*self.terms, *other.terms],
            events=[*self.events, *other.events],
            round=other.round or self.round,
            emails=[*self.emails, *other.emails],
        )


# The type of a step's failed write; its first detail names the part (the event log, the list).
STEP_FAILED = "StepFailed"


class Step(Compact):
    """What one step of an agreement writes and sends, in one activity: new terms, the
    events, the read model's summary (in one transaction, in that order), then the emails
    of the moment. Every part is idempotent, so a retried step leaves the same rows and
    sends no email twice."""

    terms: list[SaveTerms] = Field(default_factory=list)
    events: list[EventIn] = Field(default_factory=list)
    summary: Summary | None = None
    emails: list[EmailSpec] = Field(default_factory=list)
