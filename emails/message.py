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
"""

from __future__ import annotations

import datetime as dt
import hashlib
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

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
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "agreements.invalid"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:40]}@{domain}>"


def build(
    agreement: Agreement,
    spec: EmailSpec,
    rendered: Rendered,
    mail_from: str,
    now: dt.datetime,
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = address_header("From", mail_from)
    msg["To"] = Header("To", spec.to.email, (spec.to.name, spec.to.email))
    msg["Subject"] = Header("Subject", rendered.subject)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id(spec.key, mail_from)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Agreement-Id"] = agreement.id
    msg["X-Agreement-Email-Key"] = Header("X-Agreement-Email-Key", spec.key)
    msg["X-Agreement-Template"] = spec.template
    if spec.planned_at is not None:
        msg["X-Agreement-Planned-At"] = spec.planned_at.isoformat()
    msg.set_content(rendered.text)
    msg.add_alternative(rendered.html, subtype="html")
    ics = _calendar(agreement, spec, mail_from, now)
    if ics is not None:
        method, data = ics
        # The iMIP part: what the calendar of the mail client acts on.
        msg.add_alternative(
            data, maintype="text", subtype="calendar", params={"charset": "utf-8", "method": method}
        )
        # The same calendar as a file, for a client that shows no invitation.
        filename = f"{agreement.id}.ics"
        msg.add_attachment(
            data,
            maintype="application",
            subtype="ics",
            filename=filename,
            params={"name": filename},
        )
    msg["Content-Language"] = spec.to.language.value  # after the parts: set_content clears it
    return msg


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


def sender_address(mail_from: str) -> str:
    return parseaddr(mail_from)[1]
