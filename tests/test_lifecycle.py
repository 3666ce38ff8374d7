"""Whole lives of the example agreements through the real workflows and activities, on
Temporal's time-skipping test server, with a real SMTP server (aiosmtpd) on loopback and a
real SQLite database. Assertions are on the messages that reached the sink."""

from __future__ import annotations

import datetime as dt
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest
from sqlmodel import Session, select

from agreements.simulate import ScenarioFile, Step, simulate
from models.agreement import Agreement, Language
from models.db import engine
from models.loader import load_agreement
from models.plan import Scenario
from models.records import EventRecord, OutboxRecord
from models.schedule.engine import plan

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NAMES = ["helsingborg-inva-sam", "planteringen", "lund-radrum", "kristianstad-gamlegarden"]


def example(name: str) -> Agreement:
    return load_agreement(EXAMPLES / f"{name}.toml")


def mail(folder: Path) -> list[EmailMessage]:
    out = []
    for path in sorted((folder / "mail").glob("*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=default)
        assert isinstance(message, EmailMessage)
        out.append(message)
    return out


def minute(value: str) -> str:
    return dt.datetime.fromisoformat(value).isoformat()[:16]


@pytest.mark.parametrize("name", NAMES)
async def test_simulation_sends_what_the_preview_promises(name: str, tmp_path: Path) -> None:
    """With no scenario, the durable workflow and the pure engine agree email for email."""
    agreement = example(name)
    sent, state = await simulate(agreement, workdir=tmp_path)
    promised = plan(agreement, dt.datetime(2000, 1, 1, tzinfo=dt.UTC), scenario=Scenario.plan)
    expected = sorted((e.send_at.isoformat()[:16], e.template, e.to.email) for e in promised.emails)
    got = sorted((minute(e.send_at), e.template, e.to) for e in sent)
    assert got == expected
    assert state.state.value == "ended"
    assert state.end == promised.end
    # Exactly once: one message per outbox key, each with its own stable Message-ID.
    assert len({e.key for e in sent if e.template != "signature_completed"}) == len(
        [e for e in sent if e.template != "signature_completed"]
    )
    assert len({e.message_id for e in sent}) == len(sent)
    with Session(engine(f"sqlite:///{tmp_path / 'simulate.db'}")) as session:
        outbox = session.exec(select(OutboxRecord)).all()
        assert {row.status for row in outbox} == {"sent"}
        assert len(outbox) == len(sent)
        kinds = {row.kind for row in session.exec(select(EventRecord)).all()}
    assert {"created", "signed", "active", "ended"} <= kinds


async def test_messages_have_text_html_and_calendar(tmp_path: Path) -> None:
    agreement = example("helsingborg-inva-sam")
    await simulate(agreement, workdir=tmp_path)
    messages = mail(tmp_path)
    invoice = next(m for m in messages if m["X-Agreement-Template"] == "invoice_reminder")
    assert invoice["Subject"].endswith("IOP INVA-SAM – mötesplats @Söder")
    text = invoice.get_body(preferencelist=("plain",))
    html = invoice.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    assert "650\u00a0000\u00a0kr" in text.get_content()
    calendars = [p for p in invoice.walk() if p.get_content_type() == "text/calendar"]
    assert len(calendars) == 1
    ics = calendars[0].get_content()
    ics = ics if isinstance(ics, str) else ics.decode()
    assert "METHOD:REQUEST" in ics
    assert "UID:helsingborg-inva-sam.invoice.amf.inva-sam." in ics
    assert "DTSTART;VALUE=DATE:2024050" in ics
    # The meeting convener and the coordinator are who the seed names.
    to_meeting = {m["X-Sink-Recipient"] for m in messages if "meeting" in m["X-Agreement-Template"]}
    assert to_meeting == {"saul.sagnia@inva-sam.example.se"}


async def test_notice_of_non_renewal_ends_the_agreement(tmp_path: Path) -> None:
    """Seed 000: a party that will not extend tells the steering group 3 months ahead."""
    agreement = example("helsingborg-inva-sam")
    script = ScenarioFile(
        steps=[Step(at=dt.datetime(2025, 1, 15, 10, 0), action="notice", party="helsingborgshem")]
    )
    sent, state = await simulate(agreement, script, workdir=tmp_path)
    assert state.end == dt.date(2025, 4, 30)
    assert state.ending is None or state.ending == "non_renewal"
    ended = [e for e in sent if e.template == "agreement_ended"]
    everyone = {
        c.email for p in agreement.parties.values() for c in p.contacts if "contact" in c.roles
    }
    assert everyone | {agreement.coordinator.email} <= {e.to for e in ended}
    assert all(e.calendar == "CANCEL" for e in ended)
    # Nothing about the years that will not come: no invoice after the end.
    assert not [e for e in sent if e.template == "invoice_reminder" and e.send_at >= "2025-04-30"]
    # The last årsrapport, due after the end, is still asked for.
    assert any(e.template == "report_reminder" and e.send_at.startswith("2025-05") for e in sent)


async def test_rescission_with_repayment(tmp_path: Path) -> None:
    agreement = example("helsingborg-inva-sam")
    script = ScenarioFile(
        steps=[
            Step(
                at=dt.datetime(2024, 9, 2, 10, 0),
                action="rescind",
                party="amf",
                reason="Verksamheten bedrivs inte enligt överenskommelsen",
                repayment=200_000,
            )
        ]
    )
    sent, state = await simulate(agreement, script, workdir=tmp_path)
    assert state.end == dt.date(2024, 9, 2)
    assert state.ending == "rescission"
    ended = [m for m in mail(tmp_path) if m["X-Agreement-Template"] == "agreement_ended"]
    assert ended
    body = ended[0].get_body(preferencelist=("plain",))
    assert body is not None and "200\u00a0000\u00a0kr" in body.get_content()
    assert not [e for e in sent if e.send_at > "2024-09-03" and e.template != "report_reminder"]
    # The end is announced once, by the decision: no "Om 30 dagar"/"Idag" reminder of it after.
    assert not [e for e in sent if e.template == "agreement_end"]
    # The claim reaches finance on both sides: INVA-SAM repays what amf paid.
    claimed = {e.to for e in sent if e.template == "agreement_ended"}
    assert {"ekonomi@inva-sam.example.se", "ekonomi@amf.helsingborg.example.se"} <= claimed


async def test_late_report_is_escalated(tmp_path: Path) -> None:
    agreement = example("lund-radrum")
    script = ScenarioFile(
        plan_reports=True,
        steps=[
            Step(
                at=dt.datetime(2020, 2, 10, 12, 0),
                action="report",
                report="halvarsrapport",
                occurrence=1,
            )
        ],
    )
    sent, _ = await simulate(agreement, script, workdir=tmp_path)
    overdue = [e for e in sent if e.template == "report_overdue"]
    # Due 2020-01-31 (Friday): told three days after, on Monday 3 February, with the coordinator.
    assert {(e.send_at[:10], e.to) for e in overdue} == {
        ("2020-02-03", "jenny.mark.ketter@im.example.org"),
        ("2020-02-03", "johan.larssonbostrom@lund.example.se"),
    }


async def test_declined_signature_tells_everyone_involved(tmp_path: Path) -> None:
    agreement = example("planteringen")
    script = ScenarioFile(
        sign=False,
        steps=[
            Step(
                at=dt.datetime(2024, 4, 17, 9, 0),
                action="sign",
                signer="sara.svensson@raddabarnen.example.se",
            ),
            Step(
                at=dt.datetime(2024, 4, 18, 9, 0),
                action="decline",
                signer="maria.holm@helsingborg.example.se",
                reason="Beloppet måste först beslutas i nämnden",
            ),
        ],
        plan_reports=False,
        plan_renewals=False,
    )
    sent, state = await simulate(agreement, script, workdir=tmp_path)
    assert state.state.value == "draft"
    declined = [e for e in sent if e.template == "signature_declined"]
    told = {e.to for e in declined}
    assert "sara.svensson@raddabarnen.example.se" in told  # already signed: still told
    assert agreement.coordinator.email in told
    assert len(told) == 7  # six signatories and the coordinator
    reason = next(m for m in mail(tmp_path) if m["X-Agreement-Template"] == "signature_declined")
    text = reason.get_body(preferencelist=("plain",))
    assert text is not None and "nämnden" in text.get_content()
    assert not [e for e in sent if e.template in ("invoice_reminder", "report_reminder")]


async def test_withdrawal_asks_the_remaining_parties(tmp_path: Path) -> None:
    """Seed 004: after 2023-02-28 a party may leave with one month's notice; the remaining
    parties decide whether the agreement ends altogether."""
    agreement = example("kristianstad-gamlegarden")
    script = ScenarioFile(
        steps=[
            Step(
                at=dt.datetime(2023, 3, 15, 10, 0),
                action="withdraw",
                party="shaf",
                reason="Styrelsebeslut",
            ),
            Step(at=dt.datetime(2023, 3, 20, 10, 0), action="withdrawal_end_all"),
        ]
    )
    sent, state = await simulate(agreement, script, workdir=tmp_path)
    asked = {e.to for e in sent if e.template == "withdrawal_decide"}
    assert asked == {
        "lena.hagerman@kristianstad.example.se",
        "kajsa.jordevik@kristianstad.example.se",
        "lisa.bjorck@quinnorunited.example.se",
    }
    assert state.end == dt.date(2023, 4, 15)
    assert state.ending == "withdrawal"


async def test_english_agreement_sends_english(tmp_path: Path) -> None:
    agreement = example("kristianstad-gamlegarden").model_copy(update={"language": Language.en})
    sent, _ = await simulate(agreement, workdir=tmp_path)
    subjects = [e.subject for e in sent if e.template == "milestone_notice"]
    assert subjects and all("IOP Gamlegården" in s for s in subjects)
    body = next(m for m in mail(tmp_path) if m["X-Agreement-Template"] == "agreement_end")
    assert body["Content-Language"] == "en"


async def test_opt_in_not_approved_ends_and_everyone_is_told(tmp_path: Path) -> None:
    """Seed 001: without every party's written approval by 30 September, it ends 2024-12-31."""
    agreement = example("planteringen")
    script = ScenarioFile(
        plan_renewals=False,
        steps=[Step(at=dt.datetime(2024, 9, 2, 10, 0), action="approve", party="sff")],
    )
    sent, state = await simulate(agreement, script, workdir=tmp_path)
    assert state.end == dt.date(2024, 12, 31)
    ended = [e for e in sent if e.template == "agreement_ended"]
    assert ended and {e.send_at[:10] for e in ended} == {"2024-10-01"}
    assert agreement.coordinator.email in {e.to for e in ended}
    # Reminders went to the parties that had not approved, not to SFF after it did.
    late = [
        e for e in sent if e.template == "extension_deadline_reminder" and e.send_at >= "2024-09-02"
    ]
    assert late and "mahmoud.el-rameid@helsingborg.example.se" not in {e.to for e in late}
    assert not [e for e in sent if e.send_at >= "2025-01-01" and e.template != "report_reminder"]


async def test_after_a_withdrawal_the_others_go_on_without_that_party(tmp_path: Path) -> None:
    agreement = example("kristianstad-gamlegarden")
    script = ScenarioFile(
        steps=[
            Step(at=dt.datetime(2023, 3, 15, 10, 0), action="withdraw", party="shaf"),
            Step(at=dt.datetime(2023, 3, 20, 10, 0), action="withdrawal_continue"),
        ]
    )
    sent, state = await simulate(agreement, script, workdir=tmp_path)
    assert state.end == dt.date(2024, 6, 30)
    assert state.withdrawn == {"shaf": dt.date(2023, 4, 15)}
    jamal = [e for e in sent if e.to == "jamal.abdulle@shaf.example.se"]
    assert jamal and max(e.send_at for e in jamal) < "2023-04-16"
    assert any(e.to == "lisa.bjorck@quinnorunited.example.se" and e.send_at > "2024" for e in sent)


async def test_an_invoiced_instalment_stops_its_reminders_and_its_statuses_reach_the_table(
    tmp_path: Path,
) -> None:
    """Finance records the second instalment as invoiced between its two reminders, then as
    paid: the reminder on the day is not sent, and the read model's milestone table shows
    the status with the invoice's number."""
    from models.records import MilestoneRecord

    agreement = example("helsingborg-inva-sam")
    preview = plan(agreement, dt.datetime(2024, 1, 1, tzinfo=dt.UTC), scenario=Scenario.plan)
    second = [m for m in preview.milestones if m.kind.value == "invoice"][1]
    reminders = sorted({e.send_at for e in preview.emails if e.milestone_id == second.id})
    assert len(reminders) == 2, reminders  # 14 days before and on the day
    between = (reminders[0] + dt.timedelta(days=1)).replace(tzinfo=None)
    script = ScenarioFile(
        steps=[
            Step(at=between, action="invoiced", milestone=second.id, number="F-2024-117"),
            Step(at=between + dt.timedelta(days=20), action="paid", milestone=second.id),
        ]
    )
    sent, _ = await simulate(agreement, script, workdir=tmp_path)
    to_finance = [e for e in sent if e.template == "invoice_reminder" and second.id in e.key]
    assert {e.send_at[:10] for e in to_finance} == {reminders[0].date().isoformat()}
    with Session(engine(f"sqlite:///{tmp_path / 'simulate.db'}")) as session:
        row = session.exec(select(MilestoneRecord).where(MilestoneRecord.id == second.id)).one()
        rows = session.exec(select(MilestoneRecord)).all()
    assert (row.status, row.number) == ("paid", "F-2024-117")
    invoices = {m.id for m in preview.milestones if m.kind.value == "invoice"}
    assert invoices <= {r.id for r in rows}
    assert {r.status for r in rows if r.id in invoices - {second.id}} == {"to_invoice"}
