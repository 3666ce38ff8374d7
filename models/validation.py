"""Rules that span fields of an agreement file, each reported with the path it belongs to."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel

from models.agreement import Agreement, ContributionKind, RenewalKind, Role
from models.prerequisites import CHECKLIST
from models.schedule.dates import add_months, renewal_ends


@dataclass(frozen=True)
class Problem:
    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


def max_end(agreement: Agreement) -> dt.date:
    """The last day the agreement can possibly run to, renewals included."""
    term = agreement.term
    if term.last_end is not None:
        return term.last_end
    if term.max_total_months is not None:
        return add_months(term.start, term.max_total_months) - dt.timedelta(days=1)
    return term.end


def max_periods(agreement: Agreement) -> int:
    term = agreement.term
    periods = 0
    while add_months(term.start, (periods + 1) * term.period_months) <= max_end(agreement) + (
        dt.timedelta(days=1)
    ):
        periods += 1
    return periods


def _ends_on_boundary(start: dt.date, end: dt.date, months: int) -> bool:
    """Does [start, end] consist of whole `months`-long steps from start?"""
    after = end + dt.timedelta(days=1)
    steps = 1
    while add_months(start, steps * months) < after:
        steps += 1
    return add_months(start, steps * months) == after


def check(agreement: Agreement) -> list[Problem]:
    return list(_check(agreement))


# Every control character (Unicode category Cc: C0, DEL and C1 such as U+0085 NEXT LINE) and
# the line and paragraph separators. Names and titles end up in email headers (the subject,
# the To line), where any of these either breaks the message or cannot be built at all.
_NOT_IN_A_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Multi-line text (the purpose) may break lines and use tabs, nothing else.
_NOT_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_MULTI_LINE = {"purpose"}
_EMAIL_FIELDS = {"email"}


def _strings(value: object, location: str) -> Iterator[tuple[str, str]]:
    """Every piece of text in the terms with the path it has in the file."""
    if isinstance(value, str):
        yield location, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _strings(getattr(value, name), f"{location}.{name}" if location else name)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _strings(item, f"{location}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{location}.{key}")


def _sendable(a: Agreement) -> Iterator[Problem]:
    """Nothing is accepted that cannot be sent: text that goes into an email header is one
    line without control characters, and every address can go through any mail relay."""
    for location, text in _strings(a, ""):
        field = location.rpartition(".")[2]
        if field in _EMAIL_FIELDS:
            yield from _address(location, text)
            continue
        pattern = _NOT_IN_TEXT if field in _MULTI_LINE else _NOT_IN_A_LINE
        found = sorted(set(pattern.findall(text)))
        if not found:
            continue
        what = "the control character" + ("s " if len(found) > 1 else " ")
        what += ", ".join(f"U+{ord(char):04X}" for char in found)
        if field in _MULTI_LINE:
            yield Problem(location, f"contains {what}")
        else:
            yield Problem(
                location,
                f"contains {what}: names and titles go into email subjects and headers, "
                "which must be one line of plain text (no line breaks, tabs or other "
                "control characters)",
            )


def _address(location: str, address: str) -> Iterator[Problem]:
    """The domain is checked with IDNA (and sent in its ASCII form, xn--…); the part before
    the @ must be ASCII, because only a relay offering SMTPUTF8 could take anything else."""
    try:
        parts = validate_email(address, check_deliverability=False)
    except EmailNotValidError as error:
        yield Problem(location, f"{address!r} is not a valid email address: {error}")
        return
    if not parts.local_part.isascii():
        odd = "".join(sorted({c for c in parts.local_part if not c.isascii()}))
        yield Problem(
            location,
            f"{address!r} has non-ASCII characters ({odd}) before the @: such an address needs "
            "SMTPUTF8, which the mail relay (or a server after it) may not offer, so emails "
            "to it could not be sent; give an address with only ASCII letters before the @",
        )


def _check(a: Agreement) -> Iterator[Problem]:
    parties = a.parties
    term = a.term

    yield from _sendable(a)

    def party_ref(location: str, key: str | None) -> Iterator[Problem]:
        if key is not None and key not in parties:
            known = ", ".join(sorted(parties))
            yield Problem(location, f"unknown party {key!r} (parties are: {known})")

    yield from party_ref("coordinator.party", a.coordinator.party)

    for key, party in parties.items():
        if party.signs and not any(Role.signatory in c.roles for c in party.contacts):
            yield Problem(
                f"parties.{key}.contacts",
                "a signing party needs at least one contact with the role 'signatory' "
                "(or set signs = false)",
            )

    # The term.
    if term.end <= term.start:
        yield Problem("term.end", f"{term.end} is not after the start {term.start}")
        return  # every later date rule depends on a sane term
    if not _ends_on_boundary(term.start, term.end, term.period_months):
        yield Problem(
            "term.end",
            f"{term.end} does not end a whole number of {term.period_months}-month periods "
            f"from {term.start} (a period ends the day before the same day number)",
        )
        return
    if term.last_end is not None and term.max_total_months is not None:
        yield Problem("term", "give max_total_months or last_end, not both")
    renewing = term.renewal is not RenewalKind.fixed
    limit = max_end(a)
    if renewing:
        if term.notice_months is None:
            yield Problem(
                "term.notice_months",
                f"required for renewal {term.renewal.value!r}: how many months before the "
                "end must parties decide?",
            )
        if term.last_end is None and term.max_total_months is None:
            yield Problem(
                "term",
                f"renewal {term.renewal.value!r} needs max_total_months or last_end "
                "(how long can the agreement run at most?)",
            )
        renewal = term.renewal_months or term.period_months
        if renewal % term.period_months:
            yield Problem(
                "term.renewal_months",
                f"{renewal} is not a whole number of {term.period_months}-month periods",
            )
    elif (term.last_end is not None or term.max_total_months is not None) and limit != term.end:
        yield Problem(
            "term.renewal",
            f"a fixed agreement ends on {term.end}, but the maximum term ends on {limit}; "
            "set renewal to 'opt-out' or 'opt-in', or remove the maximum",
        )
    if limit < term.end:
        yield Problem(
            "term",
            f"the initial term ending {term.end} does not fit the maximum term ending {limit}",
        )
    elif renewing and limit > term.end:
        renewal = term.renewal_months or term.period_months
        if limit not in renewal_ends(term.start, term.end, term.period_months, renewal, limit):
            yield Problem(
                "term",
                f"renewals of {renewal} months, counted like the periods from the start "
                f"{term.start}, cannot end exactly on the maximum term's last day {limit}",
            )

    last_possible = limit
    periods = max_periods(a)

    def within(location: str, day: dt.date) -> Iterator[Problem]:
        if not term.start <= day <= last_possible:
            yield Problem(
                location,
                f"{day} is outside the agreement ({term.start} – {last_possible})",
            )

    # Money and in-kind contributions.
    for i, c in enumerate(a.contributions):
        at = f"contributions[{i}]"
        yield from party_ref(f"{at}.payer", c.payer)
        yield from party_ref(f"{at}.payee", c.payee)
        if c.kind is ContributionKind.money:
            if c.payee is None:
                yield Problem(f"{at}.payee", "a money contribution needs a payee")
            elif c.payee == c.payer:
                yield Problem(f"{at}.payee", "payer and payee are the same party")
            if c.amount is None and c.amounts is None:
                yield Problem(f"{at}.amount", "a money contribution needs amount or amounts")
        if c.amount is not None and c.amounts is not None:
            yield Problem(f"{at}", "give amount (every period) or amounts (per period), not both")
        for p in c.periods or []:
            if p > periods:
                yield Problem(f"{at}.periods", f"period {p} does not exist (at most {periods})")
        if c.amounts is not None:
            needed = max(c.periods) if c.periods else periods
            if len(c.amounts) < needed:
                yield Problem(
                    f"{at}.amounts",
                    f"lists {len(c.amounts)} period(s) but the agreement can run {needed}",
                )
        plan = c.instalments
        given = [x for x in (plan.per_period, plan.per_year, plan.dates) if x is not None]
        if len(given) != 1:
            yield Problem(f"{at}.instalments", "give exactly one of per_period, per_year, dates")
        if plan.per_period is not None and term.period_months % plan.per_period:
            yield Problem(
                f"{at}.instalments.per_period",
                f"{plan.per_period} instalments do not divide a {term.period_months}-month period",
            )
        if plan.per_year is not None and (
            12 % plan.per_year or term.period_months % (12 // plan.per_year)
        ):
            yield Problem(
                f"{at}.instalments.per_year",
                f"{plan.per_year} a year does not fit {term.period_months}-month periods",
            )
        for j, day in enumerate(plan.dates or []):
            yield from within(f"{at}.instalments.dates[{j}]", day)

    # Reports.
    seen: set[str] = set()
    for i, r in enumerate(a.reports):
        at = f"reports[{i}]"
        if r.key in seen:
            yield Problem(f"{at}.key", f"{r.key!r} is used by another report")
        seen.add(r.key)
        yield from party_ref(f"{at}.party", r.party)
        if r.dates is not None and (r.every_months or r.first_months):
            yield Problem(at, "give dates, or every_months/first_months, not both")
        for j, day in enumerate(r.dates or []):
            yield from within(f"{at}.dates[{j}]", day)

    # Steering-group meetings.
    if a.meetings is not None:
        m = a.meetings
        yield from party_ref("meetings.convener", m.convener)
        if (m.every_months is None) == (m.dates is None):
            yield Problem("meetings", "give exactly one of every_months or dates")
        if m.every_months is not None and m.min_per_period:
            per_period = term.period_months // m.every_months
            if per_period < m.min_per_period:
                yield Problem(
                    "meetings.every_months",
                    f"every {m.every_months} months gives {per_period} meeting(s) per "
                    f"{term.period_months}-month period, fewer than min_per_period "
                    f"{m.min_per_period}",
                )
        for j, day in enumerate(m.dates or []):
            yield from within(f"meetings.dates[{j}]", day)

    # Reviews and named milestones.
    keys: set[str] = set()
    for section, items in (("reviews", a.reviews), ("milestones", a.milestones)):
        for i, item in enumerate(items):
            at = f"{section}[{i}]"
            if item.key in keys:
                yield Problem(f"{at}.key", f"{item.key!r} is used twice")
            keys.add(item.key)
            if (item.date is None) == (item.months_before_end is None):
                yield Problem(at, "give exactly one of date or months_before_end")
            if item.date is not None:
                yield from within(f"{at}.date", item.date)

    if a.withdrawal is not None and a.withdrawal.opens is not None:
        yield from within("withdrawal.opens", a.withdrawal.opens)

    for key in a.prerequisites:
        if key not in CHECKLIST:
            yield Problem(
                f"prerequisites.{key}",
                f"unknown checklist item (known: {', '.join(CHECKLIST)})",
            )
