"""Att göra: what needs attention today, from a real database (SQLite): deadlines first,
then what is overdue, open rounds, failed emails, reports to approve and what is coming;
only the agreements a person may see, and only the money for finance."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlmodel import Session

from agreements.attention import Round, Why, attention
from models.db import migrate
from models.records import AgreementRecord, MilestoneRecord, OutboxRecord

TODAY = dt.date(2027, 3, 10)


def milestone(agreement: str, ident: str, kind: str, day: dt.date, status: str, **more: object):
    return MilestoneRecord(
        agreement_id=agreement,
        id=ident,
        kind=kind,
        date=day,
        effective_date=day,
        rule="none",
        title=ident,
        status=status,
        **more,  # type: ignore[arg-type]
    )


def test_what_needs_attention_in_order(tmp_path: Path) -> None:
    db = migrate(f"sqlite:///{tmp_path / 'a.db'}")
    days = dt.timedelta
    with Session(db) as session:
        for ident, state in (("a", "active"), ("b", "signing"), ("c", "active"), ("x", "ended")):
            session.add(
                AgreementRecord(
                    id=ident,
                    title=f"Avtal {ident}",
                    state=state,
                    terms_sha256="0" * 64,
                    workflow_id=f"agreement-{ident}",
                    start=dt.date(2027, 1, 1),
                    end=dt.date(2027, 12, 31),
                )
            )
        for row in (
            milestone("a", "notice", "notice_deadline", TODAY + days(20), "open"),
            milestone("a", "notice-later", "notice_deadline", TODAY + days(60), "open"),
            milestone("a", "notice-decided", "notice_deadline", TODAY + days(5), "decided"),
            milestone("a", "report-late", "report_due", TODAY - days(3), "due"),
            milestone("a", "report-in", "report_due", TODAY - days(30), "received"),
            milestone("a", "report-ok", "report_due", TODAY - days(60), "approved"),
            milestone("a", "meeting", "meeting", TODAY + days(5), "planned"),
            milestone("a", "meeting-past", "meeting", TODAY - days(5), "planned"),
            milestone("c", "invoice-late", "invoice", TODAY - days(1), "to_invoice", amount=1000),
            milestone("c", "invoice-unpaid", "invoice", TODAY - days(40), "invoiced", number="F1"),
            milestone("c", "invoice-paid", "invoice", TODAY - days(80), "paid"),
            milestone("c", "invoice-soon", "invoice", TODAY + days(10), "to_invoice"),
            milestone("x", "ended-report", "report_due", TODAY - days(3), "due"),
        ):
            session.add(row)
        session.add(
            OutboxRecord(
                key="k",
                agreement_id="a",
                template="reminder",
                recipient="fel@adress",
                subject="Påminnelse",
                message_id="<m>",
                status="failed",
            )
        )
        session.commit()
    closes = dt.datetime(2027, 3, 31, 12, tzinfo=dt.UTC)
    items = attention(db, None, TODAY, [Round("b", 2, 6, closes)])
    lines = [(i.why, i.milestone.id if i.milestone else i.agreement.id) for i in items]
    assert lines == [
        (Why.deadline, "notice"),  # first: a missed one can cost a year's funding
        (Why.overdue_report, "report-late"),
        (Why.overdue_invoice, "invoice-late"),
        (Why.unpaid, "invoice-unpaid"),
        (Why.round, "b"),
        (Why.email, "a"),
        (Why.approve, "report-in"),
        (Why.due, "meeting"),
        (Why.due, "invoice-soon"),
    ]
    round_line = next(i for i in items if i.why is Why.round)
    assert (round_line.signed, round_line.signers, round_line.closes) == (2, 6, closes)
    assert round_line.anchor == "/a/b#signing"
    assert items[0].anchor == "/a/a#m-notice"
    # Only what a person may see; finance sees the money of its agreements.
    mine = attention(db, {"c"}, TODAY)
    assert {i.agreement.id for i in mine} == {"c"}
    money = attention(db, {"a", "c"}, TODAY, [Round("b", 2, 6, closes)], money_only={"a", "c"})
    assert {i.milestone.kind.value for i in money if i.milestone} == {"invoice"}
    assert not [i for i in money if i.why in (Why.email, Why.round)]
