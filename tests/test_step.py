"""The step activity's writes on every supported database: a step's terms, events and
summary in one transaction; a retried step, or two attempts at once, leave the rows of
one; and a read model that refuses does not hold back the record, and is named."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlmodel import Session, col, select
from temporalio.exceptions import ApplicationError

from activities.store import Store
from models.db import engine, migrate
from models.effects import STEP_FAILED, EventIn, Step, Summary
from models.plan import MilestoneKind, MilestoneStatus
from models.records import AgreementRecord, EventRecord, MilestoneRecord, TermsRecord
from tests.test_milestone_table import day, milestone, summary
from tests.test_outbox import specs


def step(first: int, last: int, state: str = "active") -> Step:
    terms, _ = specs(0)
    events = [
        EventIn(
            event_key=f"{terms.agreement_id}:{n}",
            agreement_id=terms.agreement_id,
            at=dt.datetime(2027, 3, 10, 9, n, tzinfo=dt.UTC),
            kind="step",
            summary=f"steg {n} – ”åäö”",
            data={"n": n},
        )
        for n in range(first, last + 1)
    ]
    rows = [milestone("m1", MilestoneKind.report_due, day(5), MilestoneStatus.due)]
    s = summary(terms.agreement_id, rows, complete=True, state=state)
    return Step(
        terms=[terms], events=events, summary=s.model_copy(update={"id": terms.agreement_id})
    )


def written(url: str) -> tuple[list[str], list[str], list[str], list[str]]:
    with Session(engine(url)) as session:
        events = session.exec(select(EventRecord).order_by(col(EventRecord.id))).all()
        terms = session.exec(select(TermsRecord.sha256)).all()
        states = session.exec(select(AgreementRecord.state)).all()
        milestones = session.exec(select(MilestoneRecord.id)).all()
    return [e.event_key for e in events], list(terms), list(states), list(milestones)


async def test_a_retried_step_leaves_the_rows_of_one(database_url: str) -> None:
    migrate(database_url)
    store = Store(database_url)
    await asyncio.to_thread(store.write_step, step(1, 2))  # an earlier attempt got this far
    later = step(1, 5, state="signed")
    # Retried, two attempts at once: the rest once each, in order; the summary as of now.
    await asyncio.gather(*(asyncio.to_thread(store.write_step, later) for _ in range(2)))
    events, terms, states, milestones = written(database_url)
    assert events == [e.event_key for e in later.events]
    assert terms == [later.terms[0].sha256]
    assert states == ["signed"]
    assert milestones == ["m1"]
    with Session(engine(database_url)) as session:
        first = session.exec(select(EventRecord)).first()
    assert first is not None and first.summary == "steg 1 – ”åäö”" and first.data_json == '{"n": 1}'


class ReadOnlyList(Store):
    """The agreement list refuses every write (a schema a migration broke)."""

    def _write_summary(self, session: Session, summary: Summary) -> None:
        raise RuntimeError("the agreements table is read-only")


async def test_a_refusing_agreement_list_does_not_hold_back_the_record(database_url: str) -> None:
    migrate(database_url)
    work = step(1, 3)
    with pytest.raises(ApplicationError) as raised:
        await asyncio.to_thread(ReadOnlyList(database_url).write_step, work)
    assert raised.value.type == STEP_FAILED
    assert raised.value.details == ("the agreement list",)
    assert "read-only" in str(raised.value)
    events, terms, states, _ = written(database_url)
    assert events == [e.event_key for e in work.events]  # the event log and terms are kept
    assert terms == [work.terms[0].sha256]
    assert states == []


async def test_a_page_after_a_change_waits_a_moment_for_the_new_terms(database_url: str) -> None:
    """The agreement page right after creating (or amending) may come before the step has
    written the terms: it waits for them rather than show an error, and says so only when
    they do not come."""
    from agreements import ops
    from models.config import Settings

    migrate(database_url)
    config = Settings(database_url=database_url)
    s = step(1, 1)
    sha = s.terms[0].sha256
    with pytest.raises(ops.OperationError) as refused:
        await ops.terms_soon(config, sha, wait=0.2)
    assert refused.value.code == "terms-not-stored"

    async def later() -> None:
        await asyncio.sleep(0.4)
        await asyncio.to_thread(Store(database_url).write_step, s)

    writer = asyncio.create_task(later())
    terms = await ops.terms_soon(config, sha, wait=10)
    await writer
    assert terms.id == s.terms[0].agreement_id
