"""Formatting every email shares: amounts, dates, subjects that stay one line."""

from __future__ import annotations

import datetime as dt
import re
from html.parser import HTMLParser
from pathlib import Path

import emails.render
from emails.render import (
    day,
    email_context,
    html_to_text,
    keep_dates_whole,
    kronor,
    long_date,
    one_line,
)
from models.agreement import Language
from models.lifecycle import EmailSpec
from models.loader import load_agreement
from models.plan import Scenario
from models.schedule.engine import plan

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.toml"))


def test_amounts_are_whole_kronor_with_a_no_break_space_between_thousands():
    assert kronor(650000) == "650\u00a0000\u00a0kr"
    assert kronor(1492049) == "1\u00a0492\u00a0049\u00a0kr"
    assert kronor(0) == "0\u00a0kr"
    assert kronor(None) == ""


def test_dates_are_iso_with_the_weekday_and_long_form_for_prose():
    assert day(dt.date(2025, 1, 30)) == "2025-01-30 (torsdag)"
    assert day(dt.date(2025, 1, 30), "en") == "2025-01-30 (Thursday)"
    assert long_date(dt.date(2025, 1, 30)) == "30 januari 2025"


def test_a_header_never_carries_a_raw_newline():
    assert one_line("Delrapport\r\nBcc: x@example.org") == "Delrapport Bcc: x@example.org"
    assert one_line("a\u2028b\nc") == "a b c"


class ReadByPython(HTMLParser):
    """Plain text from an email's HTML as Python's own parser reads it (how `html_to_text`
    read it before it split the HTML at its tags)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("head", "style", "script", "title"):
            self.skip += 1
        elif tag in ("p", "ul", "hr", "div", "table"):
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
            self.out.append(re.sub(r"[ \t\r\n]+", " ", data))

    def text(self, html: str) -> str:
        self.feed(html)
        lines = [line.strip() for line in "".join(self.out).splitlines()]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def test_the_text_part_reads_the_html_as_pythons_parser_does() -> None:
    """Every email of every example's life, both languages, with a link and with data that
    needs escaping; and the HTML forms the templates could come to use."""
    htmls = [
        '<p>A &amp; B &lt;c&gt; &#229;</p><a href="https://x.example/?a=1&amp;b=2">here</a>',
        '<a href="mailto:a@example.se">a@example.se</a><br/><a>no link</a><hr>',
        "<title>T 2024-01-02</title><p>one\n  two\tthree 2024-05-02 (torsdag)</p><hr></hr>",
        '<style>p{}</style><p title="2024-01-01">2024-01-01 (måndag) - 2024-13-99x</p>',
        "<a href=\"https://x.example\">https://x.example</a><A HREF='https://y.example'>y</A>",
    ]
    link = "https://avtal.example.se/sign/abc.def"
    for path in EXAMPLES:
        base = load_agreement(path)
        for language in (Language.sv, Language.en):
            a = base.model_copy(
                update={"language": language, "title": base.title + " <b>&amp;</b> “x”"}
            )
            full = plan(a, dt.datetime(2000, 1, 1, tzinfo=dt.UTC), scenario=Scenario.plan)
            milestones = {m.id: m for m in full.milestones}
            for email in full.emails:
                spec = EmailSpec(
                    key=email.key,
                    agreement_id=a.id,
                    terms_sha256="ab" * 32,
                    template=email.template,
                    to=email.to.model_copy(update={"language": language}),
                    milestone=milestones[email.milestone_id],
                    days_before=email.days_before,
                )
                environment = emails.render.environment(language.value)
                template = environment.get_template(f"{spec.template}/body.html")
                htmls.append(template.render(email_context(a, spec, link)))
    for html in htmls:
        assert html_to_text(html) == ReadByPython().text(html), html
        assert keep_dates_whole(html) == dates_whole_tag_by_tag(html), html
    assert len(htmls) > 100


def dates_whole_tag_by_tag(html: str) -> str:
    """`keep_dates_whole` as first written: each tag's name read."""
    out: list[str] = []
    raw: str | None = None
    for piece in re.split(r"(<[^>]*>)", html):
        if piece.startswith("<"):
            found = re.match(r"</?([A-Za-z0-9]+)", piece)
            name = found[1].lower() if found else ""
            if raw is None and not piece.startswith("</") and name in ("title", "style", "script"):
                raw = name
            elif raw is not None and piece.startswith("</") and name == raw:
                raw = None
            out.append(piece)
        elif raw is None:
            date = r"\b\d{4}-\d{2}-\d{2}(?: \([^()<>]{1,20}\))?"
            out.append(re.sub(date, r'<span style="white-space:nowrap">\g<0></span>', piece))
        else:
            out.append(piece)
    return "".join(out)
