"""The schedule engine: agreement terms + decisions + now -> dated milestones and planned emails.

A pure function: deterministic, no I/O, no clock of its own. The workflow calls it with
`workflow.now()`, the command line with the wall clock; both get the same plan.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from dateutil.relativedelta import relativedelta

from i18n import plural, text
from models.agreement import (
    Agreement,
    ContributionKind,
    DatedItem,
    DateRule,
    Instalments,
    RenewalKind,
    Role,
    SigningMethod,
)
from models.plan import (
    Decisions,
    EndingKind,
    MilestoneKind,
    Plan,
    PlannedEmail,
    PlannedMilestone,
    Recipient,
    Scenario,
)
from models.schedule import dates
from models.schedule.titles import ENDINGS
from models.validation import max_end

_ORDER = {kind: index for index, kind in enumerate(MilestoneKind)}
# The report covering the last months is due after the end; nothing else outlives the term.
_AFTER_END = {MilestoneKind.agreement_end, MilestoneKind.report_due}
_TEMPLATE_ORDER = {
    "signature_request": 0,
    "signature_receipt": 1,
    "signature_completed": 2,
    "deadline_escalation": 9,
}
END_MILESTONE = "agreement-end"  # the id of the agreement_end milestone


@dataclass(frozen=True)
class Term:
    """Where the agreement's term ends up: each possible expiry, and the final end."""

    expiries: list[dt.date]  # every term end reached, in order (renewal boundaries)
    decided: list[dt.date]  # expiries that carried a renewal decision (deadline milestones)
    end: dt.date
    ending: EndingKind


def resolve_term(agreement: Agreement, decisions: Decisions, scenario: Scenario) -> Term:
    term = agreement.term
    limit = max_end(agreement)
    renewal_months = term.renewal_months or term.period_months
    signing_parties = [key for key, party in agreement.parties.items() if party.signs]
    # Every possible term end, counted from the start like the periods (never chained).
    possible = (
        [term.end]
        if term.renewal is RenewalKind.fixed
        else dates.renewal_ends(term.start, term.end, term.period_months, renewal_months, limit)
    )
    expiries = [term.end]
    decided: list[dt.date] = []
    ending = EndingKind.expiry
    for following in possible[1:]:
        current = expiries[-1]
        decided.append(current)
        said = {d.party: d.renew for d in decisions.renewals if d.term_end == current}
        if term.renewal is RenewalKind.opt_out:
            renews = all(said.get(party, True) for party in signing_parties)
            if not renews:
                ending = EndingKind.non_renewal
        else:
            renews = scenario is Scenario.plan or all(said.get(p) for p in signing_parties)
            if not renews:
                ending = EndingKind.not_extended
        if not renews:
            break
        expiries.append(following)
    end = expiries[-1]
    if decisions.ending is not None and decisions.ending.end <= end:
        end = decisions.ending.end
        ending = decisions.ending.kind
        expiries = [e for e in expiries if e < end] + [end]
        decided = [e for e in decided if e <= end]
    return Term(expiries=expiries, decided=decided, end=end, ending=ending)


class _Builder:
    """Collects milestones and their emails for one plan."""

    def __init__(self, agreement: Agreement, decisions: Decisions, scenario: Scenario) -> None:
        self.a = agreement
        self.decisions = decisions
        self.scenario = scenario
        self.language = agreement.language
        self.term = resolve_term(agreement, decisions, scenario)
        self._period_list = self._periods()
        self.milestones: list[PlannedMilestone] = []

    # Milestones -------------------------------------------------------------------------

    def add(
        self,
        id: str,
        kind: MilestoneKind,
        written: dt.date,
        rule: DateRule,
        title_text: str,
        **fields: object,
    ) -> None:
        effective = dates.effective_date(written, rule)
        if written > self.term.end and kind not in _AFTER_END:
            return
        self.milestones.append(
            PlannedMilestone(
                id=id,
                kind=kind,
                date=written,
                effective_date=effective,
                rule=rule,
                title=title_text,
                **fields,
            )
        )

    def _periods(self) -> list[tuple[int, dt.date, dt.date]]:
        start, months = self.a.term.start, self.a.term.period_months
        found: list[tuple[int, dt.date, dt.date]] = []
        index = 1
        while True:
            first, last = dates.period_bounds(start, months, index)
            if first > self.term.end:
                return found
            found.append((index, first, min(last, self.term.end)))
            index += 1

    def periods(self) -> list[tuple[int, dt.date, dt.date]]:
        return self._period_list

    def period_of(self, day: dt.date) -> int | None:
        for index, first, last in self._period_list:
            if first <= day <= last:
                return index
        return None

    def name(self, party: str | None) -> str:
        return self.a.parties[party].name if party else ""

    def build_milestones(self) -> None:
        a, t = self.a, self.term
        signed = self.signing_date()
        self.add(
            "signing",
            MilestoneKind.signing,
            signed,
            DateRule.none,
            text(self.language, "The agreement is signed"),
        )

        periods = self.periods()
        for index, _first, last in periods[:-1]:
            self.add(
                f"period-end:{index}",
                MilestoneKind.period_end,
                last,
                DateRule.none,
                text(self.language, "Agreement period %(period)s ends", period=index),
                period=index,
            )
        self.add(
            END_MILESTONE,
            MilestoneKind.agreement_end,
            t.end,
            DateRule.none,
            text(self.language, ENDINGS[t.ending]),
            period=len(periods),
        )

        kind = (
            MilestoneKind.notice_deadline
            if a.term.renewal is RenewalKind.opt_out
            else MilestoneKind.extension_deadline
        )
        for expiry in t.decided:
            self.add(
                f"{kind.value}:{expiry.isoformat()}",
                kind,
                dates.months_before(expiry, a.term.notice_months or 0),
                DateRule.back,
                text(
                    self.language,
                    "Last day to give notice of non-renewal (the period ends %(end)s)",
                    end=expiry.isoformat(),
                )
                if kind is MilestoneKind.notice_deadline
                else text(
                    self.language,
                    "Last day to approve the extension in writing (it ends %(end)s)",
                    end=expiry.isoformat(),
                ),
                period=self.period_of(expiry),
            )

        self.build_contributions(periods)
        self.build_reports()
        self.build_meetings()
        self.build_dated(a.reviews, MilestoneKind.review_deadline, "review")
        self.build_dated(a.milestones, MilestoneKind.milestone, "milestone")
        if a.withdrawal is not None and a.withdrawal.opens is not None:
            self.add(
                "withdrawal-opens",
                MilestoneKind.withdrawal_opens,
                a.withdrawal.opens,
                DateRule.none,
                plural(
                    self.language,
                    "From today a party may withdraw with %(num)d month's written notice",
                    "From today a party may withdraw with %(num)d months' written notice",
                    a.withdrawal.notice_months,
                ),
            )

    def signing_date(self) -> dt.date:
        s = self.a.signing
        return self.decisions.signed_on or s.signed or s.planned or self.a.term.start

    def build_contributions(self, periods: list[tuple[int, dt.date, dt.date]]) -> None:
        pairs = [(c.payer, c.payee, c.kind) for c in self.a.contributions]
        for ci, c in enumerate(self.a.contributions):
            base = f"{c.payer}:{c.payee or 'partnership'}"
            if pairs.count((c.payer, c.payee, c.kind)) > 1:
                base += f":{ci + 1}"
            for index, first, last in periods:
                if c.periods is not None and index not in c.periods:
                    continue
                amount = c.amount
                if c.amounts is not None:  # an extension beyond the list goes on at the last
                    amount = c.amounts[min(index, len(c.amounts)) - 1]
                names = {"payer": self.name(c.payer), "payee": self.name(c.payee)}
                if c.kind is ContributionKind.in_kind:
                    self.add(
                        f"in-kind:{base}:{index}",
                        MilestoneKind.in_kind,
                        first,
                        DateRule.none,
                        text(
                            self.language,
                            "In-kind contribution: %(payer)s, period %(period)s",
                            period=index,
                            **names,
                        ),
                        period=index,
                        payer=c.payer,
                        payee=c.payee,
                        amount=amount,
                    )
                    continue
                days = self.instalment_days(c.instalments, index, first, last)
                for k, (day, part) in enumerate(
                    zip(days, _split(amount or 0, len(days)), strict=True)
                ):
                    self.add(
                        f"invoice:{base}:{index}:{k + 1}",
                        MilestoneKind.invoice,
                        day,
                        c.instalments.rule,
                        text(
                            self.language,
                            "Invoicing: %(payer)s pays %(payee)s, period %(period)s",
                            period=index,
                            **names,
                        ),
                        period=index,
                        payer=c.payer,
                        payee=c.payee,
                        amount=part,
                        occurrence=k + 1,
                    )

    def instalment_days(
        self, plan: Instalments, index: int, first: dt.date, last: dt.date
    ) -> list[dt.date]:
        start, months = self.a.term.start, self.a.term.period_months
        if plan.dates is not None:
            return sorted(d for d in plan.dates if first <= d <= last)
        step = months // plan.per_period if plan.per_period else 12 // (plan.per_year or 1)
        # Counted from the start, like the periods: an instalment on the 31st stays there.
        offset = (index - 1) * months
        return [
            d
            for d in (dates.add_months(start, offset + k * step) for k in range(months // step))
            if d <= last
        ]

    def build_reports(self) -> None:
        start = self.a.term.start
        postponed = {(p.report, p.occurrence): p.new_due for p in self.decisions.postponements}
        for r in self.a.reports:
            occurrences: list[tuple[dt.date, dt.date | None, dt.date | None]] = []
            if r.dates is not None:
                occurrences = [(d, None, None) for d in sorted(r.dates)]
            else:
                every = r.every_months or self.a.term.period_months
                first = r.first_months or every
                k = 0
                while True:
                    cover_end = dates.term_end(start, first + k * every)
                    if cover_end > self.term.end:
                        break
                    # A part report (first 6 of every 12 months) covers 6 months, not 12.
                    covered = min(first, every)
                    cover_start = dates.add_months(start, first + k * every - covered)
                    due_on: dt.date = cover_end + relativedelta(
                        months=r.due_months, days=r.due_days
                    )
                    occurrences.append((due_on, max(cover_start, start), cover_end))
                    k += 1
            for n, (due, covers_from, covers_to) in enumerate(occurrences, start=1):
                written = postponed.get((r.key, n), due)
                self.add(
                    f"report:{r.key}:{n}",
                    MilestoneKind.report_due,
                    written,
                    DateRule.forward,
                    text(
                        self.language,
                        "%(name)s for %(cover_start)s – %(cover_end)s is due",
                        name=r.name,
                        cover_start=covers_from.isoformat(),
                        cover_end=covers_to.isoformat(),
                    )
                    if covers_from is not None and covers_to is not None
                    else text(self.language, "%(name)s is due", name=r.name),
                    period=self.period_of(covers_to or due),
                    party=r.party,
                    report=r.key,
                    occurrence=n,
                )

    def build_meetings(self) -> None:
        m = self.a.meetings
        if m is None:
            return
        days: list[dt.date] = []
        if m.dates is not None:
            days = sorted(m.dates)
        elif m.every_months is not None:
            offset = m.offset_months if m.offset_months is not None else m.every_months // 2
            k = 0
            start = self.a.term.start
            while dates.add_months(start, k * m.every_months) <= self.term.end:
                days.append(dates.add_months(start, k * m.every_months + offset))
                k += 1
        for n, day in enumerate(days, start=1):
            self.add(
                f"meeting:{n}",
                MilestoneKind.meeting,
                day,
                DateRule.forward,
                text(
                    self.language,
                    "%(name)s (convened by %(convener)s)",
                    name=m.name,
                    convener=self.name(m.convener),
                ),
                period=self.period_of(day),
                party=m.convener,
                occurrence=n,
            )

    def build_dated(self, items: Iterable[DatedItem], kind: MilestoneKind, prefix: str) -> None:
        for item in items:
            if item.date is not None:
                self.add(f"{prefix}:{item.key}", kind, item.date, item.rule, item.title)
                continue
            for expiry in self.term.expiries:
                written = dates.months_before(expiry, item.months_before_end or 0)
                self.add(
                    f"{prefix}:{item.key}:{expiry.isoformat()}",
                    kind,
                    written,
                    item.rule,
                    item.title,
                    period=self.period_of(expiry),
                )

    # Emails -----------------------------------------------------------------------------

    def recipients(self, party: str, role: Role) -> list[Recipient]:
        return recipients(self.a, party, role)

    def coordinator(self) -> Recipient:
        return coordinator(self.a)

    def everyone(self, role: Role = Role.contact) -> list[Recipient]:
        return everyone(self.a, role)

    def emails(self, now: dt.datetime) -> list[PlannedEmail]:
        rem = self.a.reminders
        out: list[PlannedEmail] = []
        seen: set[str] = set()
        cutoff = (
            dates.local_time(self.signing_date(), rem.send_time)
            if self.scenario is Scenario.plan or self.decisions.signed_on
            else None
        )

        def send(
            m: PlannedMilestone,
            template: str,
            offsets: Iterable[int],
            people: Iterable[Recipient],
            *,
            signing: bool = False,
        ) -> None:
            for days_before in offsets:
                if days_before >= 0:
                    day = dates.reminder_day(m.effective_date, days_before)
                else:
                    day = dates.next_business_day(m.effective_date - dt.timedelta(days=days_before))
                at = dates.local_time(day, rem.send_time)
                if cutoff is not None and at < cutoff and not signing:
                    continue  # nothing is sent for an agreement before it is signed
                if day > self.term.end and m.kind not in _AFTER_END:
                    continue
                for person in people:
                    key = f"{self.a.id}:{m.id}:{template}:{days_before}:{person.email}"
                    if key in seen:
                        continue
                    seen.add(key)
                    out.append(
                        PlannedEmail(
                            key=key,
                            milestone_id=m.id,
                            template=template,
                            send_at=at,
                            to=person,
                            days_before=days_before,
                            past=at < now,
                        )
                    )

        everyone = self.everyone()
        for m in self.milestones:
            match m.kind:
                case MilestoneKind.signing if self.scenario is Scenario.plan:
                    # A live round's emails follow what signers do (the signature workflow);
                    # the plan assumes everyone signs the day the round starts, in the
                    # round's order: each signer gets a receipt but the last, whose
                    # signature completes the round (workflows/signing.py).
                    signers = [
                        r
                        for key, party in self.a.parties.items()
                        if party.signs
                        for r in self.recipients(key, Role.signatory)
                    ]
                    if self.a.signing.method is SigningMethod.link:
                        send(m, "signature_request", [0], signers, signing=True)
                    last = signers[-1].email if signers else None
                    receipts = [r for r in signers if r.email != last]
                    send(m, "signature_receipt", [0], receipts, signing=True)
                    done = [*everyone, *self.everyone(Role.signatory), self.coordinator()]
                    send(m, "signature_completed", [0], done, signing=True)
                case MilestoneKind.invoice:
                    assert m.payer is not None and m.payee is not None
                    finance = [
                        *self.recipients(m.payer, Role.finance),
                        *self.recipients(m.payee, Role.finance),
                    ]
                    invoiced = self.invoiced(m.id)
                    offsets = [
                        d
                        for d in rem.invoice
                        if invoiced is None or dates.reminder_day(m.effective_date, d) <= invoiced
                    ]
                    send(m, "invoice_reminder", offsets, finance)
                case MilestoneKind.report_due:
                    assert m.party is not None and m.report is not None
                    submitted = self.submitted(m.report, m.occurrence)
                    people = self.recipients(m.party, Role.contact)
                    offsets = [
                        d
                        for d in rem.report_due
                        if submitted is None or dates.reminder_day(m.effective_date, d) <= submitted
                    ]
                    send(m, "report_reminder", offsets, people)
                    if self.scenario is Scenario.recorded and submitted is None:
                        send(
                            m,
                            "report_overdue",
                            [-d for d in rem.report_overdue_days],
                            [*people, self.coordinator()],
                        )
                case MilestoneKind.meeting:
                    assert m.party is not None
                    send(
                        m, "meeting_reminder", rem.meeting, self.recipients(m.party, Role.convener)
                    )
                case MilestoneKind.notice_deadline | MilestoneKind.extension_deadline:
                    offsets = (
                        rem.notice_deadline
                        if m.kind is MilestoneKind.notice_deadline
                        else rem.extension_deadline
                    )
                    expiry = dt.date.fromisoformat(m.id.split(":", 1)[1])
                    for key, party in self.a.parties.items():
                        if not party.signs:
                            continue
                        when = self.decided_on(key, expiry)
                        todo = [
                            d
                            for d in offsets
                            if when is None or dates.reminder_day(m.effective_date, d) <= when
                        ]
                        send(
                            m, f"{m.kind.value}_reminder", todo, self.recipients(key, Role.contact)
                        )
                    if not self.all_decided_before(
                        expiry, dates.reminder_day(m.effective_date, rem.escalate_days)
                    ):
                        send(m, "deadline_escalation", [rem.escalate_days], [self.coordinator()])
                case MilestoneKind.review_deadline:
                    send(m, "review_reminder", rem.review_deadline, [self.coordinator(), *everyone])
                case MilestoneKind.withdrawal_opens:
                    send(m, "withdrawal_opens", rem.withdrawal_opens, everyone)
                case MilestoneKind.milestone:
                    send(m, "milestone_notice", rem.milestone, everyone)
                case MilestoneKind.agreement_end:
                    send(m, "agreement_end", rem.agreement_end, [*everyone, self.coordinator()])
                case _:
                    pass  # period ends and in-kind contributions are on the timeline only
        return out

    def submitted(self, report: str, occurrence: int | None) -> dt.date | None:
        # In the plan scenario nothing is recorded: every report arrives on its due day.
        for s in self.decisions.reports:
            if s.report == report and s.occurrence == occurrence:
                return s.submitted_on
        return None

    def invoiced(self, milestone: str) -> dt.date | None:
        """The day an instalment was recorded as invoiced: no reminder after it."""
        for mark in self.decisions.marks:
            if mark.milestone == milestone and mark.status.value in ("invoiced", "paid"):
                return mark.on
        return None

    def decided_on(self, party: str, expiry: dt.date) -> dt.date | None:
        for d in self.decisions.renewals:
            if d.party == party and d.term_end == expiry:
                return d.given_on
        return None

    def all_decided_before(self, expiry: dt.date, day: dt.date) -> bool:
        for key, party in self.a.parties.items():
            when = self.decided_on(key, expiry)
            if party.signs and (when is None or when > day):
                return False
        return True


def _split(amount: int, parts: int) -> list[int]:
    """Whole kronor in `parts` instalments; the odd kronor go on the first."""
    if parts == 0:
        return []
    base, rest = divmod(amount, parts)
    return [base + rest] + [base] * (parts - 1)


def plan(
    agreement: Agreement,
    now: dt.datetime,
    decisions: Decisions | None = None,
    scenario: Scenario = Scenario.recorded,
) -> Plan:
    """Every milestone of the agreement and every email it will cause, sorted by time.

    `now` only marks what is already over (`past`): an agreement taken on by the service
    after it started keeps its earlier milestones on the timeline but sends nothing for them.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    builder = _Builder(agreement, decisions or Decisions(), scenario)
    builder.build_milestones()
    today = now.astimezone(dates.STOCKHOLM).date()
    milestones = sorted(
        (m.model_copy(update={"past": m.effective_date < today}) for m in builder.milestones),
        key=lambda m: (m.effective_date, _ORDER[m.kind], m.id),
    )
    builder.milestones = milestones
    position = {m.id: index for index, m in enumerate(milestones)}
    emails = sorted(
        builder.emails(now),
        key=lambda e: (e.send_at, position[e.milestone_id], _TEMPLATE_ORDER.get(e.template, 99)),
    )
    return Plan(
        agreement=agreement.id,
        start=agreement.term.start,
        end=builder.term.end,
        ending=builder.term.ending,
        periods=len(builder.periods()),
        milestones=milestones,
        emails=emails,
    )


def recipients(agreement: Agreement, party: str, role: Role) -> list[Recipient]:
    """The party's contacts with `role`; its plain contacts when it names none."""
    contacts = agreement.parties[party].contacts
    chosen = (
        [c for c in contacts if role in c.roles]
        or [c for c in contacts if Role.contact in c.roles]
        or list(contacts)
    )
    return [
        Recipient(
            email=c.email,
            name=c.name,
            party=party,
            role=role.value,
            language=c.language or agreement.language,
        )
        for c in chosen
    ]


def coordinator(agreement: Agreement) -> Recipient:
    c = agreement.coordinator
    return Recipient(
        email=c.email,
        name=c.name,
        party=c.party,
        role="coordinator",
        language=c.language or agreement.language,
    )


def everyone(agreement: Agreement, role: Role = Role.contact) -> list[Recipient]:
    return [r for key in agreement.parties for r in recipients(agreement, key, role)]
