"""Database tables (SQLModel): the agreements' read model and their milestones, the terms of
every version, the append-only event log, the signers' traces (IP address, user agent)
beside it, the email outbox, and the weekly digests sent.

Only the persistence and notification activities and the interfaces touch these rows;
workflows never see them. Times are stored in UTC.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, Column, Index, LargeBinary, Text, UniqueConstraint
from sqlalchemy.orm import declared_attr, deferred
from sqlmodel import Field, SQLModel

from models.plan import MilestoneState


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AgreementRecord(SQLModel, table=True):
    """What a coordinator sees in the list: one row per agreement, kept current."""

    __tablename__ = "agreement"

    id: str = Field(primary_key=True, max_length=64)
    title: str
    reference: str | None = None
    language: str = "sv"
    state: str = Field(index=True)
    terms_sha256: str = Field(max_length=64)
    workflow_id: str
    round_workflow_id: str | None = None
    start: dt.date
    end: dt.date
    ending: str | None = None
    next_date: dt.date | None = None
    next_title: str | None = None
    created_at: dt.datetime = Field(default_factory=utcnow)
    updated_at: dt.datetime = Field(default_factory=utcnow)


class MilestoneRecord(SQLModel, table=True):
    """One row per milestone of an agreement, with its status as set (before
    `MilestoneState.as_of`: overdue and passed follow from the date when it is read).
    The agreement's workflow writes the rows that changed with each summary; `past` is not
    stored (a row reads back with past=False)."""

    __tablename__ = "milestone"
    __table_args__ = (
        Index("ix_milestone_agreement_id_effective_date", "agreement_id", "effective_date"),
    )

    agreement_id: str = Field(primary_key=True, max_length=64)
    # e.g. invoice:2027-01-31:kommun:forening (PlannedMilestone.id, stable across re-plans)
    id: str = Field(primary_key=True, max_length=200)
    kind: str = Field(max_length=32)  # MilestoneKind
    date: dt.date
    effective_date: dt.date = Field(index=True)
    rule: str = Field(max_length=16)  # DateRule
    title: str
    period: int | None = None
    party: str | None = None
    payer: str | None = None
    payee: str | None = None
    amount: int | None = Field(default=None, sa_type=BigInteger)  # whole kronor, up to 10^10
    report: str | None = None
    occurrence: int | None = None
    status: str = Field(index=True, max_length=32)  # MilestoneStatus, as set
    status_on: dt.date | None = None
    status_by: str | None = None
    number: str | None = None  # an invoice's number
    note: str | None = None
    updated_at: dt.datetime = Field(default_factory=utcnow)

    @classmethod
    def from_state(cls, agreement_id: str, m: MilestoneState) -> MilestoneRecord:
        return cls(agreement_id=agreement_id, **milestone_values(m))

    def state(self) -> MilestoneState:
        return MilestoneState.model_validate(
            self.model_dump(exclude={"agreement_id", "updated_at"})
        )


def milestone_values(m: MilestoneState) -> dict[str, Any]:
    """The milestone table's columns of `m`, but its agreement_id and updated_at (`past` is
    not stored); enums as their plain values."""
    values = m.model_dump(exclude={"past"})
    for name in ("kind", "rule", "status"):
        values[name] = str(values[name].value)
    return values


class TermsRecord(SQLModel, table=True):
    """Every version of an agreement's terms, by its SHA-256: what was signed stays readable."""

    __tablename__ = "terms"

    sha256: str = Field(primary_key=True, max_length=64)
    agreement_id: str = Field(index=True, max_length=64)
    terms_json: str = Field(sa_column=Column(Text, nullable=False))
    created_at: dt.datetime = Field(default_factory=utcnow)


class EventRecord(SQLModel, table=True):
    """Append-only: every state change and decision, who made it and when.

    `event_key` makes writing idempotent (an activity retried after a crash writes once).
    Database triggers refuse UPDATE and DELETE (migrations/versions/0001_initial.py).
    """

    __tablename__ = "event"
    __table_args__ = (UniqueConstraint("event_key", name="uq_event_key"),)

    id: int | None = Field(default=None, primary_key=True)
    event_key: str = Field(max_length=300)
    agreement_id: str = Field(index=True, max_length=64)
    at: dt.datetime
    kind: str = Field(max_length=64)
    actor: str | None = None
    summary: str
    data_json: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    recorded_at: dt.datetime = Field(default_factory=utcnow)


class SignerTrace(SQLModel, table=True):
    """Where a signer's request came from (IP address, browser user agent) for one event
    of the log, kept apart from the append-only log so that it can be weeded (gallring):
    `weed_signer_traces` (activities/weeding.py) pseudonymises both after the configured
    retention period and sets `weeded_at`. Written with its event, in the same
    transaction; `event_key` names that event (and makes writing it idempotent)."""

    __tablename__ = "signer_trace"
    __table_args__ = (UniqueConstraint("event_key", name="uq_signer_trace_event_key"),)

    id: int | None = Field(default=None, primary_key=True)
    event_key: str = Field(max_length=300)
    agreement_id: str = Field(index=True, max_length=64)
    at: dt.datetime = Field(index=True)  # the event's moment (UTC): what weeding counts from
    kind: str = Field(max_length=64)  # the event's kind: signature.signed, refused, …
    signer: str | None = Field(default=None, max_length=320)  # the signer's email, if known
    ip: str | None = Field(default=None, max_length=64)  # "pseud:…" once weeded
    user_agent: str | None = Field(default=None, max_length=300)  # None once weeded
    weeded_at: dt.datetime | None = None


class OutboxRecord(SQLModel, table=True):
    """One email: written before sending, so a second attempt for the same key never sends."""

    __tablename__ = "outbox"

    key: str = Field(primary_key=True, max_length=400)
    agreement_id: str = Field(index=True, max_length=64)
    template: str
    recipient: str
    subject: str
    message_id: str
    status: str = Field(index=True)  # pending, sending, handed, sent, failed
    attempts: int = 0
    # While one attempt is sending, no other worker may: the claim holds until this moment
    # (the activity's start-to-close timeout), after which a retry may take it over.
    lease_until: dt.datetime | None = None
    worker: str | None = None  # the worker that made the last attempt
    error: str | None = None
    planned_at: dt.datetime | None = None
    created_at: dt.datetime = Field(default_factory=utcnow)
    sent_at: dt.datetime | None = None
    # What was sent is kept (migration 0007): the SHA-256 of the exact bytes handed to the
    # relay, and those bytes until the weeding clears them after
    # AGREEMENTS_MESSAGE_RETENTION_DAYS (message_weeded_at says when); the hash stays, so
    # the archive can still show which message each party received. The message is never
    # loaded with the row (the pages and the API list the outbox often, and a completion
    # email carries the sealed record) nor dumped with it: a signer's email holds their
    # personal signing link. Read it on purpose (agreements/ops.py `kept_message`).
    sha256: str | None = Field(default=None, max_length=64)
    message: bytes | None = Field(
        default=None, sa_column=Column(LargeBinary, nullable=True), exclude=True, repr=False
    )
    message_weeded_at: dt.datetime | None = None

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        table = cls.__table__  # type: ignore[attr-defined]
        return {"properties": {"message": deferred(table.c.message)}}


class DigestRecord(SQLModel, table=True):
    """One weekly digest email to one person (workflows/digest.py): written before it is
    sent, under the key `digest:<person id>:<ISO week>`, so a retried activity or a second
    run in the same week never sends it again. It moves as an outbox row does: sending ->
    handed (the content is going to the relay) -> sent or failed, or back to pending after
    a passing fault. Kept apart from the outbox, whose every row belongs to one agreement
    (its pages, `agreements outbox` and the failed-email lines of "Att göra" read it per
    agreement): a digest belongs to a person and spans their agreements."""

    __tablename__ = "digest_sent"

    key: str = Field(primary_key=True, max_length=100)
    person_id: int = Field(index=True)
    week: str = Field(max_length=10)  # ISO week, e.g. 2025-W03
    recipient: str = Field(max_length=320)
    subject: str
    message_id: str = Field(max_length=200)
    lines: int  # how many things it listed
    status: str = Field(index=True, max_length=16)  # pending, sending, handed, sent, failed
    attempts: int = 0
    lease_until: dt.datetime | None = None  # as the outbox's: one attempt at a time
    worker: str | None = None
    error: str | None = None
    created_at: dt.datetime = Field(default_factory=utcnow)
    sent_at: dt.datetime | None = None
