"""Database tables (SQLModel): the agreements' read model, the terms of every version, the
append-only event log, and the email outbox.

Only the persistence and notification activities and the interfaces touch these rows;
workflows never see them. Times are stored in UTC.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


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
