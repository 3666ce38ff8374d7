"""The milestone table of the read model, on every supported database: the update_summary
activity upserts the rows that changed and, given all of them, deletes the others (the same
rows when retried); `ops.milestones` and `ops.upcoming_all` read them with their status as
of a day, and the finance CSV shows the status and the invoice number."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select
from temporalio.testing import ActivityEnvironment

from activities.store import Store, Summary
from agreements import ops
from models.config import Settings
from models.db import engine, migrate
from models.plan import MilestoneKind, MilestoneState, MilestoneStatus
from models.records import AgreementRecord, MilestoneRecord

TODAY = dt.date(2027, 3, 10)


def day(offset: int) -> dt.date:
    return TODAY + dt.timedelta(days=offset)


def milestone(
    id: str, kind: MilestoneKind, on: dt.date, status: MilestoneStatus, **more: Any
) -> MilestoneState:
    return MilestoneState(
        id=id,
        kind=kind,
        date=on,
        effective_date=on,
        rule="forward",
        title=f"{kind.value} {id}",
        status=status,
        **more,
    )


def summary(
    agreement_id: str,
    milestones: list[MilestoneState],
    complete: bool,
    state: str = "active",
) -> Summary:
    return Summary(
        id=agreement_id,
        title=f"Avtal {agreement_id}",
        reference=f"REF-{agreement_id}",
        language="sv",
        state=state,
        terms_sha256="0" * 64,
        workflow_id=f"agreement-{agreement_id}",
        round_workflow_id=None,
        start=dt.date(2027, 1, 1),
        end=dt.date(2029, 12, 31),
        ending=None,
        next_date=None,
        next_title=None,
        milestones=milestones,
        milestones_complete=complete,
    )


async def write(url: str, s: Summary) -> None:
    await ActivityEnvironment().run(Store(url).update_summary, s)


def stored(url: str, agreement_id: str) -> dict[str, MilestoneState]:
    with Session(engine(url)) as session:
        rows = session.exec(
            select(MilestoneRecord).where(MilestoneRecord.agreement_id == agreement_id)
        )
        return {row.id: row.state() for row in rows}


REPORT = milestone("report:annual:1", MilestoneKind.report_due, day(5), MilestoneStatus.due)
INVOICE = milestone(
    "invoice:2027-03-20:kommun:forening",
    MilestoneKind.invoice,
    day(10),
    MilestoneStatus.to_invoice,
    payer="kommun",
    payee="forening",
    amount=12_000_000_000,  # more than a 32-bit column holds
)
MEETING = milestone("meeting:1", MilestoneKind.meeting, day(40), MilestoneStatus.planned)


async def test_a_complete_write_then_a_partial_one_upserts(database_url: str) -> None:
    migrate(database_url)
    await write(database_url, summary("a1", [REPORT, INVOICE], complete=True))
    await write(database_url, summary("other", [REPORT], complete=True))
    assert stored(database_url, "a1") == {REPORT.id: REPORT, INVOICE.id: INVOICE}

    invoiced = INVOICE.model_copy(
        update={
            "status": MilestoneStatus.invoiced,
            "status_on": day(1),
            "status_by": "ekonomi@kommun.se",
            "number": "F-2027-17",
        }
    )
    await write(database_url, summary("a1", [invoiced, MEETING], complete=False))

    # The changed row is updated, the new one added, the one not mentioned kept.
    assert stored(database_url, "a1") == {
        REPORT.id: REPORT,
        INVOICE.id: invoiced,
        MEETING.id: MEETING,
    }
    assert stored(database_url, "other") == {REPORT.id: REPORT}
    with Session(engine(database_url)) as session:
        record = session.get(AgreementRecord, "a1")
        assert record is not None
        assert (record.title, record.state) == ("Avtal a1", "active")


async def test_a_complete_write_deletes_the_rows_it_does_not_list(database_url: str) -> None:
    migrate(database_url)
    await write(database_url, summary("a1", [REPORT, INVOICE, MEETING], complete=True))
    await write(database_url, summary("other", [REPORT, MEETING], complete=True))

    await write(database_url, summary("a1", [INVOICE], complete=True))
    assert stored(database_url, "a1") == {INVOICE.id: INVOICE}
    assert stored(database_url, "other") == {REPORT.id: REPORT, MEETING.id: MEETING}

    await write(database_url, summary("a1", [], complete=True))
    assert stored(database_url, "a1") == {}
    assert stored(database_url, "other") == {REPORT.id: REPORT, MEETING.id: MEETING}


async def test_a_retried_write_leaves_the_same_rows(database_url: str) -> None:
    migrate(database_url)
    await write(database_url, summary("a1", [REPORT, INVOICE, MEETING], complete=True))
    received = REPORT.model_copy(update={"status": MilestoneStatus.received, "status_on": day(-1)})
    again = summary("a1", [received, INVOICE], complete=True)
    await write(database_url, again)
    once = stored(database_url, "a1")
    await write(database_url, again)
    await write(database_url, again)
    assert stored(database_url, "a1") == once == {REPORT.id: received, INVOICE.id: INVOICE}
    with Session(engine(database_url)) as session:
        assert len(session.exec(select(AgreementRecord)).all()) == 1


async def test_milestones_read_as_of_today(database_url: str, tmp_path: Path) -> None:
    migrate(database_url)
    config = Settings(database_url=database_url, data_dir=tmp_path)
    late = milestone("report:annual:0", MilestoneKind.report_due, day(-1), MilestoneStatus.due)
    meeting_past = milestone("meeting:0", MilestoneKind.meeting, day(-1), MilestoneStatus.planned)
    due_today = milestone("report:annual:2", MilestoneKind.report_due, day(0), MilestoneStatus.due)
    await write(
        database_url,
        summary("a1", [MEETING, due_today, late, meeting_past, REPORT], complete=True),
    )

    read = ops.milestones(config, "a1", today=TODAY)
    # By effective date, then id; the table keeps the status as set, the reader turns it.
    assert [(m.id, m.status) for m in read] == [
        ("meeting:0", MilestoneStatus.passed),
        ("report:annual:0", MilestoneStatus.overdue),
        ("report:annual:2", MilestoneStatus.due),
        ("report:annual:1", MilestoneStatus.due),
        ("meeting:1", MilestoneStatus.planned),
    ]
    assert stored(database_url, "a1")["report:annual:0"].status == MilestoneStatus.due
    assert ops.milestones(config, "nobody", today=TODAY) == []

    # Without a day: today in Stockholm, so yesterday's report is overdue now.
    yesterday = ops.stockholm_today() - dt.timedelta(days=1)
    await write(
        database_url,
        summary(
            "a2",
            [milestone("r", MilestoneKind.report_due, yesterday, MilestoneStatus.due)],
            complete=True,
        ),
    )
    assert [m.status for m in ops.milestones(config, "a2")] == [MilestoneStatus.overdue]


async def test_upcoming_all_by_role_horizon_and_state(database_url: str, tmp_path: Path) -> None:
    migrate(database_url)
    config = Settings(database_url=database_url, data_dir=tmp_path)
    invoice = MilestoneKind.invoice
    unpaid = milestone("invoice:old:1", invoice, day(-20), MilestoneStatus.to_invoice)
    sent = milestone("invoice:old:2", invoice, day(-5), MilestoneStatus.invoiced, number="F-9")
    paid = milestone("invoice:old:3", invoice, day(-3), MilestoneStatus.paid)
    late_report = milestone("report:0", MilestoneKind.report_due, day(-2), MilestoneStatus.due)
    on_the_day = milestone("meeting:0", MilestoneKind.meeting, day(0), MilestoneStatus.planned)
    await write(
        database_url,
        summary(
            "b-agreement",
            [unpaid, sent, paid, late_report, on_the_day, REPORT, INVOICE, MEETING],
            complete=True,
        ),
    )
    # Same day as b's invoice: ordered by agreement id after the date.
    same_day = INVOICE.model_copy(update={"id": "invoice:a"})
    await write(database_url, summary("a-agreement", [same_day], complete=True))
    ended_invoice = milestone("invoice:e", invoice, day(3), MilestoneStatus.to_invoice)
    ended_unpaid = milestone("invoice:e0", invoice, day(-3), MilestoneStatus.to_invoice)
    await write(
        database_url, summary("ended", [ended_invoice, ended_unpaid], complete=True, state="ended")
    )

    def listed(days: int, role: str) -> list[tuple[str, str]]:
        return [(a.id, m.id) for a, m in ops.upcoming_all(config, days, role, today=TODAY)]

    assert listed(30, "finance") == [
        ("b-agreement", unpaid.id),
        ("b-agreement", sent.id),
        ("a-agreement", same_day.id),
        ("b-agreement", INVOICE.id),
    ]
    assert listed(30, "contact") == [("b-agreement", on_the_day.id), ("b-agreement", REPORT.id)]
    assert listed(30, "coordinator") == [
        ("b-agreement", on_the_day.id),
        ("b-agreement", REPORT.id),
        ("a-agreement", same_day.id),
        ("b-agreement", INVOICE.id),
    ]
    assert listed(40, "coordinator")[-1] == ("b-agreement", MEETING.id)
    assert listed(9, "coordinator") == [
        ("b-agreement", on_the_day.id),
        ("b-agreement", REPORT.id),
    ]
    assert listed(-5, "coordinator") == [("b-agreement", on_the_day.id)]
    assert listed(0, "finance") == [("b-agreement", unpaid.id), ("b-agreement", sent.id)]
    assert len(listed(10**9, "coordinator")) == 5  # clamped, not an overflow

    rows = ops.upcoming_all(config, 30, "finance", today=TODAY)
    assert [m.status for _, m in rows] == [
        MilestoneStatus.to_invoice,
        MilestoneStatus.invoiced,
        MilestoneStatus.to_invoice,
        MilestoneStatus.to_invoice,
    ]
    assert rows[0][0].reference == "REF-b-agreement"
    assert rows[3][1] == INVOICE

    with pytest.raises(ops.OperationError, match="role 'auditor' is not one of"):
        ops.upcoming_all(config, 30, "auditor", today=TODAY)


async def test_upcoming_csv_has_status_date_and_invoice_number(
    database_url: str, tmp_path: Path
) -> None:
    migrate(database_url)
    config = Settings(database_url=database_url, data_dir=tmp_path)
    invoiced = INVOICE.model_copy(
        update={"status": MilestoneStatus.invoiced, "status_on": day(2), "number": "F-2027-17"}
    )
    await write(database_url, summary("a1", [invoiced], complete=True))
    rows = ops.upcoming_all(config, 30, "finance", today=TODAY)
    # In the reader's language: Swedish words for the kind and the status; parties by name
    # when the terms are known (here they are not stored: their keys, this once).
    header, row = list(csv.reader(io.StringIO(ops.upcoming_csv("sv", rows, {})), delimiter=";"))
    assert header == [
        "Avtal",
        "Diarienummer",
        "Datum enligt avtalet",
        "Datum",
        "Typ",
        "Vad",
        "Belopp (kr)",
        "Betalare",
        "Mottagare",
        "Status",
        "Status satt den",
        "Fakturanummer",
    ]
    assert row == [
        "Avtal a1",
        "REF-a1",
        "2027-03-20",
        "2027-03-20",
        "fakturering",
        invoiced.title,
        "12000000000",
        "kommun",
        "forening",
        "fakturerad",
        "2027-03-12",
        "F-2027-17",
    ]
    english = list(csv.reader(io.StringIO(ops.upcoming_csv("en", rows, {})), delimiter=";"))
    assert english[0][:2] == ["Agreement", "Reference"]
    assert english[1][4] == "invoicing" and english[1][9] == "invoiced"
