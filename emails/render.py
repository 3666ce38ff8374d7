"""Render email parts from the templates under `emails/templates/<language>/<kind>/`.

One Jinja environment per language, autoescaped for HTML, with Jinja2's i18n extension
installed with that language's catalog: the shared `_base.html` and `_macros.html` are
written once, in English message ids, and every word the code adds (when, amounts,
periods, the reference) comes from the catalog too. The formatting DOMAIN.md asks for:
ISO dates with the weekday, "650 000 kr" with a no-break space, Stockholm times.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache
from html import unescape
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

from babel.dates import format_date
from babel.lists import format_list
from babel.numbers import format_decimal
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

import i18n
from i18n.words import round_event, word, word_for
from models.agreement import Agreement, Contribution, ContributionKind, SigningMethod
from models.digest import Digest
from models.lifecycle import EmailSpec, RoundInfo, SignatureEvent, Signer, SignerStatus
from models.plan import EndingKind, PlannedEmail, PlannedMilestone
from models.schedule.dates import STOCKHOLM

TEMPLATES = Path(__file__).parent / "templates"
_LOCALES = {"sv": "sv_SE", "en": "en_GB"}
# Every character str.splitlines() breaks at (U+0085 NEL too): none may reach a header.
_NEWLINES = re.compile(r"[\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]+")


@lru_cache(maxsize=4096)  # the same few dates and amounts, email after email
def kronor(amount: int | None, language: str = "sv") -> str:
    """650000 -> '650 000 kr' with a no-break space between thousands."""
    if amount is None:
        return ""
    number = format_decimal(amount, locale="sv_SE", group_separator=True)
    return f"{number}\u00a0kr".replace("\u202f", "\u00a0")


def _and(items: list[str], language: str) -> str:
    """'1, 2 och 3' / '1, 2 and 3'."""
    return str(format_list(items, locale=_LOCALES[i18n.language_of(language)])) if items else ""


def _for_periods(periods: list[int] | None, language: str) -> str:
    """ "per period", "för första perioden", "för period 2", "för period 1, 2 och 3"."""
    if periods is None:
        return i18n.text(language, "for each period")
    if periods == [1]:
        return i18n.text(language, "for the first period")
    numbers = _and([str(p) for p in sorted(periods)], language)
    return i18n.text(language, "for period %(periods)s", periods=numbers)


def contribution_terms(contribution: Contribution, language: str = "sv") -> str:
    """What a contribution is worth, said the way the agreement says it: "650 000 kr per
    period", "150 000 kr för första perioden", "520 000 kr för period 1, 400 000 kr för
    period 2", "i natura, värde 277 252 kr för första perioden", "i natura"."""
    c = contribution
    if c.amounts is not None:
        periods = sorted(c.periods or range(1, len(c.amounts) + 1))
        # A list names every period by number.
        parts = [
            i18n.text(
                language,
                "%(amount)s for period %(period)s",
                amount=kronor(c.amounts[min(p, len(c.amounts)) - 1]),
                period=p,
            )
            for p in periods
        ]
        money = _and(parts, language)
    elif c.amount is not None:
        money = f"{kronor(c.amount)} {_for_periods(c.periods, language)}"
    else:
        money = ""
    if c.kind is ContributionKind.in_kind:
        if not money:
            return i18n.text(language, "contributed in kind")
        return i18n.text(language, "in kind, value %(money)s", money=money)
    return money


def contribution_of(agreement: Agreement, milestone: PlannedMilestone) -> Contribution | None:
    """The contribution an instalment (or an in-kind milestone) comes from."""
    kind = ContributionKind.in_kind if milestone.kind.value == "in_kind" else ContributionKind.money
    found = [
        (index, c)
        for index, c in enumerate(agreement.contributions)
        if c.payer == milestone.payer and c.payee == milestone.payee and c.kind is kind
        if c.periods is None or milestone.period in c.periods
    ]
    if len(found) > 1:  # the same payer and payee twice: the id carries the position
        found = [(i, c) for i, c in found if f":{i + 1}:" in milestone.id] or found[:1]
    return found[0][1] if found else None


def period_amount(contribution: Contribution, period: int) -> int | None:
    if contribution.amounts is not None:
        return contribution.amounts[min(period, len(contribution.amounts)) - 1]
    return contribution.amount


def instalment_terms(agreement: Agreement, milestone: PlannedMilestone, language: str) -> str:
    """What an invoiced amount is: the whole contribution of a period or one instalment of
    it, for which period ("hela bidraget för första perioden", "delbetalning 1 av
    bidraget för avtalsperiod 2 (520 000 kr)")."""
    contribution = contribution_of(agreement, milestone)
    period = milestone.period or 1
    first = contribution is not None and contribution.periods == [1] and period == 1
    whole = contribution is not None and period_amount(contribution, period) == milestone.amount
    if whole or contribution is None:
        if first:
            return i18n.text(language, "the whole contribution for the first period")
        return i18n.text(
            language, "the whole contribution for agreement period %(period)s", period=period
        )
    total = kronor(period_amount(contribution, period))
    number = milestone.occurrence or 1
    if first:
        return i18n.text(
            language,
            "instalment %(number)s of the contribution for the first period (%(total)s)",
            number=number,
            total=total,
        )
    return i18n.text(
        language,
        "instalment %(number)s of the contribution for agreement period %(period)s (%(total)s)",
        number=number,
        period=period,
        total=total,
    )


def fingerprint(sha256: str) -> str:
    """The start of a SHA-256 a person can compare by eye: '3f2a9c1b7e4d…'."""
    return f"{sha256[:12]}…"


@lru_cache(maxsize=4096)
def day(value: dt.date, language: str = "sv") -> str:
    """2025-01-30 -> '2025-01-30 (torsdag)': ISO date with the weekday a reader checks."""
    weekday = format_date(value, "EEEE", locale=_LOCALES.get(language, "sv_SE"))
    return f"{value.isoformat()} ({weekday})"


@lru_cache(maxsize=4096)
def long_date(value: dt.date, language: str = "sv") -> str:
    """2025-01-30 -> '30 januari 2025' for prose."""
    return str(format_date(value, "d MMMM y", locale=_LOCALES.get(language, "sv_SE")))


@lru_cache(maxsize=4)
def environment(language: str) -> Environment:
    """The templates of one language: its kind folders first, then the shared `_base.html`
    and `_macros.html`, which speak through the language's catalog (`_()`, `{% trans %}`).
    One environment per language: installing a catalog is global to an environment."""
    language = i18n.language_of(language)
    env = Environment(
        loader=FileSystemLoader([str(TEMPLATES / language), str(TEMPLATES)]),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        auto_reload=False,  # templates are part of the release: no stat() per email
        cache_size=-1,  # every template kept, without a least-recently-used list to keep
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_translations(i18n.translations(language), newstyle=True)  # type: ignore[attr-defined]
    env.filters["kronor"] = lambda v: kronor(v, language)
    env.filters["day"] = lambda v: day(v, language)
    env.filters["long_date"] = lambda v: long_date(v, language)
    env.filters["stamp"] = stamp
    env.filters["fingerprint"] = fingerprint
    env.filters["contribution"] = lambda c: contribution_terms(c, language)
    # The words for the service's own keys (i18n.words): never a key in an email.
    env.globals["word"] = lambda value: word(language, value)
    env.globals["word_for"] = lambda kind, value: word_for(language, kind, value)
    env.globals["round_event"] = lambda what: round_event(language, what)
    env.globals["SigningMethod"] = SigningMethod
    env.globals["EndingKind"] = EndingKind
    return env


def warm() -> None:
    """Compile every template of both languages now (a worker does, as it starts), rather
    than each on its first email: a few milliseconds each, 0.4 s for all."""
    for language in _LOCALES:
        env = environment(language)
        for name in env.list_templates(extensions=["html", "txt"]):
            env.get_template(name)


def stamp(value: dt.datetime) -> str:
    """A moment as the verification record shows it: local time with its zone named."""
    local = value.astimezone(STOCKHOLM)
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()} (Europe/Stockholm)"


def one_line(text: str) -> str:
    """Headers never carry a raw newline from data: collapse every line break to a space."""
    return _NEWLINES.sub(" ", text).strip()


def reference(agreement: Agreement, language: str) -> str:
    """ " (dnr SOF 2025/3)" after the agreement's name, or nothing without a reference."""
    if not agreement.reference:
        return ""
    return " " + i18n.text(language, "(ref. %(reference)s)", reference=agreement.reference)


def context(
    agreement: Agreement, milestone: PlannedMilestone, email: PlannedEmail
) -> dict[str, Any]:
    language = email.to.language.value
    report = next((r for r in agreement.reports if r.key == milestone.report), None)
    return {
        "agreement": agreement,
        "milestone": milestone,
        "email": email,
        "when": when(email.days_before, language),
        "ref": reference(agreement, language),
        "report_name": report.name if report else "",
        "meeting_name": agreement.meetings.name if agreement.meetings else "",
    }


def render_subject(agreement: Agreement, milestone: PlannedMilestone, email: PlannedEmail) -> str:
    language = email.to.language.value
    template = environment(language).get_template(f"{email.template}/subject.txt")
    return one_line(template.render(context(agreement, milestone, email)))


# --- whole emails ---------------------------------------------------------------------


class Rendered(NamedTuple):
    subject: str
    text: str
    html: str


def email_context(agreement: Agreement, spec: EmailSpec, link: str | None = None) -> dict[str, Any]:
    """Everything a body template may use; see emails/templates/README.md."""
    language = spec.to.language.value
    milestone = spec.milestone
    report = next((r for r in agreement.reports if milestone and r.key == milestone.report), None)
    party = agreement.parties.get(spec.to.party) if spec.to.party else None

    def party_name(key: str | None) -> str:
        return agreement.parties[key].name if key and key in agreement.parties else ""

    contribution = None
    amount_terms = ""
    if milestone is not None and milestone.kind.value in ("invoice", "in_kind"):
        contribution = contribution_of(agreement, milestone)
        amount_terms = instalment_terms(agreement, milestone, language)

    return {
        "agreement": agreement,
        "ref": reference(agreement, language),
        "to": spec.to,
        "party": party,
        "milestone": milestone,
        "payer_name": party_name(milestone.payer if milestone else None),
        "payee_name": party_name(milestone.payee if milestone else None),
        "concerned_name": party_name(milestone.party if milestone else None),
        "when": when(spec.days_before, language),
        "days_before": spec.days_before,
        "report_name": report.name if report else "",
        "meeting_name": agreement.meetings.name if agreement.meetings else "",
        "link": link,
        "round": spec.round,
        "reason": spec.reason,
        "ending": spec.ending,
        "failed": spec.failed,
        "attachment": spec.attachment,
        "coordinator": agreement.coordinator,
        "language": language,
        "contribution": contribution,
        "amount_terms": amount_terms,
        **_signer_context(spec.round, spec.to.email),
    }


def _signer_context(info: RoundInfo | None, email: str) -> dict[str, Any]:
    """The recipient as a signer of the round (a receipt): their signature and the count."""
    me: Signer | None = None
    signature: SignatureEvent | None = None
    signed = total = 0
    if info is not None:
        me = next((s for s in info.signers if s.email == email), None)
        signature = next(
            (e for e in reversed(info.events) if e.what == "signed" and e.signer == email), None
        )
        signed = sum(s.status is SignerStatus.signed for s in info.signers)
        total = len(info.signers)
    return {"signer": me, "signature": signature, "signed_count": signed, "signer_count": total}


def when(days_before: int, language: str) -> str:
    """How far off the day is, at the start of a reminder: "Idag", "Om 30 dagar",
    "Försenad"."""
    if days_before == 0:
        return i18n.text(language, "Today")
    if days_before < 0:
        return i18n.text(language, "Overdue")
    return i18n.plural(language, "In %(num)d day", "In %(num)d days", days_before)


def render_email(agreement: Agreement, spec: EmailSpec, link: str | None = None) -> Rendered:
    """Subject, plain text and HTML of one email, in the recipient's language.

    Each kind is written once, as `body.html` extending the shared `_base.html`
    (autoescaped); the plain-text part is derived from it, so the two never disagree.
    """
    env = environment(spec.to.language.value)
    values = email_context(agreement, spec, link)
    subject = one_line(env.get_template(f"{spec.template}/subject.txt").render(values))
    html = env.get_template(f"{spec.template}/body.html").render(values)
    return Rendered(subject, html_to_text(html), keep_dates_whole(html))


DIGEST = "weekly_digest"  # the template of the weekly digest, which no agreement sends


class _Person(NamedTuple):
    name: str
    email: str


def render_digest(digest: Digest, base_url: str) -> Rendered:
    """Subject, plain text and HTML of one person's weekly digest, in their language: each
    agreement a heading that links to its page, each line its date, what it is and how it
    stands; links to "Att göra" and to the person's page (their calendar feed). No link
    carries a key: each page asks its reader to sign in."""
    language = digest.language.value
    env = environment(language)
    base = base_url.rstrip("/")
    groups = [
        {
            "title": g.title,
            "ref": (
                " " + i18n.text(language, "(ref. %(reference)s)", reference=g.reference)
                if g.reference
                else ""
            ),
            "link": f"{base}/a/{quote(g.agreement_id, safe='')}",
            "lines": g.lines,
        }
        for g in digest.groups
    ]
    values = {
        "digest": digest,
        "count": digest.count,
        "groups": groups,
        "money_only": digest.money_only,
        "to": _Person(digest.name, digest.email),
        "language": language,
        "when": lambda days: when(days, language),
        "todo": f"{base}/todo",
        "me": f"{base}/me",
    }
    subject = one_line(env.get_template(f"{DIGEST}/subject.txt").render(values))
    html = env.get_template(f"{DIGEST}/body.html").render(values)
    return Rendered(subject, html_to_text(html), keep_dates_whole(html))


_TAG = re.compile(r"(<[^>]*>)")
_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}(?: \([^()<>]{1,20}\))?")
_TAG_NAME = re.compile(r"</?([A-Za-z0-9]+)")
_RAW_TEXT = ("title", "style", "script")


def keep_dates_whole(html: str) -> str:
    """A phone breaks "2019-07-01" after a hyphen ("2019-07-" / "01"): in the text of the
    HTML (never in a tag, an attribute or the title) a date, with its weekday, is one
    unbreakable run."""
    out: list[str] = []
    raw: str | None = None  # inside this element, the text is no text of the page
    for piece in _TAG.split(html):
        if piece[:1] == "<":
            closing = piece[1:2] == "/"
            if closing == (raw is not None):  # only these can start or end a raw element
                found = _TAG_NAME.match(piece)
                name = found[1].lower() if found else ""
                if raw is None and name in _RAW_TEXT:
                    raw = name
                elif name == raw:
                    raw = None
            out.append(piece)
        elif raw is None and "-" in piece:
            out.append(_DATE.sub(r'<span style="white-space:nowrap">\g<0></span>', piece))
        else:
            out.append(piece)
    return "".join(out)


_HREF = re.compile(r"""\shref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+))""", re.IGNORECASE)
_SPACES = re.compile(r"[ \t\r\n]+")
_SKIPPED = ("head", "style", "script", "title")
_PARAGRAPH = ("p", "ul", "hr", "div", "table")


def html_to_text(html: str) -> str:
    """Plain text from the emails' small HTML: paragraphs, lists, links, line breaks.

    The HTML is the templates' own, autoescaped: every "<" in it starts a tag, so a split
    at the tags reads it as Python's HTMLParser does (tests/test_render.py compares the two
    on every email), in a fraction of the time."""
    out: list[str] = []
    skip = 0
    href: str | None = None
    for piece in _TAG.split(html):
        if not piece:
            continue
        if piece[0] != "<":
            if not skip:
                out.append(_SPACES.sub(" ", unescape(piece)))  # keeps no-break spaces
            continue
        if piece.startswith(("<!", "<?")):  # the doctype
            continue
        found = _TAG_NAME.match(piece)
        tag = found[1].lower() if found else ""
        closing = piece.startswith("</")
        if not closing:
            if tag in _SKIPPED:
                skip += 1
            elif tag in _PARAGRAPH:
                out.append("\n\n")
            elif tag == "li":
                out.append("\n- ")
            elif tag == "br":
                out.append("\n")
            elif tag == "a":
                values = _HREF.findall(piece)
                href = unescape("".join(values[-1])) if values else None
        if closing or piece.endswith("/>"):
            if tag in _SKIPPED:
                skip -= 1
            elif tag == "a" and href:
                if not href.startswith("mailto:") and href not in "".join(out[-3:]):
                    out.append(f" ({href})")
                href = None
            elif tag == "hr":
                out.append("--\n")
    lines = [line.strip() for line in "".join(out).splitlines()]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
