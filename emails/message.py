"""Build the MIME message for one email: plain text, HTML, and an .ics when it has a date.

Headers that carry text (From, To, Subject, the outbox key) are `emails.headers.Header`s,
which fold without losing a space or a character. A dated email is an iMIP message the
way Outlook, Google and Apple all take it in:

    multipart/mixed
      multipart/alternative
        text/plain; charset="utf-8"
        text/html; charset="utf-8"
        text/calendar; charset="utf-8"; method=REQUEST (or CANCEL)
      application/ics; name="<agreement>.ics" (the same calendar, as a file to open)

The message is put together from parts made once per worker (the header objects of each
kind, language and calendar method, and of the sender), with only what differs from one
email to the next made for it: Python's `set_content` and `add_alternative` parse every
header they set, several times, and that cost more than sending the email. The result is
the message those calls make, byte for byte but for the random boundaries
(tests/test_emails.py compares the two on every email of every example's life).
"""

from __future__ import annotations

import binascii
import datetime as dt
import hashlib
import random
import re
import sys
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8, Policy, default
from email.quoprimime import body_encode
from email.utils import format_datetime, parseaddr
from functools import lru_cache
from typing import Any, NamedTuple

from aiosmtplib.email import flatten_message

from emails.calendar import Person, calendar
from emails.headers import Header, address_header
from emails.render import Rendered, one_line
from i18n import N_, text
from models.agreement import Agreement
from models.lifecycle import EmailSpec

# The product's name, also when the sender has no name: "Avtalstjänsten" in Swedish.
SERVICE_NAME = N_("The agreement service")


def message_id(key: str, mail_from: str) -> str:
    """Stable for the outbox key: a resend of the same email carries the same Message-ID."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:40]}@{_id_domain(mail_from)}>"


@lru_cache(maxsize=8)
def _id_domain(mail_from: str) -> str:
    return parseaddr(mail_from)[1].rpartition("@")[2] or "agreements.invalid"


WIDTH: int = default.max_line_length or 78


class Line(str):
    """A header value that Python's email package would write on one line as it is: the
    generator asks it to `fold` itself (as it does an `emails.headers.Header`) instead of
    parsing it to find that out. `lines` is how it is written, as Python writes it."""

    name: str
    lines: tuple[str, ...]

    def __new__(cls, name: str, value: str, lines: tuple[str, ...] | None = None) -> Line:
        self = super().__new__(cls, value)
        self.name = name
        self.lines = lines or (f"{name}: {value}",)
        return self

    def fold(self, *, policy: Policy) -> str:
        return policy.linesep.join(self.lines) + policy.linesep

    def __reduce__(self) -> tuple[Any, ...]:  # a copy (the generator makes some) is one too
        return (Line, (self.name, str(self), self.lines))


def _header(name: str, value: str) -> Any:
    """`value` as Python stores it under `name`; without the parsing when Python would
    write it on one line as it is (ASCII, no encoded-word, short enough)."""
    line = f"{name}: {value}"
    plain = value.isascii() and value.isprintable() and "=?" not in value and "  " not in value
    if plain and value == value.strip() and len(line) <= WIDTH:
        return Line(name, value, (line,))
    return default.header_factory(name, value)


_BOUNDARY = "=" * 15 + "%019d" + "=="  # as email.generator makes them
_PLACEHOLDER = _BOUNDARY % 0


@lru_cache(maxsize=4)
def _multipart_lines(subtype: str) -> tuple[str, ...]:
    """How Python writes `Content-Type: multipart/<subtype>; boundary=...`: where it folds
    depends only on the boundary's length, the same for every boundary made here."""
    value = f'multipart/{subtype}; boundary="{_PLACEHOLDER}"'
    folded: str = default.header_factory("Content-Type", value).fold(policy=default)
    return tuple(folded.splitlines())


def _multipart(subtype: str, boundary: str) -> Line:
    lines = tuple(line.replace(_PLACEHOLDER, boundary) for line in _multipart_lines(subtype))
    return Line("Content-Type", f'multipart/{subtype}; boundary="{boundary}"', lines)


def _boundary(payloads: list[str]) -> str:
    """A boundary found in none of the parts (the generator checks the same when it makes
    one; a part in base64 or quoted-printable cannot hold one at all)."""
    while True:
        boundary = _BOUNDARY % random.randrange(sys.maxsize)
        if not any(boundary in payload for payload in payloads):
            return boundary


def _fixed(name: str, value: str) -> Any:
    """A header that is the same in many emails, made once: as Python folds it, which for
    ASCII is the same lines under every policy the message is written with (never changed,
    so every message can hold the same one)."""
    made = default.header_factory(name, value)
    if not value.isascii():
        return made
    return Line(name, str(made), tuple(made.fold(policy=default).splitlines()))


_MIME_VERSION = _fixed("MIME-Version", "1.0")
_AUTO_SUBMITTED = _fixed("Auto-Submitted", "auto-generated")
_TEXT_TYPES = {
    subtype: _fixed("Content-Type", f'text/{subtype}; charset="utf-8"')
    for subtype in ("plain", "html")
}
_ENCODINGS = {
    cte: _fixed("Content-Transfer-Encoding", cte)
    for cte in ("7bit", "8bit", "quoted-printable", "base64")
}


class _Kind(NamedTuple):
    """The headers of one kind of email in one language from one sender."""

    sender: Any
    template: Any
    language: Any


@lru_cache(maxsize=256)
def _kind(template: str, language: str, mail_from: str) -> _Kind:
    return _Kind(
        default.header_store_parse("From", address_header("From", mail_from))[1],
        _fixed("X-Agreement-Template", template),
        _fixed("Content-Language", language),
    )


@lru_cache(maxsize=4)
def _calendar_type(method: str) -> Any:
    return _fixed("Content-Type", f'text/calendar; charset="utf-8"; method="{method}"')


@lru_cache(maxsize=1024)
def _attachment(agreement_id: str) -> tuple[Any, Any]:
    """Content-Disposition and Content-Type of the .ics file of one agreement."""
    filename = f"{agreement_id}.ics"
    return (
        _fixed("Content-Disposition", f'attachment; filename="{filename}"'),
        _fixed("Content-Type", f'application/ics; name="{filename}"'),
    )


def _text_body(content: str) -> tuple[str, str]:
    """The transfer encoding and the payload that `set_content` chooses for UTF-8 text
    (email.contentmanager): as it is when every line fits, else quoted-printable or
    base64, whichever the first ten lines say is shorter."""
    lines = content.encode("utf-8").splitlines()
    body = b"\n".join(lines) + b"\n"
    if max((len(line) for line in lines), default=0) <= WIDTH:
        if body.isascii():
            return "7bit", body.decode("ascii")
        return "8bit", body.decode("ascii", "surrogateescape")
    sniff = b"\n".join(lines[:10]) + b"\n"
    sniff_qp = body_encode(sniff.decode("latin-1"), WIDTH)
    if len(sniff_qp) > len(binascii.b2a_base64(sniff)):
        return "base64", _base64(body)
    if len(lines) <= 10:
        return "quoted-printable", sniff_qp
    return "quoted-printable", body_encode(body.decode("latin-1"), WIDTH)


def _base64(data: bytes) -> str:
    """Base64 in lines of 76 characters, as `set_content` writes bytes."""
    step = WIDTH // 4 * 3
    return "".join(
        binascii.b2a_base64(data[i : i + step]).decode("ascii") for i in range(0, len(data), step)
    )


def _part(headers: list[tuple[str, Any]], payload: Any) -> EmailMessage:
    # The header list and payload are set as `set_content` leaves them; setting them one by
    # one would have each header parsed again.
    part = EmailMessage(policy=default)
    part._headers = headers  # type: ignore[attr-defined]
    part._payload = payload  # type: ignore[attr-defined]
    return part


def _text_part(subtype: str, content: str, mime_version: bool) -> EmailMessage:
    cte, payload = _text_body(content)
    headers = [
        ("Content-Type", _TEXT_TYPES[subtype]),
        ("Content-Transfer-Encoding", _ENCODINGS[cte]),
    ]
    if mime_version:  # each part that add_alternative makes is an EmailMessage of its own
        headers.append(("MIME-Version", _MIME_VERSION))
    return _part(headers, payload)


def build(
    agreement: Agreement,
    spec: EmailSpec,
    rendered: Rendered,
    mail_from: str,
    now: dt.datetime,
) -> EmailMessage:
    language = spec.to.language.value
    kind = _kind(spec.template, language, mail_from)
    headers: list[tuple[str, Any]] = [
        ("From", kind.sender),
        ("To", Header("To", spec.to.email, (spec.to.name, spec.to.email))),
        ("Subject", Header("Subject", rendered.subject)),
        ("Date", _header("Date", format_datetime(now))),
        ("Message-ID", _header("Message-ID", message_id(spec.key, mail_from))),
        ("Auto-Submitted", _AUTO_SUBMITTED),
        ("X-Agreement-Id", _header("X-Agreement-Id", agreement.id)),
        ("X-Agreement-Email-Key", Header("X-Agreement-Email-Key", spec.key)),
        ("X-Agreement-Template", kind.template),
    ]
    if spec.planned_at is not None:
        headers.append(
            (
                "X-Agreement-Planned-At",
                _header("X-Agreement-Planned-At", spec.planned_at.isoformat()),
            )
        )
    headers.append(("MIME-Version", _MIME_VERSION))
    parts = _text_parts(rendered)
    payloads = [part._payload for part in parts]  # type: ignore[attr-defined]
    ics = _calendar(agreement, spec, mail_from, now)
    if ics is None:
        return _alternative(headers, parts, kind)
    method, data = ics
    encoded = _base64(data)
    encoding = ("Content-Transfer-Encoding", _ENCODINGS["base64"])
    mime_version = ("MIME-Version", _MIME_VERSION)
    # The iMIP part: what the calendar of the mail client acts on.
    parts.append(_part([encoding, ("Content-Type", _calendar_type(method)), mime_version], encoded))
    inner = _boundary(payloads)
    alternative = _part([("Content-Type", _multipart("alternative", inner))], parts)
    # The same calendar as a file, for a client that shows no invitation.
    disposition, file_type = _attachment(agreement.id)
    attached = _part(
        [encoding, ("Content-Disposition", disposition), ("Content-Type", file_type), mime_version],
        encoded,
    )
    top = _multipart("mixed", _boundary([*payloads, inner]))
    headers += [("Content-Type", top), ("Content-Language", kind.language)]
    return _part(headers, [alternative, attached])


def build_for_person(
    to: tuple[str, str],
    key: str,
    template: str,
    language: str,
    rendered: Rendered,
    mail_from: str,
    now: dt.datetime,
) -> EmailMessage:
    """A message to one person (name, address) about several agreements, the weekly digest:
    the plain-text and HTML parts as `build` makes them, a Message-ID stable for `key`, no
    calendar and no agreement of its own."""
    name, address = to
    kind = _kind(template, language, mail_from)
    headers: list[tuple[str, Any]] = [
        ("From", kind.sender),
        ("To", Header("To", address, (name, address))),
        ("Subject", Header("Subject", rendered.subject)),
        ("Date", _header("Date", format_datetime(now))),
        ("Message-ID", _header("Message-ID", message_id(key, mail_from))),
        ("Auto-Submitted", _AUTO_SUBMITTED),
        ("X-Agreement-Email-Key", Header("X-Agreement-Email-Key", key)),
        ("X-Agreement-Template", kind.template),
        ("MIME-Version", _MIME_VERSION),
    ]
    return _alternative(headers, _text_parts(rendered), kind)


def _text_parts(rendered: Rendered) -> list[EmailMessage]:
    return [
        _text_part("plain", rendered.text, mime_version=False),
        _text_part("html", rendered.html, mime_version=True),
    ]


def _alternative(
    headers: list[tuple[str, Any]], parts: list[EmailMessage], kind: _Kind
) -> EmailMessage:
    """The message as multipart/alternative of its text and HTML parts."""
    payloads = [part._payload for part in parts]  # type: ignore[attr-defined]
    top = _multipart("alternative", _boundary(payloads))
    headers += [("Content-Type", top), ("Content-Language", kind.language)]
    return _part(headers, parts)


# The policies a message is written with for a relay, made once (aiosmtplib makes one per
# message): 8BITMIME or not, SMTPUTF8 or not.
_POLICIES = {
    (utf8, cte_type): (SMTPUTF8 if utf8 else SMTP).clone(cte_type=cte_type)
    for utf8 in (False, True)
    for cte_type in ("7bit", "8bit")
}
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_SECRET = ("bcc", "resent-bcc")


def as_bytes(message: EmailMessage, *, utf8: bool = False, cte_type: str = "8bit") -> bytes:
    """The message as aiosmtplib's `flatten_message` writes it for a relay (Python's
    BytesGenerator, SMTP policy), byte for byte, in a fraction of the time: the parts
    `build` makes are written as they are, each header folding itself. Anything else
    (a part that must be re-encoded for a 7-bit relay, a header Python would have to
    parse) goes through `flatten_message` itself. A header that cannot be written for
    the relay raises UnicodeEncodeError, as there."""
    policy = _POLICIES[utf8, cte_type]
    out: list[bytes] = []
    if _write(message, policy, out, top=True):
        return b"".join(out)
    return flatten_message(message, utf8=utf8, cte_type=cte_type)


def _write(part: EmailMessage, policy: Policy, out: list[bytes], top: bool = False) -> bool:
    """Append `part` to `out`; False when only Python's generator can write it."""
    if type(part) is not EmailMessage or part.preamble is not None or part.epilogue is not None:
        return False
    charset = "utf-8" if policy.utf8 else "ascii"  # type: ignore[attr-defined]
    content_type = None
    for name, value in part._headers:  # type: ignore[attr-defined]
        if not hasattr(value, "name"):  # a raw value, as a parser keeps it: Python refolds it
            return False
        lower = name.lower()
        if top and lower in _SECRET:
            continue
        if content_type is None and lower == "content-type":
            content_type = value
        out.append(value.fold(policy=policy).encode(charset, "surrogateescape"))
    out.append(b"\r\n")
    payload = part._payload  # type: ignore[attr-defined]
    if content_type is None:  # its type is its parent's default: Python knows it
        return False
    full = str(content_type).partition(";")[0].strip().lower()  # as get_content_maintype
    maintype = full.partition("/")[0] if full.count("/") == 1 else "text"
    if maintype == "multipart":
        boundary = part.get_boundary()
        if not payload or not isinstance(payload, list) or boundary is None:
            return False
        if part.get_content_subtype() == "signed":  # Python writes its parts as they came
            return False
        delimiter = f"--{boundary}".encode("ascii")
        for index, subpart in enumerate(payload):
            out.append(b"\r\n" + delimiter + b"\r\n" if index else delimiter + b"\r\n")
            if not _write(subpart, policy, out):
                return False
        out.append(b"\r\n" + delimiter + b"--\r\n")
        return True
    if maintype == "message" or not isinstance(payload, str):
        return False
    if policy.cte_type == "7bit" and not payload.isascii():  # 8bit text for a 7-bit relay
        return False
    out.append(_LINE_BREAK.sub("\r\n", payload).encode("ascii", "surrogateescape"))
    return True


def organizer(agreement: Agreement, mail_from: str, language: object = None) -> Person:
    """Who the calendar entries come from: the sender, whom the email is from too (a client
    trusts an invitation from its organizer); the coordinator when no sender is set."""
    name, address = parseaddr(mail_from)
    if address and "@" in address:
        return Person(name or text(language, SERVICE_NAME), address)
    return Person(agreement.coordinator.name, str(agreement.coordinator.email))


def _calendar(
    agreement: Agreement, spec: EmailSpec, mail_from: str, now: dt.datetime
) -> tuple[str, bytes] | None:
    if not spec.cancel and not (spec.calendar and spec.milestone is not None):
        return None
    sender = organizer(agreement, mail_from, spec.to.language)
    to = Person(one_line(spec.to.name), spec.to.email)
    if spec.cancel:
        data = calendar(agreement, spec.cancel, now, "CANCEL", spec.sequence + 1, sender, to)
        return "CANCEL", data
    if spec.calendar and spec.milestone is not None:
        method = spec.calendar.upper()
        sequence = spec.sequence + 1 if method == "CANCEL" else spec.sequence
        return method, calendar(agreement, [spec.milestone], now, method, sequence, sender, to)
    return None


@lru_cache(maxsize=8)
def sender_address(mail_from: str) -> str:
    return parseaddr(mail_from)[1]
