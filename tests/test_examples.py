"""Each example's preview holds what its seed text implies.

The expected dates and amounts below were worked out by hand from the seed agreements
(shared/seeds/000, 001, 003, 004) and a calendar, not read back from the engine: the
comments quote the sentence each one comes from.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pytest

from models.agreement import Agreement
from models.loader import load_agreement
from models.plan import Decisions, EndingKind, MilestoneKind, Plan, RenewalDecision, Scenario
from models.schedule import dates
from models.schedule.engine import plan

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
D = dt.date


def at(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(9, 0), tzinfo=dates.STOCKHOLM)


def example(name: str) -> Agreement:
    return load_agreement(EXAMPLES / f"{name}.toml")


BEFORE_ALL = D(2000, 1, 1)


def preview(name: str) -> Plan:
    """The plan scenario, seen from before the agreement started (nothing is past)."""
    return plan(example(name), at(BEFORE_ALL), scenario=Scenario.plan)


def of_kind(p: Plan, kind: MilestoneKind) -> list[tuple[dt.date, dt.date]]:
    return [(m.date, m.effective_date) for m in p.milestones if m.kind is kind]


def test_every_example_file_is_used_here() -> None:
    names = {path.stem for path in EXAMPLES.glob("*.toml")}
    assert names == {
        "helsingborg-inva-sam",
        "planteringen",
        "lund-radrum",
        "kristianstad-gamlegarden",
    }


# --- 000: INVA-SAM, Helsingborgs stad (AMF) and Helsingborgshem ----------------------


def test_inva_sam_runs_three_years_at_most() -> None:
    # "avser perioden 2024-05-01 till 2025-04-30 med möjlighet till förlängning årsvis
    # under 3 år"; "upphör efter 3 år utan krav på föregående uppsägning".
    p = preview("helsingborg-inva-sam")
    assert (p.start, p.end) == (D(2024, 5, 1), D(2027, 4, 30))
    assert of_kind(p, MilestoneKind.agreement_end) == [(D(2027, 4, 30), D(2027, 4, 30))]
    assert of_kind(p, MilestoneKind.period_end) == [
        (D(2025, 4, 30), D(2025, 4, 30)),
        (D(2026, 4, 30), D(2026, 4, 30)),
    ]


def test_inva_sam_money_and_premises() -> None:
    # "År 1, 12 månader: 650 000:-" for three years, from AMF to INVA-SAM. May Day is a
    # holiday: 2024-05-01 (Wed) -> Thu 2; 2025-05-01 (Thu) -> Fri 2; 2026-05-01 is a
    # Friday and a holiday -> Monday 4.
    p = preview("helsingborg-inva-sam")
    invoices = [m for m in p.milestones if m.kind is MilestoneKind.invoice]
    assert [(m.date, m.effective_date, m.amount, m.payer, m.payee) for m in invoices] == [
        (D(2024, 5, 1), D(2024, 5, 2), 650_000, "amf", "inva-sam"),
        (D(2025, 5, 1), D(2025, 5, 2), 650_000, "amf", "inva-sam"),
        (D(2026, 5, 1), D(2026, 5, 4), 650_000, "amf", "inva-sam"),
    ]
    # Helsingborgshem: "lokal med hyreslättnad ... motsvarande 400 000:-" a year, never invoiced.
    in_kind = [m for m in p.milestones if m.kind is MilestoneKind.in_kind]
    assert [(m.date, m.amount, m.payer) for m in in_kind] == [
        (D(2024, 5, 1), 400_000, "helsingborgshem"),
        (D(2025, 5, 1), 400_000, "helsingborgshem"),
        (D(2026, 5, 1), 400_000, "helsingborgshem"),
    ]


def test_inva_sam_notice_three_months_before_each_yearly_end() -> None:
    # "Part som avser att inte förlänga ... 3 månader innan årlig avtalsperiods slut."
    # Counted back from 2025-04-30 and 2026-04-30: both are weekdays (Thu, Fri). The
    # third year ends without notice, so there is no third deadline.
    p = preview("helsingborg-inva-sam")
    assert of_kind(p, MilestoneKind.notice_deadline) == [
        (D(2025, 1, 30), D(2025, 1, 30)),
        (D(2026, 1, 30), D(2026, 1, 30)),
    ]


def test_inva_sam_steering_group_and_reports() -> None:
    # "Styrgruppsmöten ska ske vid minst 4 tillfällen per avtalsperiod, varje kvartal";
    # INVA-SAM convenes.
    p = preview("helsingborg-inva-sam")
    meetings = [m for m in p.milestones if m.kind is MilestoneKind.meeting]
    assert len(meetings) == 12
    for period in (1, 2, 3):
        assert sum(m.period == period for m in meetings) == 4
    # Delrapport after each half year, årsrapport after each year, due a month later.
    # 2024-11-30 is a Saturday -> Monday 2 December; 2026-05-30 is a Saturday -> 1 June.
    due = [(m.report, m.date, m.effective_date) for m in p.milestones if m.report]
    assert due == [
        ("delrapport", D(2024, 11, 30), D(2024, 12, 2)),
        ("arsrapport", D(2025, 5, 30), D(2025, 5, 30)),
        ("delrapport", D(2025, 11, 30), D(2025, 12, 1)),
        ("arsrapport", D(2026, 5, 30), D(2026, 6, 1)),
        ("delrapport", D(2026, 11, 30), D(2026, 11, 30)),
        ("arsrapport", D(2027, 5, 30), D(2027, 5, 31)),
    ]


def test_inva_sam_emails_go_to_the_right_people_after_signing() -> None:
    p = preview("helsingborg-inva-sam")
    # Signed on paper "Helsingborg 2024-04-26": nothing goes out before that day.
    assert min(e.send_at for e in p.emails).date() == D(2024, 4, 26)
    invoice_to = {e.to.email for e in p.emails if e.template == "invoice_reminder"}
    assert invoice_to == {"ekonomi@amf.helsingborg.example.se", "ekonomi@inva-sam.example.se"}
    meeting_to = {e.to.email for e in p.emails if e.template == "meeting_reminder"}
    assert meeting_to == {"saul.sagnia@inva-sam.example.se"}
    # Paper signing: nobody is sent a signing link.
    assert not [e for e in p.emails if e.template == "signature_request"]
    for e in p.emails:
        local = e.send_at.astimezone(dates.STOCKHOLM)
        assert local.time() == dt.time(8, 0)
        assert dates.is_business_day(local.date()), e.key


def test_inva_sam_ends_after_one_year_when_a_party_gives_notice() -> None:
    # Helsingborgshem tells the steering group on 2025-01-15, before the 30 January deadline.
    notice = RenewalDecision(
        party="helsingborgshem", term_end=D(2025, 4, 30), renew=False, given_on=D(2025, 1, 15)
    )
    p = plan(
        example("helsingborg-inva-sam"),
        at(D(2025, 1, 16)),
        Decisions(signed_on=D(2024, 4, 26), renewals=[notice]),
    )
    assert p.end == D(2025, 4, 30)
    assert p.ending is EndingKind.non_renewal
    assert not [m for m in p.milestones if m.kind is MilestoneKind.invoice and m.period == 2]


def test_inva_sam_taken_on_today_sends_only_what_is_ahead() -> None:
    # Imported on 2026-11-24, in the third year: the delrapport due Monday 30 November
    # is still reminded; every earlier email is marked past and will not be sent.
    now = at(D(2026, 11, 24))
    p = plan(example("helsingborg-inva-sam"), now, Decisions(signed_on=D(2024, 4, 26)))
    ahead = [e for e in p.emails if not e.past]
    assert ahead and all(e.send_at >= now.replace(hour=0) for e in ahead)
    assert any(e.milestone_id == "report:delrapport:3" and e.days_before == 0 for e in ahead), [
        e.key for e in ahead[:5]
    ]
    assert all(m.past for m in p.milestones if m.effective_date < D(2026, 11, 24))


# --- 001: Planteringen ---------------------------------------------------------------


def test_planteringen_invoices_by_1_may_2024() -> None:
    # "Rädda Barnen fakturerar berörda förvaltningar ... och Helsingborgshem senast
    # 2024-05-01": SFF, AMF, SOF and Helsingborgshem 150 000 each; May Day -> 2 May.
    p = preview("planteringen")
    invoices = [m for m in p.milestones if m.kind is MilestoneKind.invoice]
    assert sorted((m.payer, m.amount, m.date, m.effective_date) for m in invoices) == [
        (payer, 150_000, D(2024, 5, 1), D(2024, 5, 2))
        for payer in ("amf", "helsingborgshem", "sff", "sof")
    ]
    assert {m.payee for m in invoices} == {"radda-barnen"}
    assert sum(m.amount or 0 for m in invoices) == 600_000
    # "Generella medel från Rädda Barnen ... 277 252", once.
    in_kind = [m for m in p.milestones if m.kind is MilestoneKind.in_kind]
    assert [(m.payer, m.amount) for m in in_kind] == [("radda-barnen", 277_252)]


def test_planteringen_extension_needs_approval_three_months_ahead() -> None:
    # "perioden 2024-01-01 – 2024-12-31"; "kan förlängas med 1+1 år"; approval "senast
    # 3 månader innan överenskommelsen upphör": 30 September (Mon 2024, Tue 2025).
    p = preview("planteringen")
    assert p.end == D(2026, 12, 31)
    assert of_kind(p, MilestoneKind.extension_deadline) == [
        (D(2024, 9, 30), D(2024, 9, 30)),
        (D(2025, 9, 30), D(2025, 9, 30)),
    ]
    # "Ekonomiska förändringar ska meddelas skriftligen minst 3 månader innan avtalet
    # löper ut", before every possible end.
    assert [m.date for m in p.milestones if m.kind is MilestoneKind.milestone] == [
        D(2024, 9, 30),
        D(2025, 9, 30),
        D(2026, 9, 30),
    ]


def test_planteringen_ends_2024_without_every_approval() -> None:
    agreement = example("planteringen")
    signed = Decisions(signed_on=D(2024, 5, 21))
    p = plan(agreement, at(D(2024, 6, 1)), signed)
    assert p.end == D(2024, 12, 31)
    # Five of six parties approve: still not extended.
    approvals = [
        RenewalDecision(party=key, term_end=D(2024, 12, 31), renew=True, given_on=D(2024, 9, 1))
        for key in ("radda-barnen", "rf-sisu", "helsingborgshem", "sff", "amf")
    ]
    partial = plan(agreement, at(D(2024, 9, 2)), signed.model_copy(update={"renewals": approvals}))
    assert partial.end == D(2024, 12, 31)
    last = RenewalDecision(
        party="sof", term_end=D(2024, 12, 31), renew=True, given_on=D(2024, 9, 2)
    )
    everyone = [*approvals, last]
    full = plan(agreement, at(D(2024, 9, 3)), signed.model_copy(update={"renewals": everyone}))
    assert full.end == D(2025, 12, 31)


def test_planteringen_signing_links_go_to_the_six_signatories() -> None:
    # "Detta avtal signeras digitalt av behöriga företrädare för samtliga parter".
    p = preview("planteringen")
    requests = [e for e in p.emails if e.template == "signature_request"]
    assert Counter(e.to.party for e in requests) == Counter(
        {"radda-barnen": 1, "rf-sisu": 1, "helsingborgshem": 1, "sff": 1, "amf": 1, "sof": 1}
    )
    assert {e.send_at.date() for e in requests} == {D(2024, 4, 17)}


# --- 003: RådRum, Lund ---------------------------------------------------------------


def test_radrum_two_payments_a_year() -> None:
    # "520 000 kr för perioden 2019-07-01 till 2020-06-30 samt med 400 000 kr för perioden
    # 2020-07-01-2021-06-30"; "betalas ut vid två (2) tillfällen per år". New Year's Day
    # 2020 (Wed) -> Thu 2 January; 2021-01-01 is a Friday -> Monday 4 January.
    p = preview("lund-radrum")
    invoices = [m for m in p.milestones if m.kind is MilestoneKind.invoice]
    assert [(m.date, m.effective_date, m.amount) for m in invoices] == [
        (D(2019, 7, 1), D(2019, 7, 1), 260_000),
        (D(2020, 1, 1), D(2020, 1, 2), 260_000),
        (D(2020, 7, 1), D(2020, 7, 1), 200_000),
        (D(2021, 1, 1), D(2021, 1, 4), 200_000),
    ]
    assert {(m.payer, m.payee) for m in invoices} == {("sof", "im")}


def test_radrum_fixed_term_review_and_steering_group() -> None:
    p = preview("lund-radrum")
    # "gäller från 2019-07-01 till 2021-06-30": fixed, no renewal deadlines.
    assert (p.start, p.end) == (D(2019, 7, 1), D(2021, 6, 30))
    assert not of_kind(p, MilestoneKind.notice_deadline)
    assert not of_kind(p, MilestoneKind.extension_deadline)
    # "senast 2021-01-31 göra en översyn": a Sunday -> Monday 1 February.
    assert of_kind(p, MilestoneKind.review_deadline) == [(D(2021, 1, 31), D(2021, 2, 1))]
    # "sammanträda en gång per halvår": four meetings, convened by KFF.
    meetings = [m for m in p.milestones if m.kind is MilestoneKind.meeting]
    assert len(meetings) == 4
    assert {e.to.email for e in p.emails if e.template == "meeting_reminder"} == {
        "oliwer.karlsson@lund.example.se"
    }
    # Half-year reports (four) and yearly reports (two), from IM.
    reports = Counter(m.report for m in p.milestones if m.kind is MilestoneKind.report_due)
    assert reports == Counter({"halvarsrapport": 4, "arsrapport": 2})


def test_radrum_kff_does_not_sign() -> None:
    agreement = example("lund-radrum")
    assert [key for key, party in agreement.parties.items() if party.signs] == ["sof", "im"]


# --- 004: Gamlegården, Kristianstad --------------------------------------------------


def test_gamlegarden_project_end_withdrawal_and_decision() -> None:
    p = preview("kristianstad-gamlegarden")
    assert (p.start, p.end) == (D(2022, 7, 1), D(2024, 6, 30))
    # "Projektet avslutas den 2023-02-28".
    assert of_kind(p, MilestoneKind.milestone) == [(D(2023, 2, 28), D(2023, 2, 28))]
    # "Om någon av parterna väljer att avsluta avtalet efter projektets slut 2023-02-28".
    assert of_kind(p, MilestoneKind.withdrawal_opens) == [(D(2023, 3, 1), D(2023, 3, 1))]
    # The renew-or-end decision before the end on 2024-06-30, a Sunday: Friday 28 June.
    assert of_kind(p, MilestoneKind.review_deadline) == [(D(2024, 6, 30), D(2024, 6, 28))]
    # No amounts are named: nothing to invoice.
    assert not of_kind(p, MilestoneKind.invoice)


def test_gamlegarden_withdrawal_needs_a_month() -> None:
    agreement = example("kristianstad-gamlegarden")
    assert agreement.withdrawal is not None
    assert agreement.withdrawal.notice_months == 1
    assert agreement.withdrawal.remaining_decide
    assert not agreement.termination.rescission


@pytest.mark.parametrize(
    "name", ["helsingborg-inva-sam", "planteringen", "lund-radrum", "kristianstad-gamlegarden"]
)
def test_example_emails_never_reach_real_addresses(name: str) -> None:
    p = preview(name)
    domains = {e.to.email.rsplit("@", 1)[1] for e in p.emails}
    assert domains and all(d.endswith((".example.se", ".example.org")) for d in domains)
