"""Rules that span fields of an agreement file, each reported with the path it belongs to."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel

from i18n import N_, language_of, text
from models.agreement import Agreement, ContributionKind, DocumentKind, RenewalKind, Role
from models.prerequisites import CHECKLIST
from models.said import Params, params_of
from models.schedule.dates import add_months, renewal_ends

# The value given, after a message that does not name it (models/loader.py).
GOT = N_("(got %(got)s)")


@dataclass(frozen=True)
class Problem:
    """One thing wrong in an agreement file: where (`location`, the path in the file, the
    same in every language) and what (`message`, in English: what `str()`, the API and the
    command line in English say).

    `msgid` and `params` say it in another language: `msgid` is a message of the catalog
    (marked with `N_`), `params` fill its `%(name)s` parameters. `got` is the value given,
    where the message does not name it. A problem without a msgid says its English in
    every language."""

    location: str
    message: str
    msgid: str | None = None
    params: Params = ()
    got: str | None = None

    @classmethod
    def of(cls, location: str, msgid: str, /, **params: object) -> Problem:
        """A problem whose English is its message id with the parameters filled in."""
        values = params_of(params)
        return cls(location, msgid % dict(values), msgid, values)

    def said(self, language: object) -> str:
        """The message in `language`. In English, the English message itself: it may say
        more than its message id (the TOML parser's or the email validator's own words)."""
        if self.msgid is None or language_of(language) == "en":
            return self.message
        words = text(language, self.msgid, **dict(self.params))
        if self.got is not None:
            words += " " + text(language, GOT, got=self.got)
        return words

    def located(self, language: object) -> str:
        """The location, a colon and the message in `language`; the location (the path in
        the file) is the same in every language."""
        said = self.said(language)
        return f"{self.location}: {said}" if self.location else said

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
    for location, value in _strings(a, ""):
        field = location.rpartition(".")[2]
        if field in _EMAIL_FIELDS:
            yield from _address(location, value)
            continue
        pattern = _NOT_IN_TEXT if field in _MULTI_LINE else _NOT_IN_A_LINE
        found = sorted(set(pattern.findall(value)))
        if not found:
            continue
        chars = ", ".join(f"U+{ord(char):04X}" for char in found)
        many = len(found) > 1
        if field in _MULTI_LINE and many:
            yield Problem.of(location, N_("contains the control characters %(chars)s"), chars=chars)
        elif field in _MULTI_LINE:
            yield Problem.of(location, N_("contains the control character %(chars)s"), chars=chars)
        elif many:
            yield Problem.of(
                location,
                N_(
                    "contains the control characters %(chars)s: names and titles go into email "
                    "subjects and headers, which must be one line of plain text (no line "
                    "breaks, tabs or other control characters)"
                ),
                chars=chars,
            )
        else:
            yield Problem.of(
                location,
                N_(
                    "contains the control character %(chars)s: names and titles go into email "
                    "subjects and headers, which must be one line of plain text (no line "
                    "breaks, tabs or other control characters)"
                ),
                chars=chars,
            )


def _address(location: str, address: str) -> Iterator[Problem]:
    """The domain is checked with IDNA (and sent in its ASCII form, xn--…); the part before
    the @ must be ASCII, because only a relay offering SMTPUTF8 could take anything else."""
    try:
        parts = validate_email(address, check_deliverability=False)
    except EmailNotValidError as error:
        reason = str(error)
        yield Problem(
            location,
            f"{address!r} is not a valid email address: {reason}",
            not_an_address(reason),
            params_of({"address": repr(address)}),
        )
        return
    if not parts.local_part.isascii():
        odd = "".join(sorted({c for c in parts.local_part if not c.isascii()}))
        yield Problem.of(
            location,
            N_(
                "%(address)s has non-ASCII characters (%(characters)s) before the @: such an "
                "address needs SMTPUTF8, which the mail relay (or a server after it) may not "
                "offer, so emails to it could not be sent; give an address with only ASCII "
                "letters before the @"
            ),
            address=repr(address),
            characters=odd,
        )


# Why an address is not one, as the email validator says it (in English), and the message
# that says so in the reader's language; each names the address as %(address)s.
_NOT_AN_ADDRESS = (
    ("must have an @-sign", N_("%(address)s is not a valid email address: it has no @")),
    (
        "something before the @-sign",
        N_("%(address)s is not a valid email address: there is nothing before the @"),
    ),
    (
        "something after the @-sign",
        N_("%(address)s is not a valid email address: there is nothing after the @"),
    ),
    (
        "It should have a period",
        N_(
            "%(address)s is not a valid email address: the part after the @ has no period "
            "(as in kommun.se)"
        ),
    ),
    (
        "valid top-level domain",
        N_(
            "%(address)s is not a valid email address: the part after the @ does not end in a "
            "known top-level domain (as .se)"
        ),
    ),
    ("two periods in a row", N_("%(address)s is not a valid email address: two periods in a row")),
    ("too long", N_("%(address)s is not a valid email address: it is too long")),
    (
        "character",
        N_("%(address)s is not a valid email address: it has characters an address cannot have"),
    ),
)


def not_an_address(reason: str) -> str:
    """The message for an address the email validator refused, for `reason` (its words)."""
    for words, msgid in _NOT_AN_ADDRESS:
        if words in reason:
            return msgid
    return N_("%(address)s is not a valid email address")


def _check(a: Agreement) -> Iterator[Problem]:
    parties = a.parties
    term = a.term

    yield from _sendable(a)

    def party_ref(location: str, key: str | None) -> Iterator[Problem]:
        if key is not None and key not in parties:
            yield Problem.of(
                location,
                N_("unknown party %(key)s (parties are: %(known)s)"),
                key=repr(key),
                known=", ".join(sorted(parties)),
            )

    yield from party_ref("coordinator.party", a.coordinator.party)

    for key, party in parties.items():
        if party.signs and not any(Role.signatory in c.roles for c in party.contacts):
            yield Problem.of(
                f"parties.{key}.contacts",
                N_(
                    "a signing party needs at least one contact with the role 'signatory' "
                    "(or set signs = false)"
                ),
            )

    # The term.
    if term.end <= term.start:
        yield Problem.of(
            "term.end",
            N_("%(end)s is not after the start %(start)s"),
            end=term.end,
            start=term.start,
        )
        return  # every later date rule depends on a sane term
    if not _ends_on_boundary(term.start, term.end, term.period_months):
        yield Problem.of(
            "term.end",
            N_(
                "%(end)s does not end a whole number of %(months)s-month periods from "
                "%(start)s (a period ends the day before the same day number)"
            ),
            end=term.end,
            months=term.period_months,
            start=term.start,
        )
        return
    if term.last_end is not None and term.max_total_months is not None:
        yield Problem.of("term", N_("give max_total_months or last_end, not both"))
    renewing = term.renewal is not RenewalKind.fixed
    limit = max_end(a)
    if renewing:
        if term.notice_months is None:
            yield Problem.of(
                "term.notice_months",
                N_(
                    "required for renewal %(renewal)s: how many months before the end must "
                    "parties decide?"
                ),
                renewal=repr(term.renewal.value),
            )
        if term.last_end is None and term.max_total_months is None:
            yield Problem.of(
                "term",
                N_(
                    "renewal %(renewal)s needs max_total_months or last_end (how long can the "
                    "agreement run at most?)"
                ),
                renewal=repr(term.renewal.value),
            )
        renewal = term.renewal_months or term.period_months
        if renewal % term.period_months:
            yield Problem.of(
                "term.renewal_months",
                N_("%(renewal)s is not a whole number of %(months)s-month periods"),
                renewal=renewal,
                months=term.period_months,
            )
    elif (term.last_end is not None or term.max_total_months is not None) and limit != term.end:
        yield Problem.of(
            "term.renewal",
            N_(
                "a fixed agreement ends on %(end)s, but the maximum term ends on %(limit)s; "
                "set renewal to 'opt-out' or 'opt-in', or remove the maximum"
            ),
            end=term.end,
            limit=limit,
        )
    if limit < term.end:
        yield Problem.of(
            "term",
            N_("the initial term ending %(end)s does not fit the maximum term ending %(limit)s"),
            end=term.end,
            limit=limit,
        )
    elif renewing and limit > term.end:
        renewal = term.renewal_months or term.period_months
        if limit not in renewal_ends(term.start, term.end, term.period_months, renewal, limit):
            yield Problem.of(
                "term",
                N_(
                    "renewals of %(renewal)s months, counted like the periods from the start "
                    "%(start)s, cannot end exactly on the maximum term's last day %(limit)s"
                ),
                renewal=renewal,
                start=term.start,
                limit=limit,
            )

    last_possible = limit
    periods = max_periods(a)

    def within(location: str, day: dt.date) -> Iterator[Problem]:
        if not term.start <= day <= last_possible:
            yield Problem.of(
                location,
                N_("%(day)s is outside the agreement (%(start)s – %(end)s)"),
                day=day,
                start=term.start,
                end=last_possible,
            )

    # Money and in-kind contributions.
    for i, c in enumerate(a.contributions):
        at = f"contributions[{i}]"
        yield from party_ref(f"{at}.payer", c.payer)
        yield from party_ref(f"{at}.payee", c.payee)
        if c.kind is ContributionKind.money:
            if c.payee is None:
                yield Problem.of(f"{at}.payee", N_("a money contribution needs a payee"))
            elif c.payee == c.payer:
                yield Problem.of(f"{at}.payee", N_("payer and payee are the same party"))
            if c.amount is None and c.amounts is None:
                yield Problem.of(f"{at}.amount", N_("a money contribution needs amount or amounts"))
        if c.amount is not None and c.amounts is not None:
            yield Problem.of(at, N_("give amount (every period) or amounts (per period), not both"))
        for p in c.periods or []:
            if p > periods:
                yield Problem.of(
                    f"{at}.periods",
                    N_("period %(period)s does not exist (at most %(periods)s)"),
                    period=p,
                    periods=periods,
                )
        if c.amounts is not None:
            needed = max(c.periods) if c.periods else periods
            if len(c.amounts) < needed:
                yield Problem.of(
                    f"{at}.amounts",
                    N_("lists %(count)s period(s) but the agreement can run %(needed)s"),
                    count=len(c.amounts),
                    needed=needed,
                )
        plan = c.instalments
        given = [x for x in (plan.per_period, plan.per_year, plan.dates) if x is not None]
        if len(given) != 1:
            yield Problem.of(
                f"{at}.instalments", N_("give exactly one of per_period, per_year, dates")
            )
        if plan.per_period is not None and term.period_months % plan.per_period:
            yield Problem.of(
                f"{at}.instalments.per_period",
                N_("%(count)s instalments do not divide a %(months)s-month period"),
                count=plan.per_period,
                months=term.period_months,
            )
        if plan.per_year is not None and (
            12 % plan.per_year or term.period_months % (12 // plan.per_year)
        ):
            yield Problem.of(
                f"{at}.instalments.per_year",
                N_("%(count)s a year does not fit %(months)s-month periods"),
                count=plan.per_year,
                months=term.period_months,
            )
        for j, day in enumerate(plan.dates or []):
            yield from within(f"{at}.instalments.dates[{j}]", day)

    # Reports.
    seen: set[str] = set()
    for i, r in enumerate(a.reports):
        at = f"reports[{i}]"
        if r.key in seen:
            yield Problem.of(f"{at}.key", N_("%(key)s is used by another report"), key=repr(r.key))
        seen.add(r.key)
        yield from party_ref(f"{at}.party", r.party)
        if r.dates is not None and (r.every_months or r.first_months):
            yield Problem.of(at, N_("give dates, or every_months/first_months, not both"))
        for j, day in enumerate(r.dates or []):
            yield from within(f"{at}.dates[{j}]", day)

    # Steering-group meetings.
    if a.meetings is not None:
        m = a.meetings
        yield from party_ref("meetings.convener", m.convener)
        if (m.every_months is None) == (m.dates is None):
            yield Problem.of("meetings", N_("give exactly one of every_months or dates"))
        if m.every_months is not None and m.min_per_period:
            per_period = term.period_months // m.every_months
            if per_period < m.min_per_period:
                yield Problem.of(
                    "meetings.every_months",
                    N_(
                        "every %(every)s months gives %(count)s meeting(s) per %(months)s-month "
                        "period, fewer than min_per_period %(least)s"
                    ),
                    every=m.every_months,
                    count=per_period,
                    months=term.period_months,
                    least=m.min_per_period,
                )
        for j, day in enumerate(m.dates or []):
            yield from within(f"meetings.dates[{j}]", day)

    # Documents: each once; one agreement text at most.
    hashes: set[str] = set()
    for i, document in enumerate(a.documents):
        if document.sha256 in hashes:
            yield Problem.of(
                f"documents[{i}]", N_("the document %(name)s is there twice"), name=document.name
            )
        hashes.add(document.sha256)
    if sum(1 for d in a.documents if d.kind is DocumentKind.text) > 1:
        yield Problem.of("documents", N_("there is more than one agreement text"))
    # Reviews and named milestones.
    keys: set[str] = set()
    for section, items in (("reviews", a.reviews), ("milestones", a.milestones)):
        for i, item in enumerate(items):
            at = f"{section}[{i}]"
            if item.key in keys:
                yield Problem.of(f"{at}.key", N_("%(key)s is used twice"), key=repr(item.key))
            keys.add(item.key)
            if (item.date is None) == (item.months_before_end is None):
                yield Problem.of(at, N_("give exactly one of date or months_before_end"))
            if item.date is not None:
                yield from within(f"{at}.date", item.date)

    if a.withdrawal is not None and a.withdrawal.opens is not None:
        yield from within("withdrawal.opens", a.withdrawal.opens)

    for key in a.prerequisites:
        if key not in CHECKLIST:
            yield Problem.of(
                f"prerequisites.{key}",
                N_("unknown checklist item (known: %(known)s)"),
                known=", ".join(CHECKLIST),
            )
