"""Render email parts from the templates under `emails/templates/<language>/<kind>/`.

One Jinja environment, autoescaped for HTML, with the formatting DOMAIN.md asks for:
ISO dates with the weekday, "650 000 kr" with a no-break space, Stockholm times.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, NamedTuple

from babel.dates import format_date
from babel.numbers import format_decimal
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from models.agreement import Agreement
from models.lifecycle import EmailSpec
from models.plan import PlannedEmail, PlannedMilestone
from models.schedule.dates import STOCKHOLM

TEMPLATES = Path(__file__).parent / "templates"
_LOCALES = {"sv": "sv_SE", "en": "en_GB"}
_NEWLINES = re.compile(r"[\r\n\u2028\u2029]+")


def kronor(amount: int | None, language: str = "sv") -> str:
    """650000 -> '650 000 kr' with a no-break space between thousands."""
    if amount is None:
        return ""
    number = format_decimal(amount, locale="sv_SE", group_separator=True)
    return f"{number}\u00a0kr".replace("\u202f", "\u00a0")


def day(value: dt.date, language: str = "sv") -> str:
    """2025-01-30 -> '2025-01-30 (torsdag)': ISO date with the weekday a reader checks."""
    weekday = format_date(value, "EEEE", locale=_LOCALES.get(language, "sv_SE"))
    return f"{value.isoformat()} ({weekday})"


def long_date(value: dt.date, language: str = "sv") -> str:
    """2025-01-30 -> '30 januari 2025' for prose."""
    return str(format_date(value, "d MMMM y", locale=_LOCALES.get(language, "sv_SE")))


@lru_cache(maxsize=4)
def environment(language: str) -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES / language)),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters["kronor"] = lambda v: kronor(v, language)
    env.filters["day"] = lambda v: day(v, language)
    env.filters["long_date"] = lambda v: long_date(v, language)
    env.filters["stamp"] = stamp
    return env


def stamp(value: dt.datetime) -> str:
    """A moment as the verification record shows it: local time with its zone named."""
    local = value.astimezone(STOCKHOLM)
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()} (Europe/Stockholm)"


def one_line(text: str) -> str:
    """Headers never carry a raw newline from data: collapse every line break to a space."""
    return _NEWLINES.sub(" ", text).strip()


def _when(email: PlannedEmail, language: str) -> str:
    if email.days_before == 0:
        return "Idag" if language == "sv" else "Today"
    if email.days_before < 0:
        return "Försenad" if language == "sv" else "Overdue"
    if language == "sv":
        return f"Om {email.days_before} dagar"
    return f"In {email.days_before} days"


def context(
    agreement: Agreement, milestone: PlannedMilestone, email: PlannedEmail
) -> dict[str, Any]:
    language = email.to.language.value
    ref = f" (dnr {agreement.reference})" if agreement.reference else ""
    report = next((r for r in agreement.reports if r.key == milestone.report), None)
    return {
        "agreement": agreement,
        "milestone": milestone,
        "email": email,
        "when": _when(email, language),
        "ref": ref,
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

    return {
        "agreement": agreement,
        "ref": f" (dnr {agreement.reference})" if agreement.reference else "",
        "to": spec.to,
        "party": party,
        "milestone": milestone,
        "payer_name": party_name(milestone.payer if milestone else None),
        "payee_name": party_name(milestone.payee if milestone else None),
        "concerned_name": party_name(milestone.party if milestone else None),
        "when": _when_days(spec.days_before, language),
        "days_before": spec.days_before,
        "report_name": report.name if report else "",
        "meeting_name": agreement.meetings.name if agreement.meetings else "",
        "link": link,
        "round": spec.round,
        "reason": spec.reason,
        "ending": spec.ending,
        "failed": spec.failed,
        "coordinator": agreement.coordinator,
        "language": language,
    }


def _when_days(days_before: int, language: str) -> str:
    if days_before == 0:
        return "Idag" if language == "sv" else "Today"
    if days_before < 0:
        return "Försenad" if language == "sv" else "Overdue"
    return f"Om {days_before} dagar" if language == "sv" else f"In {days_before} days"


def render_email(agreement: Agreement, spec: EmailSpec, link: str | None = None) -> Rendered:
    """Subject, plain text and HTML of one email, in the recipient's language.

    Each kind is written once, as `body.html` extending the shared `_base.html`
    (autoescaped); the plain-text part is derived from it, so the two never disagree.
    """
    env = environment(spec.to.language.value)
    values = email_context(agreement, spec, link)
    subject = one_line(env.get_template(f"{spec.template}/subject.txt").render(values))
    html = env.get_template(f"{spec.template}/body.html").render(values)
    return Rendered(subject, html_to_text(html), html)


class _Text(HTMLParser):
    """Plain text from the emails' small HTML: paragraphs, lists, links, line breaks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("head", "style", "script", "title"):
            self.skip += 1
        elif tag in ("p", "ul", "hr", "div"):
            self.out.append("\n\n")
        elif tag == "li":
            self.out.append("\n- ")
        elif tag == "br":
            self.out.append("\n")
        elif tag == "a":
            self.href = dict(attrs).get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("head", "style", "script", "title"):
            self.skip -= 1
        elif tag == "a" and self.href:
            if not self.href.startswith("mailto:") and self.href not in "".join(self.out[-3:]):
                self.out.append(f" ({self.href})")
            self.href = None
        elif tag == "hr":
            self.out.append("--\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.out.append(re.sub(r"[ \t\r\n]+", " ", data))  # keeps no-break spaces


def html_to_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    lines = [line.strip() for line in "".join(parser.out).splitlines()]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
