"""What needs attention today ("Att göra"): from the read model, for the agreements a person
may see, each line saying what to do and where.

In order: deadlines for notice and extension decisions in the coming days (a missed one
can cost a year's funding), what is overdue (reports not received, instalments not
invoiced or not paid), open signature rounds, emails that could not be sent, reports
waiting to be approved, then what else is due in the coming days. Signature rounds are
read from their workflows by the caller (`Round`); everything else is one query each.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Engine, and_, or_
from sqlmodel import Session, col, select

from models.plan import MilestoneKind, MilestoneState, MilestoneStatus
from models.records import AgreementRecord, MilestoneRecord, OutboxRecord

SOON = 30  # days ahead that a deadline or a due date is worth a line
DEADLINES = (
    MilestoneKind.notice_deadline.value,
    MilestoneKind.extension_deadline.value,
    MilestoneKind.review_deadline.value,
)
MONEY = (MilestoneKind.invoice.value,)


class Why(StrEnum):
    """What kind of line it is, in the order the page lists them."""

    deadline = "deadline"  # a notice or extension decision due soon
    overdue_report = "overdue_report"
    overdue_invoice = "overdue_invoice"  # still to invoice after its date
    unpaid = "unpaid"  # invoiced, not paid, after its date
    round = "round"  # an open signature round
    email = "email"  # an email that could not be sent
    approve = "approve"  # a report received, to approve or return
    due = "due"  # something else due in the coming days


ORDER = list(Why)


@dataclass(frozen=True)
class Item:
    why: Why
    agreement: AgreementRecord
    date: dt.date | None = None
    milestone: MilestoneState | None = None
    email: OutboxRecord | None = None
    signed: int = 0  # a round: how many have signed
    signers: int = 0  # a round: of how many
    closes: dt.datetime | None = None  # a round: when it expires

    @property
    def anchor(self) -> str:
        """Where on the agreement's page it is done."""
        if self.milestone is not None:
            return f"/a/{self.agreement.id}#m-{self.milestone.id}"
        if self.why is Why.round:
            return f"/a/{self.agreement.id}#signing"
        if self.why is Why.email:
            return f"/a/{self.agreement.id}#email"
        return f"/a/{self.agreement.id}"

    @property
    def money(self) -> bool:
        return self.milestone is not None and self.milestone.kind.value in MONEY


@dataclass(frozen=True)
class Round:
    """An open signature round as its workflow reports it."""

    agreement_id: str
    signed: int
    signers: int
    closes: dt.datetime


def attention(
    db: Engine,
    visible: set[str] | None,
    today: dt.date,
    rounds: list[Round] = (),  # type: ignore[assignment]
    money_only: set[str] | None = None,
    days: int = SOON,
) -> list[Item]:
    """The lines for the agreements in `visible` (None: every agreement), in the order of
    `Why` then date, looking `days` ahead (the weekly digest looks 14). For the agreements
    in `money_only` (a finance person's), only the instalments."""
    horizon = today + dt.timedelta(days=days)
    money_only = money_only or set()
    with Session(db) as session:
        running = select(AgreementRecord).where(AgreementRecord.state != "ended")
        if visible is not None:  # read only these (a person's few of a region's thousands)
            running = running.where(col(AgreementRecord.id).in_(sorted(visible)))
        agreements = {a.id: a for a in session.exec(running)}
        ids = list(agreements)
        effective = col(MilestoneRecord.effective_date)
        status = col(MilestoneRecord.status)
        kind = col(MilestoneRecord.kind)
        rows = session.exec(
            select(MilestoneRecord).where(
                col(MilestoneRecord.agreement_id).in_(ids),
                or_(
                    and_(effective >= today, effective <= horizon),
                    and_(
                        effective < today,
                        status.in_(
                            [
                                MilestoneStatus.due.value,
                                MilestoneStatus.returned.value,
                                MilestoneStatus.postponed.value,
                                MilestoneStatus.to_invoice.value,
                                MilestoneStatus.invoiced.value,
                            ]
                        ),
                    ),
                    status == MilestoneStatus.received.value,
                ),
                kind != MilestoneKind.signing.value,
            )
        ).all()
        failed = session.exec(
            select(OutboxRecord).where(
                col(OutboxRecord.agreement_id).in_(ids), OutboxRecord.status == "failed"
            )
        ).all()
    items: list[Item] = []
    for row in rows:
        m = row.state().as_of(today)
        agreement = agreements[row.agreement_id]
        if row.agreement_id in money_only and m.kind.value not in MONEY:
            continue
        why = judge(m, today)
        if why is not None:
            items.append(Item(why, agreement, m.effective_date, milestone=m))
    for email in failed:
        if email.agreement_id not in money_only:
            items.append(Item(Why.email, agreements[email.agreement_id], email=email))
    for r in rounds:
        if r.agreement_id in agreements and r.agreement_id not in money_only:
            items.append(
                Item(
                    Why.round,
                    agreements[r.agreement_id],
                    r.closes.date(),
                    signed=r.signed,
                    signers=r.signers,
                    closes=r.closes,
                )
            )
    items.sort(key=lambda i: (ORDER.index(i.why), i.date or dt.date.min, i.agreement.id))
    return items


def judge(m: MilestoneState, today: dt.date) -> Why | None:
    """Which line a milestone makes today, if any."""
    kind, status = m.kind.value, m.status
    if status is MilestoneStatus.received:
        return Why.approve
    if m.effective_date < today:
        if kind == MilestoneKind.report_due.value and status in (
            MilestoneStatus.overdue,
            MilestoneStatus.due,
            MilestoneStatus.returned,
            MilestoneStatus.postponed,
        ):
            return Why.overdue_report
        if kind in MONEY and status is MilestoneStatus.to_invoice:
            return Why.overdue_invoice
        if kind in MONEY and status is MilestoneStatus.invoiced:
            return Why.unpaid
        return None
    if kind in DEADLINES:
        return Why.deadline if status is MilestoneStatus.open else None
    if status in (
        MilestoneStatus.due,
        MilestoneStatus.returned,
        MilestoneStatus.postponed,
        MilestoneStatus.to_invoice,
        MilestoneStatus.planned,
    ) and kind in (
        MilestoneKind.report_due.value,
        MilestoneKind.invoice.value,
        MilestoneKind.meeting.value,
        MilestoneKind.agreement_end.value,
    ):
        return Why.due
    return None
