"""Build the MIME message for one email: plain text, HTML, and an .ics when it has a date."""

from __future__ import annotations

import datetime as dt
import hashlib
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from emails.calendar import calendar
from emails.render import Rendered, one_line
from models.agreement import Agreement
from models.lifecycle import EmailSpec


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
    msg["From"] = mail_from
    user, _, domain = spec.to.email.rpartition("@")
    msg["To"] = Address(one_line(spec.to.name), user, domain)
    msg["Subject"] = one_line(rendered.subject)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id(spec.key, mail_from)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Agreement-Id"] = agreement.id
    msg["X-Agreement-Email-Key"] = one_line(spec.key)
    msg["X-Agreement-Template"] = spec.template
    if spec.planned_at is not None:
        msg["X-Agreement-Planned-At"] = spec.planned_at.isoformat()
    msg.set_content(rendered.text)
    msg.add_alternative(rendered.html, subtype="html")
    msg["Content-Language"] = spec.to.language.value  # after the parts: set_content clears it
    ics = _calendar(agreement, spec, now)
    if ics is not None:
        method, data = ics
        msg.add_attachment(
            data,
            maintype="text",
            subtype="calendar",
            filename=f"{agreement.id}.ics",
            params={"method": method},
        )
    return msg


def _calendar(agreement: Agreement, spec: EmailSpec, now: dt.datetime) -> tuple[str, bytes] | None:
    if spec.cancel:
        return "CANCEL", calendar(agreement, spec.cancel, now, "CANCEL", spec.sequence + 1)
    if spec.calendar and spec.milestone is not None:
        method = spec.calendar.upper()
        return method, calendar(agreement, [spec.milestone], now, method, spec.sequence)
    return None


def sender_address(mail_from: str) -> str:
    return parseaddr(mail_from)[1]
