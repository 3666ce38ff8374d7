"""Mail in tests: the personal signing links the signing requests carry, and a mail server
with scripted faults."""

from __future__ import annotations

import re
from collections import Counter
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession

from emails.sink import MaildirHandler, read_mail

LINK = re.compile(r"https?://\S+/sign/[A-Za-z0-9_.-]+")


def signing_requests(mail: Path) -> list[tuple[str, str, str]]:
    """(agreement id, signer, link) of every signing request in the sink, oldest first."""
    found = []
    for message in read_mail(mail):
        if message["X-Agreement-Template"] != "signature_request":
            continue
        assert isinstance(message, EmailMessage)
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        match = LINK.search(body.get_content())
        assert match, body.get_content()
        found.append((str(message["X-Agreement-Id"]), str(message["X-Sink-Recipient"]), match[0]))
    return found


class Scripted(MaildirHandler):
    """The sink, with faults: the first `busy` messages get `busy_answer` (a 4xx) at DATA,
    and `refuse` gets 550 at RCPT. `answers` counts what was said."""

    def __init__(
        self,
        folder: Path,
        busy: int = 0,
        refuse: str | None = None,
        busy_answer: str = "421 4.3.2 Service busy, try later",
    ) -> None:
        super().__init__(folder)
        self.busy = busy
        self.refuse = refuse
        self.busy_answer = busy_answer
        self.answers: Counter[str] = Counter()

    async def handle_RCPT(
        self,
        server: SMTP,
        session: SmtpSession,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        if address == self.refuse:
            self.answers["550"] += 1
            return "550 5.1.1 Mailbox does not exist"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        if self.busy > 0:
            self.busy -= 1
            self.answers[self.busy_answer[:3]] += 1
            return self.busy_answer
        self.answers["250"] += 1
        return await super().handle_DATA(server, session, envelope)
