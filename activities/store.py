"""Persistence activities: the read model (agreements and their milestones), every version
of the terms, and the event log.

Each one is idempotent: retried after a crash, it leaves the same rows as one run.

An event's data never keeps a signer's IP address or user agent: the append-only log
could never weed them. Every way an event is written here takes them out of its data and
writes them, in the same transaction, to the event's `SignerTrace` row, which gallring
pseudonymises after the retention period (activities/weeding.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json

from sqlalchemy import Engine, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import StoreActivities
from models.db import ready, write_lock
from models.effects import STEP_FAILED, EventIn, SaveTerms, Step, Summary
from models.plan import MilestoneState
from models.records import (
    AgreementRecord,
    EventRecord,
    MilestoneRecord,
    SignerTrace,
    TermsRecord,
    milestone_values,
    utcnow,
)
from webhooks import events as hooks
from webhooks import registry

__all__ = [
    "TRACED",
    "EventIn",
    "SaveTerms",
    "Store",
    "Summary",
    "event_record",
    "trace_record",
    "write_event",
]


def _utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC)


class Store(StoreActivities):
    """Activities bound to one database URL."""

    def __init__(self, url: str) -> None:
        self.db = ready(url)

    @activity.defn(name="save_terms")
    async def save_terms(self, terms: SaveTerms) -> None:
        await asyncio.to_thread(self._save_terms, terms)

    def _save_terms(self, terms: SaveTerms) -> None:
        with write_lock(self.db), Session(self.db) as session:
            if session.get(TermsRecord, terms.sha256) is not None:
                return
            session.add(
                TermsRecord(
                    sha256=terms.sha256,
                    agreement_id=terms.agreement_id,
                    terms_json=terms.terms_json,
                )
            )
            try:
                session.commit()
            except IntegrityError:  # written by a concurrent attempt: the same terms
                session.rollback()

    def write_step(self, step: Step) -> None:
        """A step's terms, events and summary in one transaction (blocking: the step
        activity runs it in a thread). Each insert skips a row already there, so a
        retried step, or two attempts racing, leave the rows of one.

        If that transaction fails, the parts go one by one, so that a read model that
        refuses does not hold back the record: the terms and events in one transaction,
        then the summary in another. What fails is raised as a StepFailed that names it."""
        try:
            self._write(step, record=True, summary=True)
        except Exception:
            for part, record in (("the event log", True), ("the agreement list", False)):
                try:
                    self._write(step, record=record, summary=not record)
                except Exception as error:
                    raise ApplicationError(
                        f"{part}: {error}",
                        part,
                        type=STEP_FAILED,
                        non_retryable=getattr(error, "non_retryable", False),
                    ) from error

    def _write(self, step: Step, record: bool, summary: bool) -> None:
        dialect = postgresql if self.db.dialect.name == "postgresql" else sqlite
        with write_lock(self.db), Session(self.db) as session:
            if record and step.terms:
                session.execute(
                    dialect.insert(TermsRecord)
                    .values([{**t.model_dump(), "created_at": utcnow()} for t in step.terms])
                    .on_conflict_do_nothing(index_elements=["sha256"])
                )
            if record and step.events:
                session.execute(
                    dialect.insert(EventRecord)
                    .values([_event_values(e) for e in step.events])
                    .on_conflict_do_nothing(index_elements=["event_key"])
                )
                traces = [t for t in map(_trace_values, step.events) if t is not None]
                if traces:
                    session.execute(
                        dialect.insert(SignerTrace)
                        .values(traces)
                        .on_conflict_do_nothing(index_elements=["event_key"])
                    )
            if summary and step.summary is not None:
                self._write_summary(session, step.summary)
            if record:  # after the summary: a new agreement's deliveries name it
                announced = [*hooks.of_events(step.events), *hooks.of_emails(step.emails, utcnow())]
                registry.enqueue(session, announced)
            session.commit()

    @activity.defn(name="record_event")
    async def record_event(self, event: EventIn) -> None:
        await asyncio.to_thread(self._record_event, event)

    def _record_event(self, event: EventIn) -> None:
        write_event(self.db, event)

    @activity.defn(name="record_events")
    async def record_events(self, events: list[EventIn]) -> None:
        """Several events in one transaction, in order; those already written (a retried
        attempt) are skipped by their keys."""
        await asyncio.to_thread(self._record_events, events)

    def _record_events(self, events: list[EventIn]) -> None:
        keys = [e.event_key for e in events]
        with write_lock(self.db), Session(self.db) as session:
            written = set(
                session.exec(
                    select(EventRecord.event_key).where(col(EventRecord.event_key).in_(keys))
                )
            )
            new = [event for event in events if event.event_key not in written]
            for event in new:
                _add(session, event)
            try:  # the deliveries' query flushes the events: a duplicate shows here
                registry.enqueue(session, hooks.of_events(new))
                session.commit()
                return
            except IntegrityError:  # another attempt wrote some meanwhile: one at a time
                session.rollback()
        for event in events:
            write_event(self.db, event)

    @activity.defn(name="update_summary")
    async def update_summary(self, summary: Summary) -> None:
        await asyncio.to_thread(self._update_summary, summary)

    def _update_summary(self, summary: Summary) -> None:
        """The agreement's row, and in the same transaction its milestone rows that changed
        (upserted); with `milestones_complete` its other milestone rows are deleted. A
        retried attempt writes the same rows again."""
        with write_lock(self.db), Session(self.db) as session:
            self._write_summary(session, summary)
            session.commit()

    def _write_summary(self, session: Session, summary: Summary) -> None:
        values = summary.model_dump(exclude={"milestones", "milestones_complete"})
        row = session.get(AgreementRecord, summary.id)
        if row is None:
            session.add(AgreementRecord(**values))
        else:
            for name, value in values.items():
                setattr(row, name, value)
            row.updated_at = utcnow()
            session.add(row)
        self._write_milestones(session, summary.id, summary.milestones, summary.milestones_complete)

    def _write_milestones(
        self, session: Session, agreement_id: str, milestones: list[MilestoneState], complete: bool
    ) -> None:
        now = utcnow()
        rows = [
            {"agreement_id": agreement_id, **milestone_values(m), "updated_at": now}
            for m in milestones
        ]
        if rows:
            # INSERT … ON CONFLICT DO UPDATE (executed for all rows at once): atomic on both
            # databases even when two attempts race, with no read before the write.
            dialect = postgresql if self.db.dialect.name == "postgresql" else sqlite
            insert = dialect.insert(MilestoneRecord)
            keys = ("agreement_id", "id")
            statement = insert.on_conflict_do_update(
                index_elements=list(keys),
                set_={name: insert.excluded[name] for name in rows[0] if name not in keys},
            )
            session.execute(statement, rows)
        if complete:
            wanted = {m.id for m in milestones}
            stored = session.exec(
                select(MilestoneRecord.id).where(MilestoneRecord.agreement_id == agreement_id)
            )
            stale = sorted(set(stored) - wanted)
            for start in range(0, len(stale), _CHUNK):
                session.execute(
                    delete(MilestoneRecord).where(
                        col(MilestoneRecord.agreement_id) == agreement_id,
                        col(MilestoneRecord.id).in_(stale[start : start + _CHUNK]),
                    )
                )


_CHUNK = 500  # ids per DELETE … IN (…): well under either database's limit on parameters


def write_event(db: Engine, event: EventIn) -> None:
    """Append one event to the log, once: an event whose key is written already is skipped.
    The activities use it, and so do the interfaces for refusals that never reach a
    workflow."""
    with write_lock(db), Session(db) as session:
        exists = session.exec(
            select(EventRecord.id).where(EventRecord.event_key == event.event_key)
        ).first()
        if exists is not None:
            return
        _add(session, event)
        try:  # the deliveries' query flushes the event: a duplicate shows here
            registry.enqueue(session, hooks.of_events([event]))
            session.commit()
        except IntegrityError:
            session.rollback()


def _add(session: Session, event: EventIn) -> None:
    """The event's row and, if it has one, its trace's row, to the session's transaction."""
    session.add(event_record(event))
    trace = trace_record(event)
    if trace is not None:
        session.add(trace)


TRACED = ("ip", "user_agent")  # what an event's data never keeps: its trace row does
MAX_IP = 64
MAX_USER_AGENT = 300


def event_record(event: EventIn) -> EventRecord:
    """The event's row, without any IP address or user agent in its data."""
    return EventRecord.model_validate(_event_values(event))


def trace_record(event: EventIn) -> SignerTrace | None:
    """The event's trace row (its IP address and user agent), or None if it has neither."""
    values = _trace_values(event)
    return SignerTrace.model_validate(values) if values is not None else None


def _event_values(event: EventIn) -> dict[str, object]:
    data = {key: value for key, value in event.data.items() if key not in TRACED}
    return {
        "event_key": event.event_key,
        "agreement_id": event.agreement_id,
        "at": _utc(event.at),
        "kind": event.kind,
        "actor": event.actor,
        "summary": event.summary,
        "data_json": json.dumps(data, ensure_ascii=False, sort_keys=True),
        "recorded_at": utcnow(),
    }


def _trace_values(event: EventIn) -> dict[str, object] | None:
    ip, agent = event.data.get("ip"), event.data.get("user_agent")
    if not ip and not agent:
        return None
    return {
        "event_key": event.event_key,
        "agreement_id": event.agreement_id,
        "at": _utc(event.at),
        "kind": event.kind,
        # A signature event's actor is its signer; a refusal (a link that was refused)
        # names no signer, only the link.
        "signer": event.actor if event.kind.startswith("signature.") else None,
        "ip": str(ip)[:MAX_IP] if ip else None,
        "user_agent": str(agent)[:MAX_USER_AGENT] if agent else None,
        "weeded_at": None,
    }
