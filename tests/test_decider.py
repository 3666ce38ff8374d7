"""The agreement's decider, without Temporal: every command, every refusal, the steps of time.

Plain functions on plain data, so the whole file runs in a second or two. What needs
Temporal (handlers one at a time, effects carried out, continue-as-new, child rounds) is in
test_lifecycle.py, test_decisions.py and test_never_fails.py.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from models.commands import (
    Amendment,
    ConfirmPrerequisites,
    EditDraft,
    MilestoneUpdate,
    RenewalRequest,
    ReportDecision,
    RoundFinished,
    StartSigning,
    TerminationRequest,
    WithdrawalOutcome,
)
from models.core import AgreementInput, Core
from models.lifecycle import (
    RoundOutcome,
    SendOutcome,
    SendResult,
    SignerStatus,
    State,
    terms_sha256,
)
from models.plan import EndingKind, MilestoneKind, MilestoneState, MilestoneStatus
from models.prerequisites import CHECKLIST
from models.schedule import dates
from tests.test_engine import OPT_OUT, agreement
from workflows import decider
from workflows.decider import Decision, Refusal

DRAFTED = dt.datetime(2024, 11, 1, 9, tzinfo=dates.STOCKHOLM)
SIGNED = dt.datetime(2024, 11, 4, 10, tzinfo=dates.STOCKHOLM)
WITHDRAWAL = "\n[withdrawal]\nnotice_months = 1\nopens = 2025-03-01\nremaining_decide = true"
TERMINATION = "\n[termination]\nnotice_months = 3\nrescission = true\nrepayment = true"


def at(day: str, hour: int = 10) -> dt.datetime:
    return dt.datetime.combine(dt.date.fromisoformat(day), dt.time(hour), dates.STOCKHOLM)


def new(terms=None, now: dt.datetime = DRAFTED) -> Core:
    terms = terms or agreement()
    return decider.take_on(Core(agreement=terms), now, now).core


def step(core: Core, command, now: dt.datetime) -> Decision:
    return decider.decide(core, command, now)


def refused(core: Core, command, now: dt.datetime, code: str) -> str:
    with pytest.raises(Refusal) as caught:
        decider.decide(core, command, now)
    assert caught.value.code == code, caught.value.message
    return caught.value.message


def ready(core: Core) -> Core:
    """Every IOP prerequisite confirmed: ready for signing."""
    return step(core, ConfirmPrerequisites(keys=list(CHECKLIST)), DRAFTED).core


def signed(terms=None) -> Core:
    """Drafted, a round started and completed: signed on SIGNED's day."""
    core = ready(new(terms))
    core = step(core, StartSigning(), SIGNED).core
    assert core.last_round is not None
    info = core.last_round.model_copy(update={"outcome": RoundOutcome.completed})
    return step(core, RoundFinished(info=info), SIGNED).core


def active(terms=None) -> Core:
    """Signed, and the term started on 2025-01-01."""
    return decider.tick(signed(terms), at("2025-01-02")).core


# Taking an agreement on ---------------------------------------------------------------------------


def test_a_new_agreement_is_a_draft_whose_terms_are_stored_before_its_first_event():
    decision = decider.take_on(Core(agreement=agreement()), DRAFTED, DRAFTED)
    assert decision.core.state is State.draft
    assert decision.core.taken_on == DRAFTED
    assert [t.id for t in decision.effects.terms] == ["demo"]
    assert [e.kind for e in decision.effects.events] == ["created"]
    assert decision.effects.events[0].event_key == "agreement-demo:1"


def test_an_agreement_signed_on_paper_before_it_came_is_taken_on_as_signed():
    terms = agreement(extra="signed = 2024-10-30")
    decision = decider.take_on(Core(agreement=terms), DRAFTED, DRAFTED)
    assert decision.core.state is State.signed
    assert decision.core.decisions.signed_on == dt.date(2024, 10, 30)
    assert [e.kind for e in decision.effects.events] == ["signed", "created"]


# Drafting -----------------------------------------------------------------------------------


def test_a_draft_is_edited_and_its_new_terms_stored():
    core = new()
    changed = agreement().model_copy(update={"title": "IOP Demo, version 2"})
    decision = step(core, EditDraft(agreement=changed, by="malin"), DRAFTED)
    assert decision.core.agreement.title == "IOP Demo, version 2"
    assert decision.effects.terms == [changed]
    assert decision.effects.events[0].actor == "malin"


def test_editing_is_refused_for_other_terms_for_bad_terms_and_after_the_draft():
    core = new()
    other = agreement().model_copy(update={"id": "other"})
    assert "not demo" in refused(core, EditDraft(agreement=other), DRAFTED, "other-agreement")
    bad = agreement().model_copy(
        update={"term": agreement().term.model_copy(update={"end": dt.date(2024, 1, 1)})}
    )
    refused(core, EditDraft(agreement=bad), DRAFTED, "invalid-terms")
    refused(signed(), EditDraft(agreement=agreement()), SIGNED, "not-draft")


def test_a_change_made_from_terms_that_have_changed_since_is_refused():
    """Two people (or two uploads) changing the draft at once: the second change, made
    from the terms as they were, is refused rather than dropping the first."""
    core = new()
    read = terms_sha256(core.agreement)
    changed = agreement().model_copy(update={"title": "Ändrad titel"})
    first = step(core, EditDraft(agreement=changed, based_on=read), DRAFTED).core
    assert first.agreement.title == "Ändrad titel"
    again = agreement().model_copy(update={"title": "En annan titel"})
    refused(first, EditDraft(agreement=again, based_on=read), DRAFTED, "draft-changed")
    now = terms_sha256(first.agreement)
    assert step(first, EditDraft(agreement=again, based_on=now), DRAFTED).core.agreement == again


def test_prerequisites_are_confirmed_in_the_draft_from_the_checklist_only():
    core = new()
    decision = step(core, ConfirmPrerequisites(keys=["no-market"]), DRAFTED)
    assert decision.core.prerequisites == ["no-market"]
    message = refused(core, ConfirmPrerequisites(keys=["nope"]), DRAFTED, "unknown-prerequisite")
    assert "nope" in message
    refused(signed(), ConfirmPrerequisites(keys=["no-market"]), SIGNED, "not-draft")


def test_an_iop_agreement_is_signed_only_once_every_prerequisite_is_confirmed():
    core = new()
    assert core.agreement.kind == "iop"
    message = refused(core, StartSigning(), DRAFTED, "prerequisites-missing")
    assert all(key in message for key in CHECKLIST)
    core = step(core, ConfirmPrerequisites(keys=list(CHECKLIST)), DRAFTED).core
    assert step(core, StartSigning(), DRAFTED).core.state is State.signing


# Signature rounds -----------------------------------------------------------------------------


def test_starting_signing_opens_a_round_for_every_signatory_and_carries_no_token():
    decision = step(ready(new()), StartSigning(by="malin"), SIGNED)
    core = decision.core
    assert core.state is State.signing and core.round_open and core.rounds == 1
    start = decision.effects.round
    assert start is not None and start.number == 1 and start.purpose == "signing"
    assert [s.email for s in start.signers] == ["maria@amf.example.se", "saul@forening.example.se"]
    assert {s.status for s in start.signers} == {SignerStatus.invited}
    assert start.expires_at > SIGNED
    # Terms first (the round's emails render from them), then the event.
    assert decision.effects.terms and decision.effects.events[0].kind == "signing.round_started"
    assert "token" not in core.model_dump_json() + decision.effects.model_dump_json()
    refused(core, StartSigning(), SIGNED, "not-draft")


def test_a_completed_round_signs_the_agreement_and_a_declined_one_returns_it_to_draft():
    core = signed()
    assert core.state is State.signed and not core.round_open
    assert core.decisions.signed_on == SIGNED.date()
    started = step(ready(new()), StartSigning(), SIGNED).core
    assert started.last_round is not None
    declined = started.last_round.model_copy(update={"outcome": RoundOutcome.declined})
    back = step(started, RoundFinished(info=declined), SIGNED)
    assert back.core.state is State.draft and not back.core.round_open
    assert [e.kind for e in back.effects.events] == ["signing.round_declined"]
    # And a new round can start, numbered on.
    again = step(back.core, StartSigning(), SIGNED)
    assert again.core.rounds == 2 and again.effects.round and again.effects.round.number == 2


def test_a_round_that_broke_is_a_failed_outcome_the_coordinator_is_told_of():
    started = step(ready(new()), StartSigning(), SIGNED).core
    finished = decider.round_failed(started, "TerminatedError: by an operator", SIGNED)
    decision = step(started, finished, SIGNED)
    assert decision.core.state is State.draft and not decision.core.round_open
    assert decision.core.last_round is not None
    assert decision.core.last_round.outcome is RoundOutcome.failed
    assert [(e.template, e.to.email) for e in decision.effects.emails] == [
        ("signature_failed", "malin@amf.example.se")
    ]
    assert "TerminatedError" in decision.effects.events[0].summary
    # A second report of the same round changes nothing.
    refused(decision.core, finished, SIGNED, "no-round")


def test_two_amendments_at_once_start_one_round():
    core = active()
    changed = core.agreement.model_copy(update={"title": "IOP Demo, amended"})
    now = at("2025-02-03")
    first = step(core, Amendment(agreement=changed), now)
    assert first.effects.round is not None and first.effects.round.purpose == "amendment"
    assert first.core.amendment == changed and first.core.state is State.active
    assert "already running" in refused(first.core, Amendment(agreement=changed), now, "round-open")


def test_a_signed_amendment_replaces_the_terms_and_a_declined_one_leaves_them():
    core = active()
    changed = core.agreement.model_copy(update={"title": "IOP Demo, amended"})
    now = at("2025-02-03")
    started = step(core, Amendment(agreement=changed), now).core
    assert started.last_round is not None
    done = started.last_round.model_copy(update={"outcome": RoundOutcome.completed})
    after = step(started, RoundFinished(info=done), now).core
    assert after.agreement.title == "IOP Demo, amended" and after.amendment is None
    assert after.calendar_sequence == 1
    no = started.last_round.model_copy(update={"outcome": RoundOutcome.declined})
    kept = step(started, RoundFinished(info=no), now).core
    assert kept.agreement.title == "IOP Demo" and kept.state is State.active


def test_an_amendment_is_refused_before_signing_for_other_terms_and_moving_the_start():
    refused(new(), Amendment(agreement=agreement()), DRAFTED, "not-signed")
    core = active()
    now = at("2025-02-03")
    other = core.agreement.model_copy(update={"id": "other"})
    refused(core, Amendment(agreement=other), now, "other-agreement")
    moved = core.agreement.model_copy(
        update={
            "term": core.agreement.term.model_copy(
                update={"start": dt.date(2025, 2, 1), "end": dt.date(2026, 1, 31)}
            )
        }
    )
    refused(core, Amendment(agreement=moved), now, "start-moved")


# Reports -------------------------------------------------------------------------------------


def test_a_report_is_recorded_once_and_postponed_only_later():
    core = active()
    now = at("2026-01-20")
    decision = step(core, ReportDecision(report="arsrapport", occurrence=1, by="malin"), now)
    assert decision.core.decisions.reports[0].submitted_on == now.date()
    refused(
        decision.core, ReportDecision(report="arsrapport", occurrence=1), now, "already-recorded"
    )
    refused(core, ReportDecision(report="nope", occurrence=1), now, "unknown-report")
    future = ReportDecision(report="arsrapport", occurrence=1, submitted_on=dt.date(2026, 2, 1))
    refused(core, future, now, "future-date")
    early = ReportDecision(report="arsrapport", occurrence=1, new_due=dt.date(2025, 1, 2))
    refused(core, early, now, "postpone-earlier")
    later = ReportDecision(report="arsrapport", occurrence=1, new_due=dt.date(2026, 6, 1))
    moved = step(core, later, now)
    assert moved.core.decisions.postponements[0].new_due == dt.date(2026, 6, 1)
    refused(new(), ReportDecision(report="arsrapport", occurrence=1), DRAFTED, "not-signed")


# Milestone statuses -------------------------------------------------------------------------

MEETINGS = '\n[meetings]\nevery_months = 6\nconvener = "amf"'


def milestone(core: Core, kind: MilestoneKind, now: dt.datetime, nth: int = 0) -> MilestoneState:
    found = [m for m in decider.statuses(core, now) if m.kind is kind]
    return found[nth]


def status(core: Core, milestone_id: str, now: dt.datetime) -> MilestoneState:
    return next(m.as_of(now.date()) for m in decider.timeline(core, now) if m.id == milestone_id)


def test_an_instalment_is_invoiced_with_its_number_then_paid_and_its_reminders_stop():
    core = signed()
    now = at("2024-11-05")
    first = milestone(core, MilestoneKind.invoice, now)
    assert first.status is MilestoneStatus.to_invoice
    reminders = [e for e in decider.planned_emails(core, now) if e.milestone_id == first.id]
    assert reminders, "the instalment has reminders to stop"
    invoiced = step(
        core,
        MilestoneUpdate(
            milestone=first.id, status=MilestoneStatus.invoiced, number=" F-1001 ", by="eva"
        ),
        now,
    )
    row = status(invoiced.core, first.id, now)
    assert (row.status, row.number, row.status_by, row.status_on) == (
        MilestoneStatus.invoiced,
        "F-1001",
        "eva",
        now.date(),
    )
    assert invoiced.effects.events[0].kind == "milestone.invoiced"
    later = [e for e in decider.planned_emails(invoiced.core, now) if e.milestone_id == first.id]
    assert later == [], "no reminder after the instalment was invoiced"
    paid = step(
        invoiced.core, MilestoneUpdate(milestone=first.id, status=MilestoneStatus.paid), now
    ).core
    row = status(paid, first.id, now)
    assert (row.status, row.number) == (MilestoneStatus.paid, "F-1001")
    assert row.done

    again = MilestoneUpdate(milestone=first.id, status=MilestoneStatus.invoiced, number="F-2")
    refused(paid, again, now, "already-recorded")
    no_number = MilestoneUpdate(milestone=first.id, status=MilestoneStatus.invoiced, number=" ")
    refused(core, no_number, now, "number-missing")
    unpaid = MilestoneUpdate(milestone=first.id, status=MilestoneStatus.paid)
    assert first.id in refused(core, unpaid, now, "not-invoiced")
    tomorrow = MilestoneUpdate(
        milestone=first.id, status=MilestoneStatus.invoiced, number="F", on=dt.date(2024, 11, 6)
    )
    refused(core, tomorrow, now, "future-date")
    held = MilestoneUpdate(milestone=first.id, status=MilestoneStatus.held)
    assert "invoiced, paid" in refused(core, held, now, "not-settable")
    nowhere = MilestoneUpdate(milestone="invoice:1999-01-01", status=MilestoneStatus.paid)
    refused(core, nowhere, now, "unknown-milestone")
    refused(new(), unpaid, DRAFTED, "not-signed")


def test_a_received_report_is_approved_or_returned_and_a_returned_one_comes_in_again():
    core = active()
    now = at("2026-01-20")
    report = milestone(core, MilestoneKind.report_due, now)
    assert status(core, report.id, now).status is MilestoneStatus.due
    approve = MilestoneUpdate(milestone=report.id, status=MilestoneStatus.approved)
    refused(core, approve, now, "not-received")
    received = step(core, ReportDecision(report="arsrapport", occurrence=1, by="saul"), now).core
    row = status(received, report.id, now)
    assert (row.status, row.status_by) == (MilestoneStatus.received, "saul")
    assert status(step(received, approve, now).core, report.id, now).status is (
        MilestoneStatus.approved
    )
    bare = MilestoneUpdate(milestone=report.id, status=MilestoneStatus.returned, note=" ")
    refused(received, bare, now, "note-missing")
    back = step(
        received,
        MilestoneUpdate(milestone=report.id, status=MilestoneStatus.returned, note="budget saknas"),
        now,
    ).core
    row = status(back, report.id, now)
    assert (row.status, row.note) == (MilestoneStatus.returned, "budget saknas")
    again = step(back, ReportDecision(report="arsrapport", occurrence=1), at("2026-01-27")).core
    assert status(again, report.id, at("2026-01-27")).status is MilestoneStatus.received
    assert len(again.decisions.reports) == 1, "reminders stopped at the first submission"


def test_statuses_follow_the_date_and_the_decisions():
    core = active(agreement("opt-out", OPT_OUT, extra=MEETINGS))
    due = milestone(core, MilestoneKind.report_due, at("2025-01-03"))
    after = dt.datetime.combine(due.effective_date + dt.timedelta(days=1), dt.time(10)).replace(
        tzinfo=dates.STOCKHOLM
    )
    assert status(core, due.id, after).status is MilestoneStatus.overdue
    postponed = step(
        core,
        ReportDecision(report="arsrapport", occurrence=1, new_due=dt.date(2026, 3, 31)),
        after,
    ).core
    row = status(postponed, due.id, after)
    assert (row.status, row.effective_date) == (MilestoneStatus.postponed, dt.date(2026, 3, 31))

    now = at("2025-03-01")
    meeting = milestone(core, MilestoneKind.meeting, now)
    assert meeting.status is MilestoneStatus.planned
    late = dt.datetime.combine(meeting.effective_date + dt.timedelta(days=2), dt.time(10))
    late = late.replace(tzinfo=dates.STOCKHOLM)
    assert status(core, meeting.id, late).status is MilestoneStatus.passed
    held = step(core, MilestoneUpdate(milestone=meeting.id, status=MilestoneStatus.held), late)
    assert status(held.core, meeting.id, late).status is MilestoneStatus.held

    deadline = milestone(core, MilestoneKind.notice_deadline, now)
    assert status(core, deadline.id, now).status is MilestoneStatus.open
    notice = step(core, RenewalRequest(party="forening", renew=False, by="saul"), now).core
    row = next(m for m in decider.timeline(notice, now) if m.id == deadline.id)
    assert (row.status, row.status_by, row.note) == (
        MilestoneStatus.decided,
        "saul",
        "Föreningen",
    )
    snap = decider.snapshot(core, now)
    assert all(isinstance(m, MilestoneState) for m in snap.next)
    assert decider.outlook(core, now).milestones[0].past is False


def test_milestones_before_an_agreement_was_taken_on_are_not_outstanding():
    """Taken on under way (signed on paper before): its earlier instalments and reports
    were handled outside the service, so none reads as to invoice or overdue."""
    terms = agreement(extra="signed = 2024-10-30")
    now = at("2025-06-01")
    core = decider.tick(new(terms, now), now).core
    rows = decider.timeline(core, now)
    before = [m for m in rows if m.effective_date < now.date()]
    after = [m for m in rows if m.effective_date >= now.date()]
    assert before and {m.status for m in before} == {MilestoneStatus.passed}
    assert MilestoneStatus.due in {m.status for m in after}  # the report still to come


# Renewals -----------------------------------------------------------------------------------


def test_notice_of_non_renewal_ends_the_term_and_tells_every_party():
    core = active(agreement("opt-out", OPT_OUT))
    now = at("2025-09-01")
    decision = step(core, RenewalRequest(party="forening", renew=False), now)
    assert decision.core.decisions.renewals[0].term_end == dt.date(2025, 12, 31)
    ended = [e for e in decision.effects.emails if e.template == "agreement_ended"]
    assert {e.to.email for e in ended} >= {"maria@amf.example.se", "saul@forening.example.se"}
    assert decision.core.ending_told == dt.date(2025, 12, 31)
    again = RenewalRequest(party="forening", renew=False)
    refused(decision.core, again, now, "already-decided")


def test_renewal_decisions_are_refused_where_they_make_no_sense():
    now = at("2025-09-01")
    refused(active(), RenewalRequest(party="forening", renew=False), now, "fixed-term")
    core = active(agreement("opt-out", OPT_OUT))
    refused(core, RenewalRequest(party="nobody", renew=False), now, "unknown-party")
    refused(core, RenewalRequest(party="forening", renew=True), now, "nothing-to-approve")
    future = RenewalRequest(party="forening", renew=False, given_on=dt.date(2025, 9, 2))
    refused(core, future, now, "future-date")
    late = RenewalRequest(party="forening", renew=False, given_on=dt.date(2025, 9, 1))
    refused(core, late, at("2027-11-01"), "no-decision-open")
    refused(new(), RenewalRequest(party="forening", renew=False), DRAFTED, "not-signed")


# Endings ------------------------------------------------------------------------------------


def test_termination_with_notice_and_rescission_with_repayment():
    core = active(agreement(extra=TERMINATION))
    now = at("2025-03-10")
    notice = TerminationRequest(kind=EndingKind.termination, party="amf", reason="budget")
    decision = step(core, notice, now)
    assert decision.core.state is State.ending
    assert decision.core.decisions.ending is not None
    assert decision.core.decisions.ending.end == dt.date(2025, 6, 10)
    refused(decision.core, notice, now, "already-ending")
    rescind = TerminationRequest(
        kind=EndingKind.rescission, party="amf", reason="misuse", repayment=50000
    )
    rescinded = step(core, rescind, now)
    assert rescinded.core.decisions.ending is not None
    assert rescinded.core.decisions.ending.end == now.date()
    assert rescinded.core.decisions.ending.repayment == 50000


def sent_after(core: Core, *moments: dt.datetime) -> list[tuple[str, str, int]]:
    """The planned emails ticks at `moments` send: (template, milestone, days before)."""
    out = []
    for moment in moments:
        decision = decider.tick(core, moment)
        core = decision.core
        out += [
            (e.template, e.milestone.id, e.days_before)
            for e in decision.effects.emails
            if e.milestone
        ]
    return out


def test_a_rescission_never_announces_its_end_late_but_sends_what_was_due_first():
    # Quiet since the term started (sent until 2025-01-02 10:00); an instalment on Monday
    # 2025-03-03 has had two reminders due since: on 2025-02-17 and on the day.
    core = active(agreement(instalments="dates = [2025-03-03]", extra=TERMINATION))
    now = at("2025-03-10")
    rescind = TerminationRequest(kind=EndingKind.rescission, party="amf", reason="misuse")
    decision = step(core, rescind, now)
    templates = [e.template for e in decision.effects.emails]
    # What fell due before goes out, and before the announcement; the reminders of the end
    # ("Om 30 dagar: Överenskommelsen hävs" on 2025-02-07, "Idag" this morning) never do.
    assert templates == ["invoice_reminder"] * 4 + ["agreement_ended"] * 3
    assert decision.core.sent_until == now
    later = (now, at("2025-03-10", 20), at("2025-03-11"), at("2025-04-01"))
    assert not [m for m in sent_after(decision.core, *later) if m[0] == "agreement_end"]
    assert not decider.planned_emails(decision.core, now)


def test_a_rescission_before_the_morning_reminders_still_drops_the_end_reminder_of_the_day():
    core = active(agreement(instalments="dates = [2025-03-10]", extra=TERMINATION))
    core = decider.tick(core, at("2025-03-09")).core  # everything up to Sunday is sent
    rescind = TerminationRequest(kind=EndingKind.rescission, party="amf", reason="misuse")
    decision = step(core, rescind, at("2025-03-10", 7))
    assert [e.template for e in decision.effects.emails] == ["agreement_ended"] * 3
    # The invoice on the end day is still legitimately reminded of at 08:00; the end is not.
    sent = sent_after(decision.core, at("2025-03-10", 9), at("2025-03-11"))
    assert sent == [("invoice_reminder", "invoice:amf:forening:1:1", 0)] * 2


def test_a_notice_recorded_late_drops_the_end_reminders_already_past():
    # Notice given (on paper) on 2025-01-02, recorded on 2025-04-07: the end is 2025-04-02,
    # its reminders (2025-03-03, 2025-04-02) are past and are never sent after the ending.
    core = active(agreement(extra=TERMINATION))
    notice = TerminationRequest(
        kind=EndingKind.termination, party="amf", reason="budget", given_on=dt.date(2025, 1, 2)
    )
    decision = step(core, notice, at("2025-04-07"))
    assert decision.core.decisions.ending is not None
    assert decision.core.decisions.ending.end == dt.date(2025, 4, 2)
    assert "agreement_end" not in [e.template for e in decision.effects.emails]
    assert not [m for m in sent_after(decision.core, at("2025-04-08")) if m[0] == "agreement_end"]


def test_a_termination_with_notice_still_reminds_of_its_end_ahead():
    core = active(agreement(extra=TERMINATION))
    notice = TerminationRequest(kind=EndingKind.termination, party="amf", reason="budget")
    decision = step(core, notice, at("2025-03-10"))
    # The end is Tuesday 2025-06-10: 30 days before is a Sunday, so Friday 2025-05-09.
    sent = sent_after(decision.core, at("2025-05-09", 9), at("2025-06-10", 9))
    ends = sorted({(m[1], m[2]) for m in sent if m[0] == "agreement_end"})
    assert ends == [("agreement-end", 0), ("agreement-end", 30)]


def test_a_repayment_claim_goes_to_finance_on_both_sides_with_its_due_date():
    core = active(agreement(extra=TERMINATION))
    now = at("2025-03-10")
    claim = TerminationRequest(
        kind=EndingKind.rescission, party="amf", reason="misuse", repayment=50000
    )
    ended = [e for e in step(core, claim, now).effects.emails if e.template == "agreement_ended"]
    # amf paid: its finance contact is told; the payee names none, its contact is told anyway.
    assert [e.to.email for e in ended] == [
        "maria@amf.example.se",
        "saul@forening.example.se",
        "malin@amf.example.se",
        "ekonomi@amf.example.se",
    ]
    info = ended[-1].ending
    assert info is not None and info.repayment == 50000
    # 30 days after 2025-03-10 is Wednesday 2025-04-09.
    assert info.repayment_due == dt.date(2025, 4, 9)
    assert (info.repaid_by, info.repaid_to) == ("Föreningen", "Arbetsmarknadsförvaltningen")
    assert {e.ending for e in ended} == {info}
    # Due on a day off: the next business day (2025-06-06 nationaldagen, then the weekend).
    late = step(core, claim, at("2025-05-07")).effects.emails
    assert {e.ending.repayment_due for e in late if e.ending} == {dt.date(2025, 6, 9)}
    # No claim, no finance.
    plain = TerminationRequest(kind=EndingKind.rescission, party="amf", reason="misuse")
    told = {e.to.email for e in step(core, plain, now).effects.emails}
    assert "ekonomi@amf.example.se" not in told


def test_endings_are_refused_when_the_terms_do_not_provide_for_them():
    core = active(agreement(extra="\n[termination]\nrescission = false"))
    now = at("2025-03-10")
    refused(
        core,
        TerminationRequest(kind=EndingKind.rescission, party="amf", reason="x"),
        now,
        "no-rescission",
    )
    refused(
        core,
        TerminationRequest(kind=EndingKind.termination, party="amf", reason="x"),
        now,
        "no-termination",
    )
    refused(
        core,
        TerminationRequest(kind=EndingKind.withdrawal, party="amf", reason="x"),
        now,
        "no-withdrawal",
    )
    refused(
        core,
        TerminationRequest(kind=EndingKind.expiry, party="amf", reason="x"),
        now,
        "not-terminate",
    )
    full = active(agreement(extra=TERMINATION))
    refused(
        full,
        TerminationRequest(kind=EndingKind.termination, party="nobody", reason="x"),
        now,
        "unknown-party",
    )
    refused(
        full,
        TerminationRequest(
            kind=EndingKind.termination, party="amf", reason="x", given_on=dt.date(2025, 4, 1)
        ),
        now,
        "future-date",
    )
    refused(
        full,
        TerminationRequest(kind=EndingKind.termination, party="amf", reason="x", repayment=1),
        now,
        "repayment-not-rescission",
    )
    refused(
        full,
        TerminationRequest(kind=EndingKind.termination, party="amf", reason="x"),
        at("2025-11-01"),
        "ends-anyway",
    )
    no_claim = agreement(extra=TERMINATION.replace("repayment = true", "repayment = false"))
    refused(
        active(no_claim),
        TerminationRequest(kind=EndingKind.rescission, party="amf", reason="x", repayment=5),
        now,
        "no-repayment",
    )
    refused(
        new(),
        TerminationRequest(kind=EndingKind.termination, party="amf", reason="x"),
        DRAFTED,
        "not-signed",
    )
    over = decider.tick(full, at("2026-02-01")).core
    assert over.state is State.ended
    refused(
        over,
        TerminationRequest(kind=EndingKind.termination, party="amf", reason="x"),
        at("2026-02-01"),
        "ended",
    )


def test_a_withdrawal_waits_for_the_remaining_parties_who_end_it_or_go_on():
    core = active(agreement(extra=WITHDRAWAL))
    withdraw = TerminationRequest(kind=EndingKind.withdrawal, party="forening", reason="x")
    refused(core, withdraw, at("2025-02-10"), "too-early")
    refused(
        core,
        TerminationRequest(kind=EndingKind.withdrawal, reason="x"),
        at("2025-03-10"),
        "party-missing",
    )
    now = at("2025-03-10")
    waiting = step(core, withdraw, now)
    assert waiting.core.withdrawal_pending is not None
    asked = {(e.template, e.to.email) for e in waiting.effects.emails}
    assert ("withdrawal_decide", "maria@amf.example.se") in asked
    refused(waiting.core, withdraw, now, "withdrawal-pending")
    snapshot = decider.snapshot(waiting.core, now)
    assert snapshot.withdrawal_pending == "forening"
    ends = step(waiting.core, WithdrawalOutcome(end_all=True), now)
    assert ends.core.state is State.ending and ends.core.decisions.ending is not None
    goes_on = step(waiting.core, WithdrawalOutcome(end_all=False), now)
    assert goes_on.core.withdrawn == {"forening": dt.date(2025, 4, 10)}
    assert goes_on.core.state is State.active and goes_on.core.withdrawal_pending is None
    refused(goes_on.core, withdraw, now, "withdrawn")
    refused(goes_on.core, WithdrawalOutcome(end_all=True), now, "no-withdrawal-pending")


# Time ---------------------------------------------------------------------------------------


def test_time_starts_the_term_sends_what_is_due_once_and_ends_the_agreement():
    core = signed()
    assert decider.outlook(core, SIGNED).wake is not None
    started = decider.tick(core, at("2025-01-01", 0))
    assert started.core.state is State.active
    assert "active" in [e.kind for e in started.effects.events]
    wake = decider.outlook(started.core, at("2025-01-01", 0)).wake
    assert wake is not None
    due = decider.tick(started.core, wake)
    assert due.effects.emails, "the first planned email goes out when it falls due"
    assert not decider.tick(due.core, wake).effects.emails, "and only once"
    end = decider.tick(due.core, at("2026-01-01", 1))
    assert end.core.state is State.ended
    assert "ended" in [e.kind for e in end.effects.events]


def test_nothing_is_sent_before_signing_and_an_ended_agreement_is_over_once_all_is_sent():
    core = new()
    assert not decider.tick(core, at("2025-06-01")).effects.emails
    assert decider.outlook(core, DRAFTED).wake is None and not decider.outlook(core, DRAFTED).over
    done = decider.tick(signed(), at("2030-01-01")).core
    assert done.state is State.ended
    assert decider.outlook(done, at("2030-01-01")).over


def test_an_email_refused_for_good_is_logged_and_the_coordinator_told_once():
    core = signed()
    due = decider.tick(core, at("2025-12-31", 12)).effects.emails[0]
    failed = SendResult(key=due.key, outcome=SendOutcome.failed, message_id="", subject="s")
    told = decider.email_handled(core, due, failed, SIGNED)
    assert [e.kind for e in told.effects.events] == ["email.failed"]
    assert [(e.template, e.to.email) for e in told.effects.emails] == [
        ("send_failed", "malin@amf.example.se")
    ]
    alert = told.effects.emails[0]
    assert not decider.email_handled(core, alert, failed, SIGNED).effects.emails


def test_work_that_failed_for_good_alerts_the_coordinator_once_a_day():
    decision = decider.alert(new(), "the event log", "disk full", DRAFTED)
    (email,) = decision.effects.emails
    assert email.template == "service_alert" and email.to.email == "malin@amf.example.se"
    assert email.key.endswith(DRAFTED.date().isoformat())


def test_the_workflow_input_carries_the_state_and_the_pending_work_over():
    decision = step(ready(new()), StartSigning(), SIGNED)
    carried = AgreementInput(**dict(decision.core), pending=decision.effects)
    again = AgreementInput.model_validate_json(carried.model_dump_json())
    assert again.core() == decision.core
    assert again.pending == decision.effects


def test_every_refusal_of_the_decider_is_tested():
    source = (Path(__file__).parent.parent / "workflows" / "decider.py").read_text()
    codes = set(re.findall(r'Refusal\(\s*"([a-z-]+)"', source)) - {"unknown"}
    assert len(codes) > 20, "the decider refuses with codes"
    tests = Path(__file__).read_text()
    untested = {code for code in codes if not re.search(rf'"{code}",?\s*\)', tests)}
    assert untested == set(), "refusals without a test"


def test_a_round_signed_on_paper_signs_the_agreement_on_the_last_paper_date():
    started = step(ready(new()), StartSigning(), SIGNED).core
    assert started.last_round is not None
    days = [dt.date(2024, 10, 28), dt.date(2024, 10, 30)]
    signers = [
        s.model_copy(update={"status": SignerStatus.signed, "signed_on": day})
        for s, day in zip(started.last_round.signers, days, strict=True)
    ]
    info = started.last_round.model_copy(
        update={"signers": signers, "outcome": RoundOutcome.completed}
    )
    core = step(started, RoundFinished(info=info), SIGNED).core
    assert core.decisions.signed_on == dt.date(2024, 10, 30)
