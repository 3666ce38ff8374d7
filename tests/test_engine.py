"""The schedule engine: what an agreement asks of whom, and when, under recorded decisions."""

from __future__ import annotations

import datetime as dt
import tomllib

import pytest

from models.agreement import Agreement
from models.loader import loads_agreement
from models.plan import (
    Decisions,
    Ending,
    EndingKind,
    MilestoneKind,
    Plan,
    RenewalDecision,
    ReportPostponement,
    ReportSubmission,
    Scenario,
)
from models.schedule import dates
from models.schedule.engine import plan

BASE = """
id = "demo"
title = "IOP Demo"
reference = "AMF 2024/17"
[coordinator]
name = "Malin Koordinator"
email = "malin@amf.example.se"
party = "amf"
[parties.amf]
name = "Arbetsmarknadsförvaltningen"
kind = "public"
org_number = "212000-1157"
contacts = [
  {{ name = "Maria Chef", email = "maria@amf.example.se", roles = ["contact", "signatory"] }},
  {{ name = "Ekonomi AMF", email = "ekonomi@amf.example.se", roles = ["finance"] }},
]
[parties.forening]
name = "Föreningen"
kind = "nonprofit"
org_number = "802002-8638"
contacts = [
  {{ name = "Saul Ordf", email = "saul@forening.example.se", roles = ["contact", "signatory"] }},
]
[term]
start = 2025-01-01
end = 2025-12-31
renewal = "{renewal}"
{term_extra}
[[contributions]]
payer = "amf"
payee = "forening"
amount = 120000
instalments = {{ {instalments} }}
[[reports]]
key = "arsrapport"
name = "Årsrapport"
party = "forening"
[signing]
method = "{method}"
planned = 2024-12-02
{extra}
"""

NOW = dt.datetime(2024, 11, 1, 9, tzinfo=dates.STOCKHOLM)


def agreement(
    renewal: str = "fixed",
    term_extra: str = "",
    instalments: str = "per_period = 1",
    method: str = "link",
    extra: str = "",
):
    text = BASE.format(
        renewal=renewal,
        term_extra=term_extra,
        instalments=instalments,
        method=method,
        extra=extra,
    )
    return loads_agreement(text, "demo.toml")


OPT_OUT = "notice_months = 3\nmax_total_months = 36"


def kinds(p: Plan, kind: MilestoneKind) -> list[dt.date]:
    return [m.effective_date for m in p.milestones if m.kind is kind]


def test_opt_out_agreement_renews_by_silence_up_to_its_maximum_term():
    p = plan(agreement("opt-out", OPT_OUT), NOW)
    assert p.end == dt.date(2027, 12, 31)
    assert p.periods == 3
    assert p.ending is EndingKind.expiry
    # A notice deadline before each renewable end, none before the last.
    assert [m.date for m in p.milestones if m.kind is MilestoneKind.notice_deadline] == [
        dt.date(2025, 9, 30),
        dt.date(2026, 9, 30),
    ]


def test_a_party_notice_of_non_renewal_ends_the_agreement_at_the_current_period_end():
    notice = RenewalDecision(
        party="forening", term_end=dt.date(2025, 12, 31), renew=False, given_on=dt.date(2025, 9, 1)
    )
    p = plan(agreement("opt-out", OPT_OUT), NOW, Decisions(renewals=[notice]))
    assert p.end == dt.date(2025, 12, 31)
    assert p.ending is EndingKind.non_renewal
    assert kinds(p, MilestoneKind.invoice) == [dt.date(2025, 1, 2)]
    # Only the report covering the last period is due after the end.
    assert [m.id for m in p.milestones if m.date > p.end] == ["report:arsrapport:1"]


def test_opt_in_extension_needs_every_party_to_approve():
    terms = agreement("opt-in", OPT_OUT)
    end = dt.date(2025, 12, 31)
    one = [RenewalDecision(party="amf", term_end=end, renew=True, given_on=dt.date(2025, 9, 1))]
    both = [
        *one,
        RenewalDecision(party="forening", term_end=end, renew=True, given_on=dt.date(2025, 9, 2)),
    ]
    assert plan(terms, NOW, Decisions(renewals=one)).end == end
    assert plan(terms, NOW, Decisions(renewals=one)).ending is EndingKind.not_extended
    assert plan(terms, NOW, Decisions(renewals=both)).end == dt.date(2026, 12, 31)
    # The plan scenario assumes approval up to the maximum.
    assert plan(terms, NOW, scenario=Scenario.plan).end == dt.date(2027, 12, 31)


def test_extension_deadline_is_counted_back_and_never_moves_later():
    # 2026-03-31 minus 3 months is 2025-12-31 (nyårsafton): the last weekday before is 12-30.
    terms = agreement(
        "opt-in",
        "notice_months = 3\nmax_total_months = 27\nrenewal_months = 3\nperiod_months = 3",
    )
    p = plan(terms, NOW, scenario=Scenario.plan)
    deadlines = [m for m in p.milestones if m.kind is MilestoneKind.extension_deadline]
    assert deadlines[0].date == dt.date(2025, 9, 30)
    on_eve = next(m for m in deadlines if m.date == dt.date(2025, 12, 31))
    assert on_eve.effective_date == dt.date(2025, 12, 30)


def test_instalments_per_year_split_the_period_amount_into_whole_kronor():
    p = plan(agreement(instalments="per_year = 4"), NOW)
    invoices = [m for m in p.milestones if m.kind is MilestoneKind.invoice]
    assert [m.date for m in invoices] == [
        dt.date(2025, 1, 1),
        dt.date(2025, 4, 1),
        dt.date(2025, 7, 1),
        dt.date(2025, 10, 1),
    ]
    assert invoices[0].effective_date == dt.date(2025, 1, 2)  # nyårsdagen
    assert sum(m.amount or 0 for m in invoices) == 120000
    assert {m.amount for m in invoices} == {30000}


def test_odd_kronor_go_on_the_first_instalment():
    terms = agreement(instalments="per_period = 3").model_copy()
    contribution = terms.contributions[0].model_copy(update={"amount": 100000})
    terms = terms.model_copy(update={"contributions": [contribution]})
    amounts = [m.amount for m in plan(terms, NOW).milestones if m.kind is MilestoneKind.invoice]
    assert amounts == [33334, 33333, 33333]


def test_invoice_reminders_go_to_finance_of_payer_and_payee_ahead_and_on_the_day():
    p = plan(agreement(instalments="dates = [2025-03-14]"), NOW)
    mails = [e for e in p.emails if e.template == "invoice_reminder"]
    assert {(e.to.email, e.days_before) for e in mails} == {
        ("ekonomi@amf.example.se", 14),
        ("ekonomi@amf.example.se", 0),
        # The payee names no finance contact: its contact person is told instead.
        ("saul@forening.example.se", 14),
        ("saul@forening.example.se", 0),
    }
    assert {e.send_at.date() for e in mails} == {dt.date(2025, 2, 28), dt.date(2025, 3, 14)}


def test_reminders_go_out_at_eight_in_stockholm_time_on_both_sides_of_dst():
    p = plan(agreement(instalments="per_year = 2"), NOW)
    for e in p.emails:
        local = e.send_at.astimezone(dates.STOCKHOLM)
        assert (local.hour, local.minute) == (8, 0)
        assert dates.is_business_day(local.date())
    offsets = {e.send_at.utcoffset() for e in p.emails}
    assert offsets == {dt.timedelta(hours=1), dt.timedelta(hours=2)}


def test_a_reminder_that_would_fall_on_a_day_off_goes_out_earlier_not_later():
    # Report due 2026-01-31 (Saturday) -> effective Monday 2026-02-02.
    p = plan(agreement(), NOW)
    report = next(m for m in p.milestones if m.kind is MilestoneKind.report_due)
    assert (report.date, report.effective_date) == (dt.date(2026, 1, 31), dt.date(2026, 2, 2))
    sent = {e.days_before: e.send_at.date() for e in p.emails if e.template == "report_reminder"}
    # 30 days before Monday 2026-02-02 is Saturday 2026-01-03: sent Friday 2026-01-02.
    assert sent == {30: dt.date(2026, 1, 2), 7: dt.date(2026, 1, 26), 0: dt.date(2026, 2, 2)}


def test_a_submitted_report_stops_its_later_reminders_and_is_never_escalated():
    submitted = ReportSubmission(
        report="arsrapport", occurrence=1, submitted_on=dt.date(2026, 1, 10)
    )
    p = plan(agreement(), NOW, Decisions(reports=[submitted]))
    templates = [(e.template, e.days_before) for e in p.emails if "report" in e.template]
    assert templates == [("report_reminder", 30)]


def test_an_unsubmitted_report_is_escalated_to_the_coordinator_once_overdue():
    p = plan(agreement(), NOW)
    overdue = [e for e in p.emails if e.template == "report_overdue"]
    assert {e.to.email for e in overdue} == {"saul@forening.example.se", "malin@amf.example.se"}
    assert {e.send_at.date() for e in overdue} == {dt.date(2026, 2, 5)}
    # The plan scenario has every report arrive on time.
    assert not [
        e
        for e in plan(agreement(), NOW, scenario=Scenario.plan).emails
        if e.template == "report_overdue"
    ]


def test_a_postponed_report_keeps_its_identity_and_moves_its_date():
    postponed = ReportPostponement(report="arsrapport", occurrence=1, new_due=dt.date(2026, 3, 2))
    p = plan(agreement(), NOW, Decisions(postponements=[postponed]))
    report = next(m for m in p.milestones if m.kind is MilestoneKind.report_due)
    assert (report.id, report.effective_date) == ("report:arsrapport:1", dt.date(2026, 3, 2))


def test_undecided_notice_deadline_is_escalated_to_the_coordinator():
    p = plan(agreement("opt-out", OPT_OUT), NOW)
    escalations = [e for e in p.emails if e.template == "deadline_escalation"]
    assert [e.to.email for e in escalations] == ["malin@amf.example.se"] * 2
    # 14 days before 2025-09-30 is Tuesday 2025-09-16.
    assert escalations[0].send_at.date() == dt.date(2025, 9, 16)


def test_no_escalation_once_every_party_has_decided_and_decided_parties_get_no_reminders():
    end = dt.date(2025, 12, 31)
    decided = [
        RenewalDecision(party="amf", term_end=end, renew=True, given_on=dt.date(2025, 7, 1)),
        RenewalDecision(party="forening", term_end=end, renew=True, given_on=dt.date(2025, 7, 1)),
    ]
    p = plan(agreement("opt-out", OPT_OUT), NOW, Decisions(renewals=decided))
    first = "notice_deadline:2025-12-31"
    assert not [e for e in p.emails if e.milestone_id == first]
    assert [e for e in p.emails if e.milestone_id == "notice_deadline:2026-12-31"]


def test_termination_ends_the_plan_and_drops_everything_after():
    ending = Ending(
        kind=EndingKind.rescission, decided_on=dt.date(2025, 5, 5), end=dt.date(2025, 5, 5)
    )
    p = plan(
        agreement("opt-out", OPT_OUT, instalments="per_year = 4"), NOW, Decisions(ending=ending)
    )
    assert p.end == dt.date(2025, 5, 5)
    assert p.ending is EndingKind.rescission
    assert max(m.effective_date for m in p.milestones) == dt.date(2025, 5, 5)
    assert p.milestones[-1].kind is MilestoneKind.agreement_end
    assert p.milestones[-1].title == "Överenskommelsen hävs"
    assert kinds(p, MilestoneKind.invoice) == [dt.date(2025, 1, 2), dt.date(2025, 4, 1)]
    assert not [e for e in p.emails if e.send_at.date() > p.end]


def test_nothing_is_sent_before_the_agreement_is_signed_in_the_plan():
    # The 14-day reminder for an invoice on the start day would precede signing on 2024-12-02.
    p = plan(agreement(extra=""), NOW, scenario=Scenario.plan)
    signing = dates.local_time(dt.date(2024, 12, 2), dt.time(8))
    assert min(e.send_at for e in p.emails) == signing
    assert [e.template for e in p.emails[:4]] == ["signature_request"] * 2 + [
        "signature_receipt",
        "signature_completed",
    ]


def test_paper_signing_sends_no_signing_links_but_the_completion_record():
    p = plan(agreement(method="paper"), NOW, scenario=Scenario.plan)
    templates = {e.template for e in p.emails}
    assert "signature_request" not in templates
    assert "signature_completed" in templates


def test_emails_before_now_are_marked_past_and_later_ones_are_not():
    now = dt.datetime(2025, 6, 1, 12, tzinfo=dates.STOCKHOLM)
    p = plan(agreement("opt-out", OPT_OUT), now, scenario=Scenario.plan)
    assert all(e.past == (e.send_at < now) for e in p.emails)
    assert any(e.past for e in p.emails) and not all(e.past for e in p.emails)
    assert all(m.past == (m.effective_date < now.date()) for m in p.milestones)


def test_every_email_key_is_unique_and_plans_are_deterministic():
    terms = agreement("opt-out", OPT_OUT, instalments="per_year = 12")
    first = plan(terms, NOW, scenario=Scenario.plan)
    again = plan(terms, NOW, scenario=Scenario.plan)
    keys = [e.key for e in first.emails]
    assert len(keys) == len(set(keys))
    assert first == again


def test_milestones_are_sorted_by_effective_date():
    p = plan(
        agreement("opt-out", OPT_OUT, instalments="per_year = 12"), NOW, scenario=Scenario.plan
    )
    days = [m.effective_date for m in p.milestones]
    assert days == sorted(days)
    sends = [e.send_at for e in p.emails]
    assert sends == sorted(sends)


def test_english_agreement_gets_english_titles():
    terms = agreement().model_copy(update={"language": "en"})
    titles = {m.kind: m.title for m in plan(terms, NOW).milestones}
    assert titles[MilestoneKind.agreement_end] == "The agreement ends"


def test_titles_come_from_the_catalog_in_the_agreements_language():
    """The Swedish titles read as they always did (recorded histories carry them); the
    English ones are the catalog's message ids."""
    sv = {m.id: m.title for m in plan(agreement(), NOW).milestones}
    terms = agreement().model_copy(update={"language": "en"})
    en = {m.id: m.title for m in plan(terms, NOW).milestones}
    assert sv == {
        "signing": "Överenskommelsen undertecknas",
        "invoice:amf:forening:1:1": (
            "Fakturering: Arbetsmarknadsförvaltningen betalar Föreningen, period 1"
        ),
        "agreement-end": "Överenskommelsen upphör",
        "report:arsrapport:1": "Årsrapport för 2025-01-01 – 2025-12-31 ska lämnas",
    }
    assert en == {
        "signing": "The agreement is signed",
        "invoice:amf:forening:1:1": (
            "Invoicing: Arbetsmarknadsförvaltningen pays Föreningen, period 1"
        ),
        "agreement-end": "The agreement ends",
        "report:arsrapport:1": "Årsrapport for 2025-01-01 – 2025-12-31 is due",
    }
    opt_out = agreement("opt-out", OPT_OUT)
    deadline = next(m for m in plan(opt_out, NOW).milestones if m.kind.value == "notice_deadline")
    assert deadline.title.startswith(
        "Sista dag att meddela att man inte förlänger (perioden slutar"
    )


def test_naive_now_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        plan(agreement(), dt.datetime(2025, 1, 1))


def test_a_period_after_the_listed_amounts_goes_on_at_the_last_amount():
    terms = agreement(renewal="opt-out", term_extra=OPT_OUT)
    contribution = terms.contributions[0].model_copy(
        update={"amount": None, "amounts": [100000, 110000]}
    )
    terms = terms.model_copy(update={"contributions": [contribution]})
    invoices = [m for m in plan(terms, NOW).milestones if m.kind is MilestoneKind.invoice]
    assert [m.amount for m in invoices] == [100000, 110000, 110000]


# Dates to the letter: renewals counted from the start like the periods (issue 12) ------------


def dated(
    start: str,
    end: str,
    term_extra: str,
    instalments: str = "per_period = 1",
    extra: str = "",
    checked: bool = False,
):
    """The demo agreement on other dates; `checked`: through the file check too."""
    text = BASE.format(
        renewal="opt-out",
        term_extra=term_extra,
        instalments=instalments,
        method="link",
        extra=extra,
    ).replace("start = 2025-01-01\nend = 2025-12-31", f"start = {start}\nend = {end}")
    if checked:
        return loads_agreement(text, "demo.toml")
    return Agreement.model_validate(tomllib.loads(text))


def ends(p: Plan) -> tuple[list[dt.date], list[dt.date]]:
    """The period ends and the renewable term ends (the notice deadlines' ids) of a plan."""
    periods = [m.date for m in p.milestones if m.kind is MilestoneKind.period_end] + [p.end]
    renewable = [
        dt.date.fromisoformat(m.id.split(":", 1)[1])
        for m in p.milestones
        if m.kind is MilestoneKind.notice_deadline
    ]
    return periods, renewable


def test_half_yearly_renewal_from_31_august_keeps_its_notice_deadline_on_the_30th():
    terms = dated(
        "2025-08-31",
        "2026-02-27",
        "period_months = 6\nnotice_months = 3\nmax_total_months = 24",
    )
    p = plan(terms, NOW)
    periods, renewable = ends(p)
    assert periods == [
        dt.date(2026, 2, 27),
        dt.date(2026, 8, 30),
        dt.date(2027, 2, 27),
        dt.date(2027, 8, 30),
    ]
    assert renewable == periods[:-1]
    assert p.end == dt.date(2027, 8, 30)
    deadline = next(m for m in p.milestones if m.id == "notice_deadline:2026-08-30")
    # Chained from 2026-02-28 the renewal ended 2026-08-27 and the deadline was 2026-05-27:
    # three days early. 2026-05-30 is a Saturday: the notice is due the Friday before.
    assert (deadline.date, deadline.effective_date) == (dt.date(2026, 5, 30), dt.date(2026, 5, 29))
    assert deadline.period == 2


def test_up_to_48_months_from_a_leap_day_is_planned_to_its_last_day():
    terms = dated("2028-02-29", "2029-02-27", "notice_months = 3\nmax_total_months = 48")
    p = plan(terms, NOW)
    assert p.end == dt.date(2032, 2, 28)  # 2032-02-29 is start + 48 months
    assert p.periods == 4
    assert p.ending is EndingKind.expiry
    periods, renewable = ends(p)
    assert periods == [
        dt.date(2029, 2, 27),
        dt.date(2030, 2, 27),
        dt.date(2031, 2, 27),
        dt.date(2032, 2, 28),
    ]
    assert renewable == periods[:-1]
    # A notice of non-renewal for the third term ends the agreement with the third period.
    notice = RenewalDecision(
        party="forening", term_end=dt.date(2031, 2, 27), renew=False, given_on=dt.date(2030, 9, 1)
    )
    cut = plan(terms, NOW, Decisions(renewals=[notice]))
    assert (cut.end, cut.periods) == (dt.date(2031, 2, 27), 3)


@pytest.mark.parametrize(
    ("start", "end", "term_extra"),
    [
        ("2028-02-29", "2029-02-27", "notice_months = 3\nmax_total_months = 48"),
        ("2025-08-31", "2026-02-27", "period_months = 6\nnotice_months = 3\nmax_total_months = 24"),
    ],
)
def test_a_maximum_term_counted_in_months_from_the_start_is_accepted(start, end, term_extra):
    terms = dated(start, end, term_extra, checked=True)
    assert plan(terms, NOW).end == dates.term_end(terms.term.start, terms.term.max_total_months)


@pytest.mark.parametrize(
    ("start", "end", "months"),
    [
        ("2025-08-30", "2026-02-27", 6),
        ("2025-08-31", "2026-02-27", 6),
        ("2025-11-30", "2026-02-27", 3),
        ("2027-01-29", "2027-02-27", 1),
        ("2027-01-31", "2027-04-29", 3),
        ("2028-02-29", "2028-05-28", 3),
    ],
)
def test_periods_and_renewals_end_on_the_same_days_whatever_the_start(start, end, months):
    term = f"period_months = {months}\nnotice_months = 0\nmax_total_months = {8 * months}"
    terms = dated(start, end, term)
    periods, renewable = ends(plan(terms, NOW))
    assert len(periods) == 8
    assert renewable == periods[:-1]
    first = dt.date.fromisoformat(start)
    assert periods == [dates.term_end(first, i * months) for i in range(1, len(periods) + 1)]


def test_instalments_and_meetings_from_the_31st_stay_on_the_month_end():
    terms = dated(
        "2025-08-31",
        "2026-02-27",
        "period_months = 6\nnotice_months = 3\nmax_total_months = 12",
        instalments="per_period = 2",
        extra='[meetings]\nconvener = "forening"\nevery_months = 3\noffset_months = 1',
    )
    p = plan(terms, NOW)
    assert [m.date for m in p.milestones if m.kind is MilestoneKind.invoice] == [
        dt.date(2025, 8, 31),
        dt.date(2025, 11, 30),
        dt.date(2026, 2, 28),
        dt.date(2026, 5, 31),  # counted from 2026-02-28 it was 2026-05-28
    ]
    assert [m.date for m in p.milestones if m.kind is MilestoneKind.meeting] == [
        dt.date(2025, 9, 30),
        dt.date(2025, 12, 31),
        dt.date(2026, 3, 31),  # from 2026-02-28 it was 2026-03-28
        dt.date(2026, 6, 30),
    ]


def test_a_report_from_the_31st_covers_the_months_from_the_period_start():
    terms = dated(
        "2025-08-31",
        "2026-02-27",
        "period_months = 6\nnotice_months = 3\nmax_total_months = 18",
    )
    reports = [m for m in plan(terms, NOW).milestones if m.kind is MilestoneKind.report_due]
    # The third covers 2026-08-31 – 2027-02-27 (from 2027-02-28 back 6 months was 08-28).
    assert "2026-08-31" in reports[2].title and "2027-02-27" in reports[2].title
