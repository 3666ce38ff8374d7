"""What a Swedish reader must never see: an English message of the catalog, English prose,
an internal key, a time in UTC. Used by tests/test_translations.py on pages, emails, CSV
files and command-line tables.

Found is a list of (what, where in the text) so that a failure says exactly what leaked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

from babel.messages.pofile import read_po

from i18n import catalog_path, events, refusals
from i18n.words import ROUND_EVENTS, WORDS
from models.plan import MilestoneKind
from models.prerequisites import CHECKLIST

# English words that no Swedish sentence uses (the ones that look Swedish, like "by", "i"
# or "is", are left out).
ENGLISH_WORDS = frozenset(
    [
        "the",
        "and",
        "of",
        "with",
        "from",
        "has",
        "have",
        "been",
        "will",
        "your",
        "you",
        "this",
        "that",
        "which",
        "there",
        "their",
        "should",
        "must",
        "please",
        "signed",
        "agreement",
        "round",
        "report",
        "invoice",
        "due",
        "meeting",
        "deadline",
        "notice",
        "extension",
        "draft",
        "active",
        "ended",
        "signing",
        "invited",
        "opened",
        "declined",
        "cancelled",
        "expired",
        "completed",
        "received",
        "approved",
        "returned",
        "overdue",
        "invoiced",
        "paid",
        "planned",
        "held",
        "open",
        "decided",
        "passed",
        "none",
        "null",
        "true",
        "false",
    ]
)
# Internal keys that look like prose: kept out by their shape.
EVENT_KIND = re.compile(r"\b[a-z_]+\.[a-z_]+\b")  # report.submitted, signing.round_started
MILESTONE_ID = re.compile(
    r"\b(?:" + "|".join(k.value for k in MilestoneKind) + r"|report|extension|notice)"
    r":[\w.:-]+"
)
PARTY_PAIR = re.compile(r"\b[a-z0-9][a-z0-9_-]*;[a-z0-9][a-z0-9_-]*\b")
UTC = re.compile(r"\bUTC\b|[+-]00:00\b|\d{2}:\d{2}(?::\d{2})?Z\b")
ENUM_SHAPE = re.compile(r"\b[a-z]+_[a-z_]+\b|\bopt-(?:in|out)\b")  # to_invoice, opt-in


def internal_keys() -> set[str]:
    """Every stable key of the service a person must not read as it is."""
    keys = {str(value) for table in WORDS.values() for value in table}
    keys |= (
        set(CHECKLIST)
        | set(ROUND_EVENTS)
        | set(getattr(refusals, "REFUSALS", {}))
        | set(getattr(events, "EVENTS", {}))
    )
    return keys


def english_messages() -> set[str]:
    """The English text of every catalog message whose Swedish differs, and the literal
    pieces of those with parameters, long enough to be told from a name (two words and
    more than eight characters)."""
    texts: dict[str, dict[str, str]] = {}
    swedish: set[str] = set()
    for language in ("sv", "en"):
        with catalog_path(language).open("rb") as f:
            catalog = read_po(f, locale=language)
        for m in catalog:
            if isinstance(m.id, str) and m.id:
                texts.setdefault(m.id, {})[language] = str(m.string or m.id)
                if language == "sv":
                    swedish.add(str(m.string))
    found = set()
    for msgid, by in texts.items():
        for english in {msgid, by.get("en", msgid)}:
            if english == by.get("sv"):
                continue
            # A message with parameters is looked for by its literal pieces ("Signature
            # round %(round)s started": "Signature round").
            for piece in re.split(r"%\(\w+\)[sd]|%%", english):
                piece = piece.strip(" :;,.()")
                if len(piece.split()) >= 2 and len(piece) > 8 and piece not in swedish:
                    found.add(piece)
    return found


class _Text(HTMLParser):
    """The text a person reads on a page: text nodes, and the attributes read aloud or shown
    (title, placeholder, aria-label, alt, a button's value), not scripts or styles."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self.skip += 1
        values = dict(attrs)
        for name in ("title", "placeholder", "aria-label", "alt"):
            if values.get(name):
                self.parts.append(str(values[name]))
        if tag == "input" and values.get("type") in ("submit", "button") and values.get("value"):
            self.parts.append(str(values["value"]))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self.skip:
            self.skip -= 1

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def visible(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return "\n".join(p for p in parser.parts if p.strip())


@dataclass
class Reader:
    """Reads Swedish texts and remembers what a Swedish reader should not have seen."""

    allowed: set[str] = field(default_factory=set)  # words of the data itself (names)
    checked: int = 0
    found: list[tuple[str, str, str]] = field(default_factory=list)  # (where, what, context)

    def __post_init__(self) -> None:
        self.keys = {k for k in internal_keys() if k not in self.allowed}
        self.messages = english_messages()

    def read(self, where: str, text: str) -> None:
        self.checked += 1
        words = set(re.findall(r"[A-Za-z][A-Za-z_-]*", text))

        def hit(what: str, at: int) -> None:
            self.found.append((where, what, text[max(0, at - 40) : at + 40].replace("\n", " ")))

        for message in self.messages:
            at = text.find(message)
            if at >= 0 and message not in self.allowed:
                hit(f"English message {message!r}", at)
        for word in sorted(words & ENGLISH_WORDS - self.allowed):
            hit(f"English word {word!r}", re.search(rf"\b{word}\b", text).start())  # type: ignore[union-attr]
        for key in sorted(self.keys):
            match = re.search(rf"(?<![\w/.@-]){re.escape(key)}(?![\w/@-])", text)
            if match:
                hit(f"internal key {key!r}", match.start())
        for pattern, what in (
            (EVENT_KIND, "event kind"),
            (MILESTONE_ID, "milestone id"),
            (PARTY_PAIR, "party keys"),
            (UTC, "time in UTC"),
            (ENUM_SHAPE, "enum value"),
        ):
            for match in pattern.finditer(text):
                if match.group(0) not in self.allowed and not _in_address(text, match):
                    hit(f"{what} {match.group(0)!r}", match.start())

    def read_html(self, where: str, html: str) -> None:
        self.read(where, visible(html))


def _in_address(text: str, match: re.Match[str]) -> bool:
    """Part of an email address, a web address or a file name (data, not a key)."""
    start = text.rfind(" ", 0, match.start()) + 1
    end = text.find(" ", match.end())
    token = text[start : end if end >= 0 else len(text)]
    return "@" in token or "://" in token or token.startswith(("/", "www."))
